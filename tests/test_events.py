"""Stages speak in events: what a listener hears from a GRPO run, and the metric loggers."""

import sys
import types

import pytest

from aha import config, stages
from aha.events import Events, Recorder
from aha.observe.loggers import LOGGERS, make_loggers

FAST = ["grpo.steps=3", "grpo.prompts_per_step=2", "grpo.group_size=2", "rollout.max_new_tokens=8",
        "eval.problems=2", "eval.k=1", "eval.every=2", "eval.during_problems=2", "run.threads=1"]


def test_a_grpo_run_emits_phases_progress_metrics_and_done(tmp_path, tiny_model_dir):
    cfg = config.load_config(config.ZeroConfig, overrides=[f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}",
                                                           *FAST])
    recorder = Recorder()
    summary = stages.grpo.run(cfg, tmp_path / "run", Events([recorder]))
    assert [e.data["name"] for e in recorder.of("phase")] == ["GRPO"]
    assert [e.data["completed"] for e in recorder.of("advance")] == [1, 2, 3]
    assert [e.data["step"] for e in recorder.of("metrics")] == [1, 2, 3]
    assert "eval/accuracy" in recorder.of("metrics")[1].data["row"]
    assert recorder.of("done")[0].data["summary"] == summary
    assert {e.stage for e in recorder.events} == {"grpo"}
    assert any("starting pass@1" in e.data["message"] for e in recorder.of("info"))


def test_tensorboard_logger_writes_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = Events(make_loggers(["tensorboard"], tmp_path, {"a": 1}), stage="grpo")
    for step in (1, 2):
        events.metrics(step, {"step": step, "reward": 0.5 * step, "note": "text is skipped", "flag": True})
    events.done({})
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["grpo/reward"]
    assert [(s.step, s.value) for s in acc.Scalars("grpo/reward")] == [(1, 0.5), (2, 1.0)]


def test_wandb_logger_logs_numbers_by_step_and_finishes(tmp_path, monkeypatch):
    calls = []

    class Run:
        def log(self, data, step):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw["name"], kw["config"])) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    events = Events(make_loggers(["wandb"], tmp_path / "myrun", {"lr": 1}), stage="sft")
    events.metrics(5, {"step": 5, "loss": 1.25})
    events.done({})
    assert calls == [("init", "myrun", {"lr": 1}), ("log", {"sft/loss": 1.25}, 5), ("finish",)]


def test_missing_logger_library_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match="pip install wandb"):
        make_loggers(["wandb"], tmp_path, {})
    assert set(LOGGERS) == {"tensorboard", "wandb"}
