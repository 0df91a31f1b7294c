"""DeepSeek-R1's pipeline (§2.3) over run directories: `run(cfg, pipeline_dir, events) -> summary`.

Reads top-down, one stage per sub-directory of the pipeline directory:

    zero/                R1-Zero from the base with the same RL settings (the report's overlay)
    cold-start/          SFT of the base on readable long-CoT traces (`cold_start.jsonl`)
    reasoning-rl/        GRPO from the cold start: accuracy + format + language consistency
    rejection-sampling/  k samples per train prompt from the RL checkpoint, kept when correct and readable
    rejection-sft/       SFT **from the base** (as R1 retrains V3-Base) on those traces + non-reasoning rows
    rm/                  a reward model (`aha rm`, Bradley–Terry on preference pairs) unless one is given
    all-scenario-rl/     GRPO from the rejection SFT on reasoning + general prompts: rule rewards on the
                         whole response, the reward model (or an LLM judge) on the summary
    compare.json, report.html   every stage's model on one held-out set, side by side

A stage whose `summary.json` exists is done and skipped; a stage that was stopped (a signal, a
kill -9) resumes from its own checkpoint or sampled chunks, so `aha r1 --resume DIR` continues in
the stage and step where it stopped and ends where an uninterrupted run ends. Every stage's config
is built here from the pipeline's sections; they were validated when the pipeline's config loaded.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Callable

from aha import runs
from aha.config import DataConfig, SampleConfig, SFTConfig, TaskConfig, ZeroConfig, save_config, to_dict
from aha.config.r1 import R1Config, RLSection
from aha.config.rm import PairDataConfig, RMConfig
from aha.events import Events
from aha.pipelines import r1_compare
from aha.tasks import get_task
from aha.tasks.cold_start import cold_start_rows

STAGES = ("zero", "cold-start", "reasoning-rl", "rejection-sampling", "rejection-sft", "rm", "all-scenario-rl")


def run(cfg: R1Config, pipeline_dir: Path, events: Events | None = None) -> dict:
    events = events or Events()
    pipeline_dir.mkdir(parents=True, exist_ok=True)
    if not (pipeline_dir / "config.yaml").exists():
        save_config(cfg, pipeline_dir / "config.yaml")
    from aha.stages import grpo, sample, sft
    from aha.stages.pretrain import base_model_dir

    base = Path(base_model_dir(cfg.model, cfg.pretrain, cfg.task, events.for_stage("pretrain")))
    done: dict[str, dict] = {}
    if cfg.zero_baseline:
        zero_rl = RLSection(grpo=cfg.reasoning_rl.grpo, rewards={"accuracy": 1.0, "format": 0.2})
        done["zero"] = _stage(pipeline_dir / "zero", grpo.run, rl_config(cfg, pipeline_dir, "zero", base, zero_rl), events)
    cold_data = cold_start_data(cfg, pipeline_dir)
    done["cold-start"] = _stage(pipeline_dir / "cold-start", sft.run,
                                sft_config(cfg, pipeline_dir, "cold-start", base, cold_data, cfg.cold_start.sft), events)
    cold_model = runs.model_dir_of(pipeline_dir / "cold-start")
    done["reasoning-rl"] = _stage(pipeline_dir / "reasoning-rl", grpo.run,
                                  rl_config(cfg, pipeline_dir, "reasoning-rl", cold_model, cfg.reasoning_rl), events)
    rl_model = runs.model_dir_of(pipeline_dir / "reasoning-rl")
    done["rejection-sampling"] = _stage(pipeline_dir / "rejection-sampling", sample.run,
                                        rejection_sample_config(cfg, pipeline_dir, rl_model), events)
    mix = sft_mix(cfg, pipeline_dir)
    done["rejection-sft"] = _stage(pipeline_dir / "rejection-sft", sft.run,
                                   sft_config(cfg, pipeline_dir, "rejection-sft", base, mix, cfg.rejection.sft), events)
    reward_model = cfg.all_scenario.reward_model
    if cfg.all_scenario.trains_reward_model:
        from aha.stages import rm

        done["rm"] = _stage(pipeline_dir / "rm", rm.run, rm_config(cfg, pipeline_dir, base), events)
        reward_model = dataclasses.replace(reward_model, path=str(pipeline_dir / "rm" / "model"))
    sft_model = runs.model_dir_of(pipeline_dir / "rejection-sft")
    done["all-scenario-rl"] = _stage(pipeline_dir / "all-scenario-rl", grpo.run,
                                     all_scenario_config(cfg, pipeline_dir, sft_model, reward_model), events)
    models = {"base": base, **{name: runs.model_dir_of(pipeline_dir / name)
                               for name in done if name not in ("rejection-sampling", "rm")}}
    comparison = r1_compare.compare(cfg, pipeline_dir, models, done, events.for_stage("compare"), reward_model)
    summary = {"stage": "r1", "stages": list(done), "comparison": comparison,
               "mix": json.loads((pipeline_dir / "rejection-sft" / "mix.json").read_text()),
               "config": to_dict(cfg)}
    runs.write_json(pipeline_dir / "summary.json", summary)
    events.for_stage("r1").done(summary)
    return summary


def _stage(run_dir: Path, stage: Callable, cfg, events: Events) -> dict:
    """A finished stage is read, not rerun; an unfinished one resumes from what it left."""
    finished = run_dir / "summary.json"
    if finished.exists():
        events.for_stage(run_dir.name).info(f"{run_dir.name}: done, skipped ({finished})")
        return json.loads(finished.read_text())
    events.for_stage(run_dir.name).info(f"stage {run_dir.name} → {run_dir}")
    return stage(cfg, run_dir, events)


def _shared(cfg: R1Config, pipeline_dir: Path, name: str, model_dir: Path) -> dict:
    run = dataclasses.replace(cfg.run, name=name, out_dir=str(pipeline_dir))
    return {"run": run, "model": dataclasses.replace(cfg.model, path=str(model_dir)), "pretrain": cfg.pretrain}


def rl_config(cfg: R1Config, pipeline_dir: Path, name: str, model_dir: Path, rl: RLSection) -> ZeroConfig:
    config = ZeroConfig(**_shared(cfg, pipeline_dir, name, model_dir), task=cfg.task, prompt=cfg.prompt, rollout=cfg.rollout,
                        grpo=rl.grpo, rewards=dict(rl.rewards), eval=cfg.eval)
    config.validate()
    return config


def sft_config(cfg: R1Config, pipeline_dir: Path, name: str, model_dir: Path, data_file: Path, section) -> SFTConfig:
    data = DataConfig(path=str(data_file), format="prompt_completion")
    config = SFTConfig(**_shared(cfg, pipeline_dir, name, model_dir), task=cfg.task, data=data, sft=section)
    config.validate()
    return config


def rm_config(cfg: R1Config, pipeline_dir: Path, base: Path) -> RMConfig:
    """`aha rm` on the base's body, its prompts rendered as the policy's are (the score must see
    the text it was trained on)."""
    config = RMConfig(**_shared(cfg, pipeline_dir, "rm", base), task=cfg.task, prompt=cfg.prompt,
                      data=PairDataConfig(), rm=cfg.all_scenario.rm)
    config.validate()
    return config


def all_scenario_config(cfg: R1Config, pipeline_dir: Path, model_dir: Path, reward_model) -> ZeroConfig:
    """GRPO over a mixture: the reasoning task and the general task in `general_share`, one batch."""
    s = cfg.all_scenario
    parts = {cfg.task.name: 1.0 - s.general_share, cfg.rejection.general_task: s.general_share}
    options = {"parts": parts, "base": cfg.task.name,
               **({"options": {cfg.task.name: dict(cfg.task.options)}} if cfg.task.options else {})}
    config = ZeroConfig(**_shared(cfg, pipeline_dir, "all-scenario-rl", model_dir),
                        task=TaskConfig(name="mixture", options=options), prompt=cfg.prompt, rollout=cfg.rollout,
                        grpo=s.grpo, rewards=dict(s.rewards), eval=cfg.eval, reward_model=reward_model)
    config.validate()
    return config


def rejection_sample_config(cfg: R1Config, pipeline_dir: Path, model_dir: Path) -> SampleConfig:
    # Sampling as the paper evaluates: T 0.6, top-p 0.95 (cfg.eval's), the RL run's length limit.
    rollout = dataclasses.replace(cfg.rollout, temperature=cfg.eval.temperature, top_p=cfg.eval.top_p)
    config = SampleConfig(**_shared(cfg, pipeline_dir, "rejection-sampling", model_dir), task=cfg.task, prompt=cfg.prompt,
                          rollout=rollout, sample=cfg.rejection.sample)
    config.validate()
    return config


def cold_start_data(cfg: R1Config, pipeline_dir: Path) -> Path:
    """The user's traces as given, or the task's own readable traces written once (deterministic)."""
    c = cfg.cold_start
    if c.data:
        return Path(c.data)
    path = pipeline_dir / "cold_start.jsonl"
    if not path.exists():
        rows = cold_start_rows(get_task(cfg.task.name, **cfg.task.options), c.traces, c.seed, cfg.prompt.template)
        _write_rows(path, rows)
    return path


def sft_mix(cfg: R1Config, pipeline_dir: Path) -> Path:
    """Rejection-sampled reasoning traces + non-reasoning rows (R1 §2.3.3: ~600k + ~200k), shuffled
    with the run's seed; `mix.json` records what went in."""
    out = pipeline_dir / "rejection-sft"
    path = out / "mix.jsonl"
    if path.exists():
        return path
    reasoning = [{**row, "source": "rejection-sampling"}
                 for row in runs.read_jsonl(pipeline_dir / "rejection-sampling" / "sft.jsonl")]
    if not reasoning:
        raise ValueError(f"{pipeline_dir / 'rejection-sampling' / 'sft.jsonl'}: no trace survived the filters; "
                         "sample more problems (rejection.sample.problems) or train the reasoning RL longer")
    share = cfg.rejection.non_reasoning_share
    n_general = round(len(reasoning) * share / (1.0 - share))
    general = non_reasoning_rows(cfg, n_general)
    rows = reasoning + general
    random.Random(cfg.run.seed).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    runs.write_json(out / "mix.json", {
        "rows": len(rows), "reasoning": len(reasoning), "non_reasoning": len(general),
        "non_reasoning_task": cfg.rejection.general_task,
        "non_reasoning_quality": _counts(r.get("quality", "unknown") for r in general),
        "reasoning_languages": _counts(r.get("language", "?") for r in reasoning)})
    _write_rows(path, rows)
    return path


def non_reasoning_rows(cfg: R1Config, n: int) -> list[dict]:
    """Direct-answer rows with an empty or one-line thought, from the general task's train split."""
    if n == 0:
        return []
    from aha.tasks.general import non_reasoning_rows as general_rows

    rows = general_rows(n, seed=cfg.run.seed + 99)
    return [{**row, "source": cfg.rejection.general_task} for row in rows]


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(runs.json_line(r) for r in rows))
    tmp.replace(path)  # whole or absent: a kill mid-write leaves nothing half-written to resume from

