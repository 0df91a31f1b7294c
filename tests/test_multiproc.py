"""Two processes (torchrun, gloo, CPU) against one, same seed and global batch: the same samples,
advantages, losses and updated weights; the run directory written once, by rank 0."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aha import runs
from aha.stages.grpo_shard import rank_share
from aha.train.dist import Dist
from aha.train.layout import RolloutBatch

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "_grpo_worker.py"
# rollout.noise=row: the single process draws the row-keyed noise that several processes must use.
SETTINGS = ["grpo.prompts_per_step=6", "grpo.group_size=4", "grpo.lr=1e-3", "grpo.beta=0.04", "grpo.steps=3",
            "rollout.max_new_tokens=16", "rollout.noise=row", "eval.problems=4", "eval.k=2", "eval.every=0",
            "run.save_every=2", "run.progress=false", "run.threads=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(procs: int, args: list[str], extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           **(extra_env or {})}
    launcher = [] if procs == 1 else ["-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                                      f"--master_port={_free_port()}", "--master_addr=127.0.0.1"]
    cmd = [sys.executable, *launcher, *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


# A barely trained model may score 0 everywhere; a length reward always varies within a group.
LENGTH_REWARD = "def length_reward(completions, **columns):\n    return [min(len(c), 40) / 40 for c in completions]\n"


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory, tiny_model_dir):
    reward_file = tmp_path_factory.mktemp("reward") / "length_reward.py"
    reward_file.write_text(LENGTH_REWARD)
    rewards = f"rewards={{accuracy: 1.0, format: 0.2, '{reward_file}:length_reward': 0.5}}"
    out = {}
    for procs in (1, 2):
        d = tmp_path_factory.mktemp(f"procs{procs}")
        _launch(procs, [str(WORKER), str(d), str(tiny_model_dir), *SETTINGS, rewards])
        out[procs] = d
    return out


def test_two_processes_sample_and_train_what_one_does(one_and_two):
    one = json.loads((one_and_two[1] / "rank0.json").read_text())
    ranks = [json.loads((one_and_two[2] / f"rank{r}.json").read_text()) for r in (0, 1)]
    for step, single in enumerate(one):
        shares = [r[step] for r in ranks]
        # Each rank trained on its contiguous share of whole groups; together: the single batch.
        assert sum((s["completions"] for s in shares), []) == single["completions"]
        assert len(shares[0]["completions"]) == len(shares[1]["completions"]) == 12
        together = sum((s["advantages"] for s in shares), [])
        assert together == pytest.approx(single["advantages"], abs=1e-6)
        assert any(abs(a) > 0 for a in together), "a step without signal tests nothing"
        for s in shares:  # the reduced loss, entropy and gradient norm are the global batch's, on every rank
            assert s["loss"] == pytest.approx(single["loss"], rel=1e-4, abs=1e-6)
            assert s["grad_norm"] == pytest.approx(single["grad_norm"], rel=1e-4)
            assert s["entropy"] == pytest.approx(single["entropy"], rel=1e-4)


def test_two_processes_end_with_the_weights_one_does(one_and_two, tiny_model_dir):
    a = load_file(str(one_and_two[1] / "run" / "checkpoint-3" / "model.safetensors"))
    b = load_file(str(one_and_two[2] / "run" / "checkpoint-3" / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    for name in a:
        assert not torch.equal(a[name], base[name]), f"{name} did not train"
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def test_rank_zero_writes_the_run_once(one_and_two):
    run = one_and_two[2] / "run"
    rows = runs.read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]  # one line per step, not one per rank
    single = runs.read_jsonl(one_and_two[1] / "run" / "metrics.jsonl")
    for r2, r1 in zip(rows, single, strict=True):
        assert r2["reward"] == r1["reward"] and r2["tokens_generated"] == r1["tokens_generated"]
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-4, abs=1e-6)
    assert len(runs.read_jsonl(run / "samples.jsonl")) == len(runs.read_jsonl(one_and_two[1] / "run" / "samples.jsonl"))
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2", "checkpoint-3"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["tokens_generated"] == json.loads((one_and_two[1] / "run" / "summary.json").read_text())["tokens_generated"]


def test_share_splits_in_order_and_evenly():
    for n in range(0, 11):
        for world in (1, 2, 3, 4):
            slices = [Dist(r, world).share(n) for r in range(world)]
            assert slices[0][0] == 0 and slices[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
            assert max(hi - lo for lo, hi in slices) - min(hi - lo for lo, hi in slices) <= 1


def test_rank_share_keeps_groups_whole():
    batch = RolloutBatch([[1]] * 12, [[i] for i in range(12)], None, torch.arange(12.0))
    shares = [rank_share(batch, Dist(r, 2), group_size=4) for r in (0, 1)]
    assert [s.completion_ids for s in shares] == [[[i] for i in range(8)], [[i] for i in range(8, 12)]]
    assert shares[1].advantages.tolist() == [8.0, 9.0, 10.0, 11.0]


def test_two_process_sft_through_the_cli_equals_one(tmp_path, tiny_model_dir):
    """`torchrun … -m aha sft`: rank 0 claims one run directory and writes it once; the model equals
    the one-process run's (each rank's rows, the loss over the global token count)."""
    from test_sft import traces

    data = traces(tmp_path / "traces.jsonl", 40)
    args = ["-m", "aha", "sft", str(data), f"model.path={tiny_model_dir}", "sft.epochs=1", "sft.lr=3e-3",
            "sft.batch_rows=16", "data.held_out=0.1", "run.threads=1", "run.progress=false", "run.name=sft"]
    for procs in (1, 2):
        _launch(procs, [*args, f"run.out_dir={tmp_path / str(procs)}"])
    assert sorted(p.name for p in (tmp_path / "2").iterdir()) == ["sft"]  # not sft and sft-2
    one, two = (load_file(str(tmp_path / p / "sft" / "model" / "model.safetensors")) for p in ("1", "2"))
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)
    rows = [runs.read_jsonl(tmp_path / p / "sft" / "metrics.jsonl") for p in ("1", "2")]
    assert [r["step"] for r in rows[1]] == [r["step"] for r in rows[0]] == [1, 2, 3]
    for a, b in zip(*rows):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4) and b["tokens_trained"] == a["tokens_trained"]


def test_two_processes_resume_from_rank_zeros_checkpoint(one_and_two, tmp_path, tiny_model_dir):
    """Stopped after step 2 and resumed to step 3 by 2 processes: the logs rewound once, every rank
    restored from the checkpoint, the end weights those of the uninterrupted single process."""
    rewards = next(a for a in _fixture_args(one_and_two) if a.startswith("rewards="))
    common = [str(WORKER), str(tmp_path), str(tiny_model_dir), *SETTINGS, rewards]
    _launch(2, [*common, "grpo.steps=2"])
    _launch(2, [*common, "grpo.steps=3"])
    run = tmp_path / "run"
    assert [r["step"] for r in runs.read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    a = load_file(str(one_and_two[1] / "run" / "checkpoint-3" / "model.safetensors"))
    b = load_file(str(run / "checkpoint-3" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def _fixture_args(one_and_two) -> list[str]:
    # The rewards override the fixture used (it names a file in the fixture's temporary folder).
    config = (one_and_two[1] / "run" / "config.yaml").read_text()
    import yaml

    weights = yaml.safe_load(config)["rewards"]
    return ["rewards={" + ", ".join(f"'{k}': {v}" for k, v in weights.items()) + "}"]
