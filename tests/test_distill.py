"""`aha distill`: teacher traces → filters → decontamination → SFT, with provenance."""

from __future__ import annotations

import pytest

from aha.algo.decontaminate import HeldOut, decontaminate
from aha.config import PretrainConfig, TaskConfig, load_config
from aha.config.distill import DistillConfig
from aha.events import Events, Recorder
from aha.models.loading import shipped_base_dir
from aha.runs import read_jsonl
from aha.stages import distill
from aha.tasks import get_task


def test_decontaminate_by_whole_question_and_ngrams():
    held = HeldOut(["188 // 32", "Natalia sold clips to 48 of her friends in April and then half as many in May"], n=5)
    rows = [{"question": "188  //  32"}, {"question": "188 // 33"},
            {"question": "Tom sold clips to 48 of her friends in June."}, {"question": "an unrelated question"}]
    kept, dropped = decontaminate(rows, held)
    assert [r["question"] for r in dropped] == ["188  //  32", "Tom sold clips to 48 of her friends in June."]
    assert [r["question"] for r in kept] == ["188 // 33", "an unrelated question"]
    with pytest.raises(ValueError):
        HeldOut([], n=0)


def test_distill_end_to_end(tiny_model_dir, tmp_path):
    cfg = load_config(DistillConfig, None, [
        "teacher.path=embedded", f"model.path={tiny_model_dir}", "sample.problems=24", "sample.k=4",
        "rollout.max_new_tokens=32", "rollout.max_batch=32", "sft.epochs=1", "sft.batch_rows=8",
        "decontaminate.problems=2000", f"run.out_dir={tmp_path}", "run.progress=false", "held_out=0.2"])
    recorder = Recorder()
    summary = distill.run(cfg, tmp_path / "d", Events([recorder]))
    teacher_name = shipped_base_dir(PretrainConfig(), TaskConfig()).name  # the shipped base teaches the tiny one
    rows = read_jsonl(tmp_path / "d" / "distill.jsonl")
    assert summary["trained_rows"] == len(rows) > 0
    assert summary["after_filters"] == summary["trained_rows"] + summary["decontaminated"]
    test_questions = {p.question for p in get_task("division").problems("test", 2000, seed=0)}
    assert not any(r["question"] in test_questions for r in rows)
    assert all(r["model"].endswith(teacher_name) and r["sampling"]["temperature"] == 0.6 and r["prompt_id"]
               and r["source"] == "teacher/records.jsonl" for r in rows)
    assert (tmp_path / "d" / "student" / "model" / "config.json").is_file()
    assert summary["held_out_loss_end"] is not None
    # A second run resumes: the teacher's records are reused, not sampled again.
    records = read_jsonl(tmp_path / "d" / "teacher" / "records.jsonl")
    again = Recorder()
    distill.run(cfg, tmp_path / "d", Events([again]))
    assert read_jsonl(tmp_path / "d" / "teacher" / "records.jsonl") == records
    assert any("resuming" in e.data.get("message", "") for e in again.of("info"))


def test_distill_config_errors(tmp_path):
    with pytest.raises(ValueError, match="teacher.path: required"):
        load_config(DistillConfig, None, [])
    with pytest.raises(ValueError, match="no such directory"):
        load_config(DistillConfig, None, [f"teacher.path={tmp_path / 'nope'}"])
    with pytest.raises(ValueError, match="train split"):
        load_config(DistillConfig, None, ["teacher.path=http://127.0.0.1:1/v1", "sample.split=test"])


def test_the_distill_command_runs_and_prints_its_table(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from aha.cli import app

    result = CliRunner().invoke(app, [
        "distill", "--teacher", "embedded", "--student", str(tiny_model_dir), "sample.problems=8", "sample.k=2",
        "rollout.max_new_tokens=24", "sft.epochs=1", "decontaminate.problems=100", f"run.out_dir={tmp_path}",
        "run.progress=false", "run.threads=1", "held_out=0"])
    assert result.exit_code == 0, result.output
    assert "distillation" in result.output and (tmp_path / "distill" / "student" / "model" / "config.json").is_file()
