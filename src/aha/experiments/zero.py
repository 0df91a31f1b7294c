"""F1, F2 and F6 from one R1-Zero run per seed (and F4's baseline): `aha zero` on its default recipe.

Per seed: GRPO on the embedded base (`recipes/zero-tiny.yaml`, seed s), then the paper's evaluation
(`aha eval`: k samples per problem at T 0.6, top-p 0.95, the same held-out problems for both) of the
base and of the final policy. From them:

- F1 "pure RL lifts a base model": held-out pass@1 after GRPO minus before.
- F2 "the aha moment": mean response length and reflection rate over the last 10 % of steps minus
  the first 10 % (the checks must still be there at the end, not only at a peak), and the step
  `aha.observe.aha.detect_aha` finds.
- F6 "majority vote beats pass@1": cons@k minus pass@1 of the final policy (the paper: cons@64 86.7
  vs pass@1 71.0 on AIME; here k = 16).

With one seed, F1 and F6 carry a paired bootstrap interval over the held-out problems (seed-to-seed
variation left out, and the report says so); over seeds, a Student-t interval.
"""

from __future__ import annotations

from pathlib import Path

from aha import runs
from aha.events import Events
from aha.experiments import runner
from aha.experiments.verdict import effect, finding

FINDINGS = ("F1", "F2", "F6")
RECIPE = "zero-tiny"
# grpo steps, extra overrides of the recipe, and the paper-protocol evaluation (problems, k).
SCHEDULES = {
    "full": {"steps": 200, "overrides": [], "eval_problems": 200, "eval_k": 16},
    "quick": {"steps": 120, "overrides": [], "eval_problems": 200, "eval_k": 16},
    "tiny": {"steps": 4, "eval_problems": 8, "eval_k": 4,
             "overrides": ["run.threads=1", "grpo.prompts_per_step=4", "grpo.group_size=4", "eval.problems=8", "eval.k=2",
                           "eval.every=2", "eval.during_problems=4", "run.save_every=2"]},
}
CURVE_KEYS = ("response_length_mean", "reflection_rate", "reward", "accuracy", "eval/accuracy")

PAPER = {  # (the table's few words, the statement)
    "F1": ("AIME 15.6 → 71.0 (R1-Zero)", "R1-Zero: AIME 2024 pass@1 15.6 % → 71.0 % from RL alone (Table 2, Fig. 2)"),
    "F2": ("Fig. 3, Table 3", "Fig. 3: response length grows steadily during RL; Table 3: the model learns to "
           "re-evaluate its steps (\"Wait, wait. Wait. That's an aha moment\"), and reflection persists"),
    "F6": ("86.7 vs 71.0", "R1-Zero on AIME 2024: cons@64 86.7 vs pass@1 71.0 (Table 2)"),
}


def describe(schedule: str) -> str:
    s, full = SCHEDULES[schedule], SCHEDULES["full"]
    shorter = "" if s["steps"] >= full["steps"] else f" (the recipe's own: {full['steps']})"
    return (f"R1-Zero: recipe {RECIPE}, {s['steps']} GRPO steps{shorter}"
            + (f", overrides {' '.join(s['overrides'])}" if s["overrides"] else "")
            + f"; the paper's evaluation of base and final policy: {s['eval_problems']} held-out problems × "
              f"{s['eval_k']} samples, T 0.6, top-p 0.95")


def zero_dir(runs_root: Path, seed: int) -> Path:
    """Where seed `seed`'s R1-Zero run lives (F4 starts from it too)."""
    return runs_root / "zero" / f"seed-{seed}" / "grpo"


def zero_run(runs_root: Path, seed: int, schedule: str, events: Events | None = None) -> tuple[dict, object]:
    """(summary, config) of seed `seed`'s R1-Zero run, run (or resumed) if not finished."""
    s = SCHEDULES[schedule]
    run_dir = zero_dir(runs_root, seed)
    cfg = runner.zero_config(RECIPE, run_dir, [f"run.seed={seed}", f"grpo.steps={s['steps']}", *s["overrides"]])
    return runner.run_grpo(cfg, run_dir, events), cfg


def run_seed(out_dir: Path, seed: int, quick: bool = False, events: Events | None = None) -> dict:
    """One seed: the R1-Zero run, the evaluation of its base and final policy, the figures of F1/F2/F6."""
    from aha.stages.paper_eval import EvalSettings
    from aha.stages.pretrain import base_model_dir

    name = runner.schedule(quick)
    s = SCHEDULES[name]
    summary, cfg = zero_run(Path(out_dir).parent.parent, seed, name, events)
    run_dir = zero_dir(Path(out_dir).parent.parent, seed)
    # The stage's own held-out problems (its seed is run.seed + 12345), so F1 reads like `aha zero`'s
    # summary; the sampling seed differs, and k is larger.
    settings = EvalSettings(task=cfg.task.name, problems=s["eval_problems"], k=s["eval_k"], seed=seed + 12345)
    base_path = base_model_dir(cfg.model, cfg.pretrain, cfg.task)
    base = runner.run_eval(base_path, settings, Path(out_dir) / "eval-base", events)
    final = runner.run_eval(runs.latest_checkpoint(run_dir), settings, Path(out_dir) / "eval-final", events)
    before, after = runner.per_problem(Path(out_dir) / "eval-base"), runner.per_problem(Path(out_dir) / "eval-final")
    rows = runs.read_jsonl(run_dir / "metrics.jsonl")
    cost, bases = runner.split_cost(summary.get("cost"), runner.base_key(cfg))
    n = int(summary.get("cost", {}).get("params", 0))
    return {
        "seed": seed, "schedule": name, "run_dir": str(run_dir), "steps": summary["steps"],
        "k": settings.k, "problems": settings.problems,
        "pass1_base": base["pass@1"], "pass1_final": final["pass@1"],
        "f1_within": runner.paired_bootstrap({p: v[0] for p, v in after.items()},
                                             {p: v[0] for p, v in before.items()}, seed),
        "stage_base": summary["base_accuracy"], "stage_final": summary["final_accuracy"],
        "cons_base": base[f"cons@{settings.k}"], "cons_final": final[f"cons@{settings.k}"],
        "pass_at_k_base": base["pass@k"], "pass_at_k_final": final["pass@k"],
        "f6_within": runner.paired_bootstrap({p: v[1] for p, v in after.items()},
                                             {p: v[0] for p, v in after.items()}, seed),
        "f6_base_within": runner.paired_bootstrap({p: v[1] for p, v in before.items()},
                                                  {p: v[0] for p, v in before.items()}, seed),
        **aha_figures(rows),
        "curves": runner.downsample(rows, CURVE_KEYS),
        "cost": runner.merge_costs([cost, runner.eval_cost(base, n), runner.eval_cost(final, n)]), "bases": bases,
    }


def aha_figures(rows: list[dict]) -> dict:
    """F2's figures from a run's metrics rows: length and reflection early vs late, the aha step."""
    from aha.observe.aha import detect_aha

    length_first, length_last = runner.first_last(rows, "response_length_mean")
    reflection_first, reflection_last = runner.first_last(rows, "reflection_rate")
    aha = detect_aha(rows)
    return {"length_first": length_first, "length_last": length_last, "reflection_first": reflection_first,
            "reflection_last": reflection_last, "aha_step": aha.aha_step, "aha_confirmed": aha.confirmed,
            "aha": aha.describe()}


def summarize(per_seed: list[dict]) -> dict:
    """{"F1": …, "F2": …, "F6": …}: each finding's effects, intervals and verdict."""
    n, k = len(per_seed), per_seed[0]["k"]
    one = per_seed[0] if n == 1 else {}
    boot = "paired bootstrap over held-out problems, one seed"
    f1 = effect("held-out pass@1, after GRPO − base", [r["pass1_final"] - r["pass1_base"] for r in per_seed], +1,
                unit=" points", scale=100, within_seed=one.get("f1_within"), within_seed_kind=boot)
    f6 = effect(f"cons@{k} − pass@1, final policy", [r["cons_final"] - r["pass1_final"] for r in per_seed], +1,
                unit=" points", scale=100, within_seed=one.get("f6_within"), within_seed_kind=boot)
    f6_base = effect(f"cons@{k} − pass@1, base (for comparison)", [r["cons_base"] - r["pass1_base"] for r in per_seed],
                     +1, unit=" points", scale=100, required=False, within_seed=one.get("f6_base_within"),
                     within_seed_kind=boot)
    length = effect("response length, last − first 10 % of steps", [r["length_last"] - r["length_first"] for r in per_seed],
                    +1, unit=" tokens")
    reflect = effect("reflection rate, last − first 10 % of steps",
                     [r["reflection_last"] - r["reflection_first"] for r in per_seed], +1, unit=" points", scale=100)
    still = effect("reflection rate over the last 10 % of steps (checks still there)",
                   [r["reflection_last"] for r in per_seed], +1, unit=" %", scale=100, required=False)
    mean = lambda key: sum(r[key] for r in per_seed) / n  # noqa: E731 — a local shorthand
    ahas = [r["aha_step"] for r in per_seed]
    found = [a for a in ahas if a is not None]
    return {
        "F1": finding("F1", "Pure RL lifts a base model", PAPER["F1"][0], [f1],
                      f"held-out pass@1 {mean('pass1_base'):.1%} → {mean('pass1_final'):.1%} after "
                      f"{per_seed[0]['steps']} GRPO steps (mean of {n} seed{'s' * (n > 1)}; {k} samples × "
                      f"{per_seed[0]['problems']} problems, T 0.6, top-p 0.95)", paper_detail=PAPER["F1"][1]),
        "F2": finding("F2", "The aha moment: longer thinking, lasting self-checks", PAPER["F2"][0],
                      [length, reflect, still],
                      f"length {mean('length_first'):.1f} → {mean('length_last'):.1f} tokens, reflection "
                      f"{mean('reflection_first'):.0%} → {mean('reflection_last'):.0%} (first → last 10 % of steps); "
                      f"aha step detected in {len(found)} of {n} seed{'s' * (n > 1)}"
                      + (f" (steps {', '.join(map(str, found))})" if found else ""),
                      paper_detail=PAPER["F2"][1], aha_steps=ahas),
        "F6": finding("F6", "Majority vote beats pass@1", PAPER["F6"][0], [f6, f6_base],
                      f"final policy: cons@{k} {mean('cons_final'):.1%} vs pass@1 {mean('pass1_final'):.1%}; "
                      f"base: cons@{k} {mean('cons_base'):.1%} vs pass@1 {mean('pass1_base'):.1%}", paper_detail=PAPER["F6"][1]),
    }
