"""F4: cold start steadies and speeds early RL (R1 §2.3.1) — SFT on readable traces, then the same RL.

Per seed: the R1-Zero run of `aha.experiments.zero` (shared with F1/F2/F6) is the baseline. The
cold start is `aha sft` of the same base on readable traces in R1's output format
(`aha.tasks.cold_start`: one language, a check of the first guess, then the answer), followed by
GRPO with the zero run's own config (read from its config.yaml, only the starting model changed).
That RL runs in segments of `every` steps, each resumed exactly and ending with the stage's own
final evaluation (the zero run's protocol: same held-out problems, k, T and seed), until it reaches
the zero run's final pass@1 and has run at least `window` steps. Two effects:

- RL steps to the zero run's final pass@1: the zero run's steps minus the cold start's (a cold
  start that never gets there within the zero run's steps counts as no saving);
- standard deviation of the per-step mean reward over the first `window` RL steps, zero minus cold
  start (steadier early RL is a smaller spread).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from aha import runs
from aha.events import Events
from aha.experiments import runner, zero
from aha.experiments.verdict import effect, finding

FINDINGS = ("F4",)
SCHEDULES = {
    "full": {"every": 10, "window": 20, "traces": 400, "sft": ["sft.lr=5e-4"]},
    "quick": {"every": 10, "window": 20, "traces": 400, "sft": ["sft.lr=5e-4"]},
    "tiny": {"every": 2, "window": 2, "traces": 24, "sft": ["sft.lr=5e-4", "sft.epochs=1", "sft.batch_rows=8", "run.threads=1"]},
}
PAPER = ("§2.3.1", "§2.3.1: a few thousand cold-start long-CoT examples before RL prevent its early unstable phase, "
         "give readable outputs and better performance than R1-Zero")


def describe(schedule: str) -> str:
    s = SCHEDULES[schedule]
    return (f"SFT of the base on {s['traces']} readable traces ({' '.join(s['sft'])}), then GRPO with the zero run's "
            f"config, evaluated every {s['every']} steps until it reaches the zero run's final pass@1 "
            f"(at least {s['window']} steps: the early-reward window)")


def write_traces(path: Path, task_name: str, n: int, seed: int) -> Path:
    """`n` cold-start rows (prompt/completion JSONL, what `aha sft` reads) from the task's train split."""
    from aha.tasks import get_task
    from aha.tasks.cold_start import cold_start_rows

    rows = cold_start_rows(get_task(task_name), n, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(runs.json_line({"prompt": r["prompt"], "completion": r["completion"]}) for r in rows))
    return path


def measure(zero_run_dir: Path, out_dir: Path, seed: int, *, every: int, window: int, traces: int,
            sft_overrides: list[str], events: Events | None = None) -> dict:
    """SFT on the traces, then RL segments until the zero run's final pass@1 is reached."""
    from aha.config import SFTConfig, ZeroConfig, load_config
    from aha.stages.pretrain import base_model_dir

    out_dir.mkdir(parents=True, exist_ok=True)
    zero_summary = json.loads((zero_run_dir / "summary.json").read_text())
    target, zero_steps = zero_summary["final_accuracy"], zero_summary["steps"]
    if not 1 <= every <= zero_steps or window < 1:
        raise ValueError(f"cold start: need 1 ≤ every ≤ the zero run's steps ({zero_steps}) and window ≥ 1, "
                         f"got every={every}, window={window}")
    zero_cfg = load_config(ZeroConfig, zero_run_dir / "config.yaml", validate=False)
    data = write_traces(out_dir / "traces.jsonl", zero_cfg.task.name, traces, seed=7 + seed)
    sft_cfg = load_config(SFTConfig, None, [f"data.path={data}", f"run.seed={seed}", f"run.out_dir={out_dir}",
                                            "run.name=sft", f"task.name={zero_cfg.task.name}",
                                            f"model.path={base_model_dir(zero_cfg.model, zero_cfg.pretrain, zero_cfg.task)}",
                                            *sft_overrides])
    sft_summary = runner.run_sft(sft_cfg, out_dir / "sft", events)
    rl_dir, curve_path = out_dir / "rl", out_dir / "curve.jsonl"
    curve = runs.read_jsonl(curve_path)
    summary = None
    for step in range(every, zero_steps + 1, every):
        if _reached(curve, target) is not None and curve[-1]["step"] >= window:
            break
        if any(p["step"] == step for p in curve):
            continue
        cfg = runner.zero_config(zero_run_dir / "config.yaml", rl_dir,
                                 [f"model.path={out_dir / 'sft' / 'model'}", f"grpo.steps={step}", "eval.every=0"])
        summary = runner.run_grpo(cfg, rl_dir, events)
        if not curve:
            curve = [{"step": 0, "accuracy": summary["base_accuracy"]}]
        curve.append({"step": step, "accuracy": summary["final_accuracy"]})
        _write_curve(curve_path, curve)
    summary = summary or json.loads((rl_dir / "summary.json").read_text())
    zero_rows, cold_rows = runs.read_jsonl(zero_run_dir / "metrics.jsonl"), runs.read_jsonl(rl_dir / "metrics.jsonl")
    reached = _reached(curve, target)
    base_cost, bases = runner.split_cost(sft_summary.get("cost"))
    rl_cost, _ = runner.split_cost(summary.get("cost"))
    return {
        "seed": seed, "target": target, "zero_steps": zero_steps, "zero_base_accuracy": zero_summary["base_accuracy"],
        "cold_curve": curve, "cold_steps_to_target": reached, "every": every, "window": window,
        "sft_accuracy": curve[0]["accuracy"], "sft_held_out_loss": [sft_summary["held_out_loss_start"],
                                                                    sft_summary["held_out_loss_end"]],
        "zero_early_rewards": [r["reward"] for r in zero_rows[:window]],
        "cold_early_rewards": [r["reward"] for r in cold_rows[:window]],
        "zero_eval_curve": [(r["step"], r["eval/accuracy"]) for r in zero_rows if "eval/accuracy" in r],
        "cost": runner.merge_costs([base_cost, rl_cost]), "bases": bases,
    }


def _reached(curve: list[dict], target: float) -> int | None:
    """The first evaluated step whose pass@1 is at least `target` (0 = the SFT model already is)."""
    return next((p["step"] for p in curve if p["accuracy"] >= target), None)


def _write_curve(path: Path, curve: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(runs.json_line(p) for p in curve))
    tmp.replace(path)


def run_seed(out_dir: Path, seed: int, quick: bool = False, events: Events | None = None) -> dict:
    """One seed: the shared R1-Zero run (run here if F1's cell has not run it yet), then the cold start."""
    name = runner.schedule(quick)
    s = SCHEDULES[name]
    zero.zero_run(Path(out_dir).parent.parent, seed, name, events)
    return measure(zero.zero_dir(Path(out_dir).parent.parent, seed), Path(out_dir), seed, every=s["every"],
                   window=s["window"], traces=s["traces"], sft_overrides=s["sft"], events=events)


def summarize(per_seed: list[dict]) -> dict:
    n = len(per_seed)
    saved = [r["zero_steps"] - (r["cold_steps_to_target"] if r["cold_steps_to_target"] is not None else r["zero_steps"])
             for r in per_seed]
    spread = [statistics.pstdev(r["zero_early_rewards"]) - statistics.pstdev(r["cold_early_rewards"]) for r in per_seed]
    window = per_seed[0]["window"]
    steps = effect("RL steps to the zero run's final pass@1: zero − cold start", saved, +1, unit=" steps")
    steady = effect(f"std of the per-step reward over the first {window} RL steps: zero − cold start", spread, +1)
    sft_lift = effect("pass@1 of the cold-start model before RL − base", [r["sft_accuracy"] - r["zero_base_accuracy"]
                                                                         for r in per_seed], +1,
                      unit=" points", scale=100, required=False)
    reached = [r["cold_steps_to_target"] for r in per_seed]
    text = ", ".join("not reached" if s is None else str(s) for s in reached)
    mean_target = sum(r["target"] for r in per_seed) / n
    return {"F4": finding(
        "F4", "Cold start steadies and speeds early RL", PAPER[0], [steps, steady, sft_lift],
        f"the cold start reached the zero run's final pass@1 (mean {mean_target:.1%}, after "
        f"{per_seed[0]['zero_steps']} steps) after {text} RL steps (evaluated every {per_seed[0]['every']}); "
        f"SFT alone: pass@1 {sum(r['sft_accuracy'] for r in per_seed) / n:.1%} vs the base's "
        f"{sum(r['zero_base_accuracy'] for r in per_seed) / n:.1%}",
        paper_detail=PAPER[1], steps_to_target=reached)}
