"""FSDP2 sharding (`aha.train.sharding`): two gloo processes on CPU, each holding half of every
parameter, against one process on the same global batch and seed — the same losses and the same
weights (fp32, float tolerance), checkpoints that plain transformers loads, resume (sharded, and a
sharded run's checkpoint resumed by one process). The reference model is sharded too and reset to
the policy at step 2 (its step-3 KL term then depends on the reset). The settings split the groups unevenly (3 and 2
per rank, one group per micro-batch), so the ranks' micro-batch counts differ and the shorter
rank's zero-loss passes keep FSDP's collectives matched."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_multiproc import LENGTH_REWARD, WORKER, _launch

from aha import runs

SETTINGS = ["grpo.prompts_per_step=5", "grpo.group_size=4", "grpo.micro_batch_size=4", "grpo.lr=1e-3",
            "grpo.beta=0.04", "grpo.ref_reset_every=2", "grpo.steps=3", "rollout.max_new_tokens=16", "rollout.noise=row", "eval.problems=4",
            "eval.k=2", "eval.every=0", "run.save_every=2", "run.progress=false", "run.threads=1"]
FSDP = {"AHA_SHARDING": "fsdp"}


def _weights(run_dir, step):
    return load_file(str(run_dir / f"checkpoint-{step}" / "model.safetensors"))


def _assert_same_weights(got: dict, want: dict, rtol=1e-5, atol=1e-6):
    assert sorted(got) == sorted(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


def launch_grpo_runs(tmp_path_factory, model_dir, variants) -> dict:
    """The GRPO worker under each (name, processes, extra env) of `variants`, on the same settings:
    {name: its output directory, "args": the worker's arguments}."""
    reward_file = tmp_path_factory.mktemp("reward") / "length_reward.py"
    reward_file.write_text(LENGTH_REWARD)
    args = [str(model_dir), *SETTINGS,
            f"rewards={{accuracy: 1.0, format: 0.2, '{reward_file}:length_reward': 0.5}}"]
    out = {"args": args}
    for name, procs, env in variants:
        out[name] = tmp_path_factory.mktemp(name)
        _launch(procs, [str(WORKER), str(out[name]), *args], env)
    return out


@pytest.fixture(scope="module")
def grpo_runs(tmp_path_factory, tiny_model_dir):
    return launch_grpo_runs(tmp_path_factory, tiny_model_dir, (("one", 1, {}), ("sharded", 2, FSDP)))


def assert_two_ranks_train_what_one_process_does(grpo_runs, name: str, base_dir) -> list[tuple[dict, dict]]:
    """Run `name` (2 ranks) against "one": each rank's share of every step's completions, the same
    losses and gradient norms, the same trained weights, metrics written once. Returns the metric
    rows of both, step by step, for checks of the caller's own."""
    one = json.loads((grpo_runs["one"] / "rank0.json").read_text())
    ranks = [json.loads((grpo_runs[name] / f"rank{r}.json").read_text()) for r in (0, 1)]
    for step, single in enumerate(one):
        shares = [r[step] for r in ranks]
        assert [len(s["completions"]) for s in shares] == [12, 8]  # 3 and 2 groups: uneven micro-batch counts
        assert sum((s["completions"] for s in shares), []) == single["completions"]
        for s in shares:
            assert s["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-7)
            assert s["grad_norm"] == pytest.approx(single["grad_norm"], rel=1e-5)
    base = load_file(str(base_dir / "model.safetensors"))
    two, single = _weights(grpo_runs[name] / "run", 3), _weights(grpo_runs["one"] / "run", 3)
    assert all(not torch.equal(single[n], base[n]) for n in single), "a parameter did not train"
    _assert_same_weights(two, single)
    rows = [runs.read_jsonl(grpo_runs[k] / "run" / "metrics.jsonl") for k in ("one", name)]
    assert [r["step"] for r in rows[1]] == [1, 2, 3]  # written once, by rank 0
    for a, b in zip(*rows, strict=True):
        assert b["reward"] == a["reward"] and b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-7)
    return list(zip(*rows, strict=True))


def test_sharded_grpo_trains_what_one_process_does(grpo_runs, tiny_model_dir):
    assert_two_ranks_train_what_one_process_does(grpo_runs, "sharded", tiny_model_dir)


def test_each_rank_holds_half_of_every_parameter_and_of_the_optimizer_state(grpo_runs):
    one = json.loads((grpo_runs["one"] / "held0.json").read_text())
    held = [json.loads((grpo_runs["sharded"] / f"held{r}.json").read_text()) for r in (0, 1)]
    for model in ("policy", "reference"):
        assert held[0][model].keys() == one[model].keys()
        for name, (whole, _) in one[model].items():
            local = [h[model][name][0] for h in held]
            assert [h[model][name][1] for h in held] == [whole, whole]
            # fully_shard splits dim 0 in two (the first rank takes the odd row): every weight here has even rows
            assert local == [whole // 2, whole // 2], (model, name, local, whole)
    assert [h["optimizer"] for h in held] == [one["optimizer"] // 2] * 2  # AdamW's moments: sharded too


def assert_checkpoint_loads_as_one_process_wrote_it(grpo_runs, name: str):
    """`name`'s step-3 checkpoint loads in plain transformers, head still tied, with the weights the
    one-process run wrote. Returns the checkpoint's directory."""
    from transformers import AutoModelForCausalLM

    checkpoint = grpo_runs[name] / "run" / "checkpoint-3"
    assert json.loads((checkpoint / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied, written once
    single = _weights(grpo_runs["one"] / "run", 3)
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, single[key if key in single else "model.embed_tokens.weight"],
                                   rtol=1e-5, atol=1e-6)
    return checkpoint


def test_sharded_checkpoint_loads_in_transformers(grpo_runs):
    checkpoint = assert_checkpoint_loads_as_one_process_wrote_it(grpo_runs, "sharded")
    reference = torch.load(checkpoint / "reference" / "weights.pt", weights_only=True)
    assert all(not hasattr(t, "to_local") for t in reference.values())  # full tensors, not shards


@pytest.mark.parametrize("procs", [2, 1])
def test_resume_from_a_sharded_checkpoint(grpo_runs, tmp_path, procs):
    """The sharded run's step-2 checkpoint resumed to step 3 — sharded again, or by one process (the
    optimizer state keyed by name): the weights of the uninterrupted one-process run."""
    run = tmp_path / "run"
    shutil.copytree(grpo_runs["sharded"] / "run", run)
    shutil.rmtree(run / "checkpoint-3")
    _launch(procs, [str(WORKER), str(tmp_path), *grpo_runs["args"]], FSDP)
    assert [r["step"] for r in runs.read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    _assert_same_weights(_weights(run, 3), _weights(grpo_runs["one"] / "run", 3))


def test_sharded_sft_through_accelerates_variable_equals_one_process(tmp_path, tiny_model_dir):
    """`aha sft` under accelerate's FSDP variable, gradient checkpointing on: the model equals one
    process's. 36 training rows in batches of 35: the second batch's one row leaves rank 1 without
    any, so it runs the one-token zero-loss stand-in."""
    from test_sft import traces

    data = traces(tmp_path / "traces.jsonl", 40)
    args = ["-m", "aha", "sft", str(data), f"model.path={tiny_model_dir}", "sft.epochs=1", "sft.lr=3e-3",
            "sft.batch_rows=35", "data.held_out=0.1", "run.threads=1", "run.progress=false", "run.name=sft"]
    _launch(1, [*args, f"run.out_dir={tmp_path / '1'}"])
    _launch(2, [*args, f"run.out_dir={tmp_path / '2'}", "model.gradient_checkpointing=true"],
            {"ACCELERATE_USE_FSDP": "true"})
    one, two = (load_file(str(tmp_path / p / "sft" / "model" / "model.safetensors")) for p in ("1", "2"))
    # test_multiproc's tolerance: at lr 3e-3 Adam's first steps move every weight by about lr·g/|g|,
    # so where a gradient element is near AdamW's eps, summation-order rounding in it (the ranks'
    # halves added, another micro-batch split) shows in the weight: here up to 4e-6 of a 0.09 weight.
    _assert_same_weights(two, one, rtol=1e-4, atol=1e-5)
    rows = [runs.read_jsonl(tmp_path / p / "sft" / "metrics.jsonl") for p in ("1", "2")]
    assert [r["rows"] for r in rows[0]] == [35, 1]
    for a, b in zip(*rows, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["tokens_trained"] == a["tokens_trained"]


def test_fsdp_and_deepspeed_together_are_refused(monkeypatch):
    from aha.train import dist, sharding

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("AHA_SHARDING", "fsdp")
    with pytest.raises(sharding.ShardingUnsupported, match="both FSDP .* and DeepSpeed"):
        dist.init()


def test_a_deepspeed_launch_without_deepspeed_names_the_extra(monkeypatch):
    import builtins

    from aha.train import zero_ds

    real_import = builtins.__import__

    def no_deepspeed(name, *args, **kwargs):  # CI's environment, whether or not this one has it
        if name == "deepspeed":
            raise ImportError("No module named 'deepspeed'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_deepspeed)
    with pytest.raises(zero_ds.ZeroUnsupported, match=r"pip install 'aha-rl\[deepspeed\]'"):
        zero_ds._import()


def test_what_sharding_does_not_cover_is_refused_by_setting(tiny_model_dir):
    from aha.config import ZeroConfig, load_config
    from aha.models.loading import load_model_dir
    from aha.train import sharding

    model, _ = load_model_dir(tiny_model_dir, "float32")
    cfg = load_config(ZeroConfig, None, [f"model.path={tiny_model_dir}"])
    with pytest.raises(sharding.ShardingUnsupported, match="rollout.engine='vllm'"):
        sharding.check_supported(model, cfg.model, "vllm")
    lora_cfg = load_config(ZeroConfig, None, [f"model.path={tiny_model_dir}", "model.lora.r=4"])
    with pytest.raises(sharding.ShardingUnsupported, match="model.lora.r"):
        sharding.check_supported(model, lora_cfg.model, "torch")
    sharding.check_supported(model, cfg.model, "torch")  # what the tests above shard
