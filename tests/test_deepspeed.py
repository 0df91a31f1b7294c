"""DeepSpeed ZeRO (`aha.train.zero_ds`): two gloo processes on CPU under DeepSpeed's engine (stage
2, and stage 3) against one plain process on the same global batch and seed — the same losses,
gradient norms and weights (fp32, float tolerance), checkpoints that plain transformers loads,
written once, and resume from DeepSpeed's own state. The settings split the groups unevenly (3
and 2 per rank, one group per micro-batch), so the ranks' micro-batch counts differ and the
shorter rank's zero-loss passes keep DeepSpeed's per-backward reductions matched.

Skipped where deepspeed is not installed (CI's environment): `pip install 'aha-rl[deepspeed]'`."""

import json
import shutil

import pytest
from safetensors.torch import load_file
from test_fsdp import (_assert_same_weights, _weights, assert_checkpoint_loads_as_one_process_wrote_it,
                       assert_two_ranks_train_what_one_process_does, launch_grpo_runs)
from test_multiproc import WORKER, _launch

from aha import runs

deepspeed = pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install 'aha-rl[deepspeed]')")


def _zero(stage: int) -> dict:
    # What `accelerate launch --config_file deepspeed-zero2.yaml` sets (accelerate's own variables).
    return {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": str(stage),
            "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "none", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "none",
            "ACCELERATE_GRADIENT_CLIPPING": "1.0", "DS_ACCELERATOR": "cpu"}


@pytest.fixture(scope="module")
def grpo_runs(tmp_path_factory, tiny_model_dir):
    return launch_grpo_runs(tmp_path_factory, tiny_model_dir,
                            (("one", 1, {}), ("zero2", 2, _zero(2)), ("zero3", 2, _zero(3))))


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_grpo_trains_what_one_process_does(grpo_runs, tiny_model_dir, stage):
    for _, zero_row in assert_two_ranks_train_what_one_process_does(grpo_runs, f"zero{stage}", tiny_model_dir):
        assert zero_row["skipped"] == 0.0


def test_zero2_partitions_the_optimizer_state_and_zero3_the_parameters(grpo_runs):
    one = json.loads((grpo_runs["one"] / "held0.json").read_text())
    for stage in (2, 3):
        held = [json.loads((grpo_runs[f"zero{stage}"] / f"held{r}.json").read_text()) for r in (0, 1)]
        for r in held:
            assert r["deepspeed_stage"] == stage
            # AdamW's two moments, each rank a half of every trainable element (DeepSpeed pads to even)
            assert r["optimizer"] == pytest.approx(one["optimizer"] / 2, abs=4)
            whole = sum(n for n, _ in one["policy"].values())
            local = sum(n for n, _ in r["policy"].values())
            assert local == (whole if stage == 2 else 0)  # stage 3: the module holds placeholders only


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_checkpoint_loads_in_transformers(grpo_runs, stage):
    checkpoint = assert_checkpoint_loads_as_one_process_wrote_it(grpo_runs, f"zero{stage}")
    assert (checkpoint / "deepspeed" / "state").is_dir()  # DeepSpeed's partitioned optimizer state
    assert not list((grpo_runs[f"zero{stage}"] / "run").glob(".tmp-*"))  # staged, then moved in


@pytest.mark.parametrize("stage", [2, 3])
def test_resume_from_a_zero_checkpoint(grpo_runs, tmp_path, stage):
    """The ZeRO run's step-2 checkpoint resumed to step 3 under the same stage (DeepSpeed's
    optimizer state loaded back): the weights of the uninterrupted one-process run."""
    run = tmp_path / "run"
    shutil.copytree(grpo_runs[f"zero{stage}"] / "run", run)
    shutil.rmtree(run / "checkpoint-3")
    _launch(2, [str(WORKER), str(tmp_path), *grpo_runs["args"]], _zero(stage))
    assert [r["step"] for r in runs.read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    _assert_same_weights(_weights(run, 3), _weights(grpo_runs["one"] / "run", 3))


def test_a_plain_resume_of_a_deepspeed_checkpoint_is_refused(grpo_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(grpo_runs["zero2"] / "run", run)
    shutil.rmtree(run / "checkpoint-3")
    with pytest.raises(AssertionError, match="written by a DeepSpeed run"):
        _launch(1, [str(WORKER), str(tmp_path), *grpo_runs["args"]])


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_sft_through_accelerates_variables_equals_one_process(tmp_path, tiny_model_dir, stage):
    """`aha sft` under accelerate's DeepSpeed variables (stage 2 with gradient checkpointing on,
    which stage 3 refuses): the model equals one process's. 36 training rows in batches of 35: the
    second batch's one row leaves rank 1 without any, so it runs the one-token zero-loss stand-in."""
    from test_sft import traces

    data = traces(tmp_path / "traces.jsonl", 40)
    args = ["-m", "aha", "sft", str(data), f"model.path={tiny_model_dir}", "sft.epochs=1", "sft.lr=3e-3",
            "sft.batch_rows=35", "data.held_out=0.1", "run.threads=1", "run.progress=false", "run.name=sft"]
    _launch(1, [*args, f"run.out_dir={tmp_path / '1'}"])
    _launch(2, [*args, f"run.out_dir={tmp_path / '2'}", f"model.gradient_checkpointing={stage == 2}"], _zero(stage))
    one, two = (load_file(str(tmp_path / p / "sft" / "model" / "model.safetensors")) for p in ("1", "2"))
    _assert_same_weights(two, one, rtol=1e-4, atol=1e-5)  # test_fsdp's tolerance, for the same reason
    rows = [runs.read_jsonl(tmp_path / p / "sft" / "metrics.jsonl") for p in ("1", "2")]
    assert [r["rows"] for r in rows[0]] == [35, 1]
    for a, b in zip(*rows, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["tokens_trained"] == a["tokens_trained"]


def test_deepspeed_settings_aha_owns_are_checked(monkeypatch):
    from aha.train import zero_ds

    for key, value in _zero(2).items():
        monkeypatch.setenv(key, value)
    cfg = zero_ds.ds_config(max_grad_norm=1.0, world=2)
    assert cfg["zero_optimization"]["stage"] == 2 and cfg["gradient_allreduce_op"] == "sum"
    assert cfg["managed_gradient_accumulation"] is False and cfg["gradient_clipping"] == 1.0
    with pytest.raises(zero_ds.ZeroUnsupported, match="max_grad_norm=0.5"):
        zero_ds.ds_config(max_grad_norm=0.5, world=2)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert "gradient_allreduce_op" not in zero_ds.ds_config(max_grad_norm=1.0, world=2)  # stage 3 averages
