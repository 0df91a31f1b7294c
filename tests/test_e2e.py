"""End to end on a tiny model: `aha zero` trains, logs, checkpoints, resumes exactly, survives Ctrl-C."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from typer.testing import CliRunner

from aha import runs
from aha.cli import app
from aha.models.tokenizer import train_tokenizer
from aha.stages import grpo
from aha.stages.pretrain import build_corpus
from aha.tasks import get_task

FAST = ["grpo.prompts_per_step=4", "grpo.group_size=4", "grpo.lr=1e-3", "rollout.max_new_tokens=24",
        "eval.problems=8", "eval.k=2", "eval.every=2", "eval.during_problems=4", "run.save_every=2",
        "run.progress=false", "run.threads=1"]


# A barely trained model may score 0 on every sample, and equal rewards carry no advantage. A user
# reward on length always varies, so every step has a learning signal (and the user path is used).
LENGTH_REWARD = """
def length_reward(completions, **columns):
    return [min(len(c), 40) / 40 for c in completions]
"""


def zero(tmp_path, model_dir, *extra, resume=None):
    reward_file = tmp_path / "length_reward.py"
    reward_file.write_text(LENGTH_REWARD)
    rewards = f"rewards={{accuracy: 1.0, format: 0.2, '{reward_file}:length_reward': 0.5}}"
    args = ["zero", *(["--resume", str(resume)] if resume else []),
            *([f"model.path={model_dir}", f"run.out_dir={tmp_path}", rewards] if not resume else []), *FAST, *extra]
    return CliRunner().invoke(app, args, catch_exceptions=False)


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_grpo_changes_every_parameter_and_writes_the_run(tmp_path, tiny_model_dir):
    result = zero(tmp_path, tiny_model_dir, "grpo.steps=3", "run.name=e2e")
    assert result.exit_code == 0, result.output
    run = tmp_path / "e2e"
    before, after = weights(tiny_model_dir), weights(run / "checkpoint-3")
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == [], f"parameters that did not train: {unchanged}"
    rows = runs.read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("reward", "reward/accuracy", "reward/format", "accuracy", "format", "response_length_mean",
                "response_length_p90", "reflection_rate", "kl", "clip_frac", "entropy", "grad_norm",
                "seconds/rollout", "seconds/reward", "seconds/update", "tokens_generated"):
        assert key in rows[0], key
    assert "eval/accuracy" in rows[1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and 0 <= summary["base_accuracy"] <= 1 and 0 <= summary["final_accuracy"] <= 1
    assert summary["cost"]["phases"]["update"]["tokens_trained"] > 0
    assert (run / "config.yaml").exists() and (run / "report.html").exists()
    assert runs.read_jsonl(run / "samples.jsonl")[0]["completion"]
    # The other commands read what the run wrote.
    evaluated = CliRunner().invoke(app, ["eval", str(run / "checkpoint-3"), "--problems", "4", "--k", "2",
                                         "--max-new-tokens", "16", "--json", "--out", str(tmp_path / "eval")])
    assert evaluated.exit_code == 0 and '"pass@1"' in evaluated.output, evaluated.output
    (run / "report.html").unlink()
    reported = CliRunner().invoke(app, ["report", str(run)])
    assert reported.exit_code == 0 and (run / "report.html").exists()
    assert CliRunner().invoke(app, ["report", str(tmp_path / "nothing-here")]).exit_code == 2


@pytest.mark.parametrize("extra", [(), ("model.precision=bf16-mixed", "grpo.beta=0.04")], ids=["fp32", "bf16-mixed"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, tiny_model_dir, extra):
    assert zero(tmp_path, tiny_model_dir, "grpo.steps=4", "run.name=straight", *extra).exit_code == 0
    assert zero(tmp_path, tiny_model_dir, "grpo.steps=2", "run.name=split", *extra).exit_code == 0
    resumed = zero(tmp_path, tiny_model_dir, "grpo.steps=4", *extra, resume=tmp_path / "split")
    assert resumed.exit_code == 0, resumed.output
    a, b = weights(tmp_path / "straight" / "checkpoint-4"), weights(tmp_path / "split" / "checkpoint-4")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a = runs.read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    rows_b = runs.read_jsonl(tmp_path / "split" / "metrics.jsonl")
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra["reward"] == rb["reward"] and ra["loss"] == rb["loss"]


def test_ctrl_c_finishes_the_step_saves_and_resume_finishes(tmp_path, tiny_model_dir, monkeypatch):
    real_step = grpo.run_step

    def interrupted(t, step):
        if step == 2:  # Ctrl-C arrives in the middle of step 2
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(t, step)

    monkeypatch.setattr(grpo, "run_step", interrupted)
    result = zero(tmp_path, tiny_model_dir, "grpo.steps=3", "run.name=ctrlc", "run.save_every=100")
    assert result.exit_code == 130
    assert runs.latest_checkpoint(tmp_path / "ctrlc").name == "checkpoint-2"
    assert "aha zero --resume" in result.output
    monkeypatch.setattr(grpo, "run_step", real_step)
    assert zero(tmp_path, tiny_model_dir, resume=tmp_path / "ctrlc").exit_code == 0
    assert [r["step"] for r in runs.read_jsonl(tmp_path / "ctrlc" / "metrics.jsonl")] == [1, 2, 3]


def test_a_second_run_never_overwrites_the_first(tmp_path, tiny_model_dir):
    for _ in range(2):
        assert zero(tmp_path, tiny_model_dir, "grpo.steps=1", "run.name=same", "eval.every=0").exit_code == 0
    assert (tmp_path / "same" / "summary.json").exists() and (tmp_path / "same-2" / "summary.json").exists()


@pytest.mark.parametrize("architecture", ["qwen2", "llama"])
def test_random_init_hf_directory_trains_through_the_same_path(tmp_path, architecture):
    """Any HF causal-LM directory stands in for the embedded model (`model.path=DIR`)."""
    tokenizer = train_tokenizer(build_corpus(get_task("division"), 300, 0), 300)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    model = Qwen2ForCausalLM(Qwen2Config(**common)) if architecture == "qwen2" else LlamaForCausalLM(LlamaConfig(**common))
    model_dir = tmp_path / architecture
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    result = zero(tmp_path, model_dir, "grpo.steps=2", f"run.name=rand-{architecture}", "eval.every=0")
    assert result.exit_code == 0, result.output
    assert len(runs.read_jsonl(tmp_path / f"rand-{architecture}" / "metrics.jsonl")) == 2


def test_cli_errors_are_clear(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["zero", "grpo.bta=1"])
    assert result.exit_code == 2 and "valid keys in grpo" in result.output
    result = runner.invoke(app, ["zero", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output
    result = runner.invoke(app, ["zero", "model.path=/nonexistent", f"run.out_dir={tmp_path}"])
    assert result.exit_code == 2 and "model.path: /nonexistent: not a directory" in result.output
    assert not any(tmp_path.iterdir())  # a failed start leaves no run directory


def test_resume_syncs_an_engine_that_holds_its_own_weights(tmp_path, tiny_model_dir, monkeypatch):
    """A colocated vLLM engine is built from the weights on disk (the base's, when
    `rollout.options.model_dir` names it); resuming must hand it the checkpoint's weights before the
    first resumed rollout (a stand-in records what it is given)."""
    from aha import config

    assert zero(tmp_path, tiny_model_dir, "grpo.steps=2", "run.name=run").exit_code == 0
    given = []

    class OwnCopy:
        def __init__(self, policy):
            self.policy = policy

        def load_weights(self, state_dict):
            given.append({k: v.detach().clone() for k, v in state_dict.items()})

    monkeypatch.setattr(grpo, "make_engine", lambda name, policy, tokenizer, **options: OwnCopy(policy))
    run_dir = tmp_path / "run"
    cfg = config.load_config(config.ZeroConfig, run_dir / "config.yaml")
    latest = run_dir / "checkpoint-2"
    grpo.setup(cfg, run_dir, latest, resume_from=latest)  # as `grpo.resume` calls it
    saved = weights(latest)
    assert len(given) == 1
    assert [k for k in saved if not torch.equal(given[0][k], saved[k])] == []
