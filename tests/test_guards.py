"""What a run does when it is stopped, diverges, or is given a config it cannot honour: SIGTERM,
the non-finite guard, load-time validation, resume checks, a torn log line."""

import math
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from aha import runs
from aha.algo.objectives import OBJECTIVES
from aha.cli import app

FAST = ["grpo.prompts_per_step=4", "grpo.group_size=4", "grpo.lr=1e-3", "rollout.max_new_tokens=16",
        "eval.problems=4", "eval.k=1", "eval.every=0", "run.progress=false", "run.threads=1"]


def zero(tmp_path, model_dir, *extra, resume=None):
    args = ["zero", "--resume", str(resume)] if resume else ["zero", f"model.path={model_dir}", f"run.out_dir={tmp_path}"]
    return CliRunner().invoke(app, [*args, *([] if resume else FAST), *extra])


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_sigterm_finishes_the_step_saves_and_resumes_to_the_same_weights(tmp_path, tiny_model_dir):
    steps = ["grpo.steps=6", "run.save_every=100"]
    assert zero(tmp_path, tiny_model_dir, *steps, "run.name=straight").exit_code == 0
    cmd = [sys.executable, "-m", "aha", "zero", f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}",
           "run.name=preempted", *FAST, *steps]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "preempted" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what kill, systemd, Kubernetes and SLURM send before preempting
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, output
    assert "aha zero --resume" in output
    saved = runs.latest_checkpoint(tmp_path / "preempted")
    assert saved is not None and 2 <= int(saved.name.split("-")[1]) < 6
    assert zero(tmp_path, tiny_model_dir, resume=tmp_path / "preempted").exit_code == 0
    a, b = weights(tmp_path / "straight" / "checkpoint-6"), weights(tmp_path / "preempted" / "checkpoint-6")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in runs.read_jsonl(metrics)] == [1, 2, 3, 4, 5, 6]


def test_non_finite_losses_are_skipped_then_abort_with_the_last_good_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    real = OBJECTIVES["grpo"]
    calls = []

    def poisoned(logp, mask, **kw):
        loss, stats = real(logp, mask, **kw)
        calls.append(1)
        return (loss * math.nan, stats) if len(calls) > 2 else (loss, stats)  # from step 3 on (one micro-batch a step)

    monkeypatch.setitem(OBJECTIVES, "grpo", poisoned)
    result = zero(tmp_path, tiny_model_dir, "grpo.steps=10", "run.save_every=1", "run.name=nan", "run.max_bad_steps=3")
    assert result.exit_code == 3, result.output
    assert "not finite" in result.output and "3 steps in a row" in result.output
    run = tmp_path / "nan"
    assert runs.latest_checkpoint(run).name == "checkpoint-4"  # steps 3 and 4 were skipped, weights unchanged
    saved = weights(run / "checkpoint-4")
    assert all(torch.isfinite(t).all() for t in saved.values())
    skipped = weights(run / "checkpoint-3")  # step 3 was skipped too: both hold step 2's weights
    assert all(torch.equal(saved[k], skipped[k]) for k in saved)
    rows = runs.read_jsonl(run / "metrics.jsonl")
    assert [r["monitor/non_finite"] for r in rows] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_a_diverging_learning_rate_ends_non_zero_with_a_finite_checkpoint(tmp_path, tiny_model_dir):
    # A length reward always varies, so every step has advantages and the huge rate really acts.
    (tmp_path / "length.py").write_text("def reward(completions, **_):\n    return [len(c) / 40 for c in completions]\n")
    rewards = f"rewards={{'{tmp_path / 'length.py'}:reward': 1.0}}"
    result = zero(tmp_path, tiny_model_dir, "grpo.steps=8", "grpo.lr=1e30", "run.save_every=1", "run.name=lr", rewards)
    assert result.exit_code == 3, result.output
    assert "not finite" in result.output
    latest = runs.latest_checkpoint(tmp_path / "lr")
    assert latest is not None and all(torch.isfinite(t).all() for t in weights(latest).values())


INVALID = [
    ("grpo.steps=0", "grpo.steps"), ("grpo.steps=-1", "grpo.steps"), ("grpo.group_size=1", "grpo.group_size"),
    ("grpo.group_size=0", "grpo.group_size"), ("eval.k=0", "eval.k"), ("grpo.prompts_per_step=0", "grpo.prompts_per_step"),
    ("run.save_every=0", "run.save_every"), ("eval.problems=0", "eval.problems"),
    ("grpo.advantage=grpoo", "valid: dr_grpo, grpo, rloo"), ("grpo.loss_agg=mean", "grpo.loss_agg"),
    ("rewards={acuracy: 1.0}", "valid rewards: accuracy"), ("task.name=divison", "valid: "),
    ("rollout.engine=vlm", "rollout.engine"), ("grpo.preset=dapoo", "valid presets"),
    ("rewards={accuracy: .nan}", "finite"), ("grpo.lr=0", "grpo.lr"), ("rollout.top_p=0", "rollout.top_p"),
    ("task.options={hard: 1}", "task.options"), ("run.log_to=[tensorbord]", "run.log_to"),
]


@pytest.mark.parametrize("override,named", INVALID, ids=[o for o, _ in INVALID])
def test_invalid_configs_fail_before_any_model_loads_and_leave_no_run_directory(tmp_path, override, named, monkeypatch):
    import aha.models.loading as loading

    monkeypatch.setattr(loading, "load_model_dir", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["zero", f"run.out_dir={out}", override])
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert not out.exists()


def test_model_directories_missing_parts_are_named(tmp_path, tiny_model_dir):
    import shutil

    for missing, expected in (("tokenizer.json", "no tokenizer"), ("model.safetensors", "no weights")):
        broken = tmp_path / missing
        shutil.copytree(tiny_model_dir, broken)
        for name in (missing, "tokenizer_config.json") if missing == "tokenizer.json" else (missing,):
            (broken / name).unlink()
        result = CliRunner().invoke(app, ["zero", f"model.path={broken}", f"run.out_dir={tmp_path / 'out'}"])
        assert result.exit_code == 2 and expected in result.output, result.output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["zero", f"run.out_dir={blocker / 'runs'}"])
    assert result.exit_code == 2 and "is a file, not a directory" in result.output


def test_resume_refuses_algorithm_changes_unless_allowed_and_repairs_a_torn_line(tmp_path, tiny_model_dir):
    assert zero(tmp_path, tiny_model_dir, "grpo.steps=2", "run.save_every=1", "run.name=r").exit_code == 0
    run = tmp_path / "r"
    refused = zero(tmp_path, tiny_model_dir, "grpo.group_size=8", resume=run)
    assert refused.exit_code == 2 and "grpo.group_size: 4 → 8" in refused.output
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "rew')  # a kill mid-write
    resumed = zero(tmp_path, tiny_model_dir, "grpo.steps=3", resume=run)  # more steps: always allowed
    assert resumed.exit_code == 0, resumed.output
    assert "torn last line" in resumed.output
    assert [r["step"] for r in runs.read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    allowed = CliRunner().invoke(app, ["zero", "--resume", str(run), "--allow-changes", "grpo.steps=4", "grpo.lr=5e-4"])
    assert allowed.exit_code == 0, allowed.output
    assert "lr: 0.0005" in (run / "config.yaml").read_text()
    assert "grpo.lr" in (run / "config-changes.jsonl").read_text()


def test_settle_heap_sets_glibc_policy_unless_told_not_to(monkeypatch):
    """Every stage's set-up keeps freed heap memory (glibc's trimming off) so the soak's RSS stays
    at its high-water mark; AHA_HEAP=glibc leaves the allocator alone."""
    import ctypes.util
    import platform

    from aha.train import session

    monkeypatch.setenv(session.HEAP_ENV, "glibc")
    assert session.settle_heap() is False
    monkeypatch.delenv(session.HEAP_ENV)
    if platform.libc_ver()[0] != "glibc" or ctypes.util.find_library("c") is None:
        pytest.skip("not glibc")
    assert session.settle_heap() is True
