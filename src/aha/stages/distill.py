"""Distillation from any teacher: `run(cfg, run_dir, events) -> summary`.

Reads top-down: the teacher's traces through `aha sample`'s machinery into `teacher/` (resumable:
a killed run re-samples only the chunks it had not finished; a teacher may be a run, a model
directory or any OpenAI-compatible endpoint) → its filters (verified correct, readable, deduped) →
decontamination against the task's held-out questions (`aha.algo.decontaminate`) →
`distill.jsonl`, each row with its provenance (teacher, sampling, prompt id, verdict) → SFT of the
student into `student/` (resumable from its last checkpoint).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aha import runs
from aha.algo.decontaminate import HeldOut, decontaminate
from aha.config import DataConfig, ModelConfig, SampleConfig, SFTConfig, save_config, to_dict
from aha.config.distill import DistillConfig
from aha.events import Events
from aha.observe.cost import CostLedger
from aha.stages import sample as sample_stage
from aha.stages import sft as sft_stage
from aha.tasks import get_task


def run(cfg: DistillConfig, run_dir: Path, events: Events | None = None) -> dict:
    events = events or Events()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.yaml").exists():
        save_config(cfg, run_dir / "config.yaml")
    teacher = sample_stage.run(teacher_config(cfg), run_dir / "teacher", events)
    rows = runs.read_jsonl(run_dir / "teacher" / "sft.jsonl")
    task = get_task(cfg.task.name, **cfg.task.options)
    d = cfg.decontaminate
    held_out = HeldOut((p.question for p in task.problems("test", d.problems, seed=d.seed)), n=d.ngram)
    kept, dropped = decontaminate(rows, held_out) if d.problems else (rows, [])
    events.for_stage("distill").info(f"decontamination dropped {len(dropped)} of {len(rows)} rows")
    if not kept:
        raise ValueError(f"no teacher trace survived the filters and decontamination ({len(rows)} before "
                         "decontamination): sample more problems (sample.problems) or a stronger teacher")
    data_file = run_dir / "distill.jsonl"
    data_file.write_text("".join(runs.json_line({**row, "source": "teacher/records.jsonl"}) for row in kept))
    student = sft_stage.run(student_config(cfg, data_file), run_dir / "student", events)
    summary = {
        "stage": "distill", "teacher": _teacher_name(run_dir), "records": teacher["records"],
        "after_filters": len(rows), "decontaminated": len(dropped), "trained_rows": len(kept),
        "filters": teacher["filters"], "correct_rate": teacher["correct_rate"],
        "held_out_loss_start": student["held_out_loss_start"], "held_out_loss_end": student["held_out_loss_end"],
        "student_dir": student["model_dir"],
        # The teacher's sampling and the student's SFT, each phase's FLOPs at its own model's N.
        "cost": CostLedger.from_dict(student["cost"]).merge(CostLedger.from_dict(teacher["cost"])).to_dict(),
        "config": to_dict(cfg),
    }
    runs.write_json(run_dir / "summary.json", summary)
    events.for_stage("distill").done(summary)
    return summary


def teacher_config(cfg: DistillConfig) -> SampleConfig:
    """`aha sample`'s config for the teacher: its model (or endpoint) on the train split."""
    teacher = cfg.teacher
    rollout, model = cfg.rollout, ModelConfig(path="embedded")
    if teacher.is_url:  # the endpoint holds the teacher; the student's tokenizer maps ids to text
        options = {**rollout.options, "base_url": teacher.path}
        if teacher.model_name:
            options["model_name"] = teacher.model_name
        rollout, model = dataclasses.replace(rollout, engine="openai", options=options), cfg.model
    elif teacher.path != "embedded":
        model = ModelConfig(path=str(runs.model_dir_of(Path(teacher.path))))
    config = SampleConfig(run=dataclasses.replace(cfg.run, name="teacher"), model=model, pretrain=cfg.pretrain,
                          task=cfg.task, prompt=cfg.prompt, rollout=rollout, sample=cfg.sample)
    config.validate()
    return config


def student_config(cfg: DistillConfig, data_file: Path) -> SFTConfig:
    data = DataConfig(path=str(data_file), format="prompt_completion", held_out=cfg.held_out)
    config = SFTConfig(run=dataclasses.replace(cfg.run, name="student"), model=cfg.model, pretrain=cfg.pretrain,
                       task=cfg.task, data=data, sft=cfg.sft)
    config.validate()
    return config


def _teacher_name(run_dir: Path) -> str:
    first = runs.read_jsonl(run_dir / "teacher" / "records.jsonl")[:1]
    return first[0]["model"] if first else ""
