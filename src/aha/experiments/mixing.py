"""F3: language mixing appears, and the language-consistency reward removes it at a small cost (R1 §2.3.2).

Per seed, two arms of `aha zero zero-bilingual` (the division task with prompts in English or
Chinese, its shipped bilingual base): rewards {accuracy 1, format 0.2}, and the same plus
{language_consistency W}. Mixing is the mean share of chain-of-thought words not in the prompt's
language on the held-out evaluation (200 problems × 4 samples, T 0.6, top-p 0.95) of the base
and of each final policy. Effects:

- mixing appears: the accuracy-only arm's final mixing minus the base's (required);
- the reward removes it: accuracy-only final mixing minus the consistency arm's (required);
- at a small cost: accuracy-only final pass@1 minus the consistency arm's (informative: the paper
  reports a slight degradation, not a quantity to reproduce).

`bench/r1_mixing.py` runs the same arms for any seeds, as parallel processes, and prints the table.
"""

from __future__ import annotations

import json
from pathlib import Path

from aha.events import Events
from aha.experiments import runner
from aha.experiments.verdict import effect, finding
from aha.observe.stats import mean_ci95

FINDINGS = ("F3",)
RECIPE = "zero-bilingual"
ARMS = {"accuracy": "{{accuracy: 1.0, format: 0.2}}",  # str.format templates: braces doubled
        "consistency": "{{accuracy: 1.0, format: 0.2, language_consistency: {w}}}"}
SCHEDULES = {
    "full": {"steps": 200, "overrides": []},
    "quick": {"steps": 100, "overrides": []},
    "tiny": {"steps": 3, "overrides": ["run.threads=1", "grpo.prompts_per_step=4", "grpo.group_size=4", "eval.problems=8",
                                       "eval.k=2", "eval.every=0", "run.save_every=2"]},
}
PAPER = ("§2.3.2", "§2.3.2: R1-Zero's chains of thought mix languages; a language-consistency reward (share of "
         "target-language words) removes the mixing, with a slight loss of performance in the ablation")


def describe(schedule: str) -> str:
    s, full = SCHEDULES[schedule], SCHEDULES["full"]
    shorter = "" if s["steps"] >= full["steps"] else f" (the recipe's own: {full['steps']})"
    return (f"two arms of recipe {RECIPE} (rewards accuracy + format; the same + language_consistency 1.0), "
            f"{s['steps']} GRPO steps each{shorter}" + (f", overrides {' '.join(s['overrides'])}" if s["overrides"] else ""))


def arm_config(runs_dir: Path, arm: str, seed: int, weight: float = 1.0, extra: list[str] = ()):
    """(config, run directory) of one arm: the bilingual recipe with the arm's rewards."""
    if arm not in ARMS:
        raise ValueError(f"arm {arm!r}: expected one of {', '.join(ARMS)}")
    run_dir = Path(runs_dir) / f"{arm}-s{seed}"
    rewards = ARMS[arm].format(w=weight)
    return runner.zero_config(RECIPE, run_dir, [f"run.seed={seed}", f"rewards={rewards}", *extra]), run_dir


def run_arm(runs_dir: Path, arm: str, seed: int, weight: float = 1.0, extra: list[str] = (),
            events: Events | None = None) -> Path:
    """One arm's run (resumable: a finished one is read, a checkpointed one continues)."""
    cfg, run_dir = arm_config(runs_dir, arm, seed, weight, extra)
    runner.run_grpo(cfg, run_dir, events)
    return run_dir


def figures(run_dir: Path) -> dict:
    """One arm's held-out figures from its summary.json."""
    s = json.loads((Path(run_dir) / "summary.json").read_text())
    base, final = s["base_eval"]["language_mixing"], s["final_eval"]["language_mixing"]
    return {"base_acc": s["base_accuracy"], "final_acc": s["final_accuracy"], "base_mix": base["all"],
            "final_mix": final["all"], "final_mix_en": final.get("en"), "final_mix_zh": final.get("zh"),
            "base_mix_en": base.get("en"), "base_mix_zh": base.get("zh"), "steps": s["steps"],
            "seconds": s["wall_seconds"]}


def run_seed(out_dir: Path, seed: int, quick: bool = False, events: Events | None = None) -> dict:
    """Both arms for one seed; their held-out figures, training curves and cost."""
    from aha import runs

    s = SCHEDULES[runner.schedule(quick)]
    extra = [f"grpo.steps={s['steps']}", *s["overrides"]]
    out = {"seed": seed, "steps": s["steps"], "cost": [], "bases": {}}
    for arm in ARMS:
        cfg, run_dir = arm_config(Path(out_dir), arm, seed, extra=extra)
        summary = runner.run_grpo(cfg, run_dir, events)
        cost, bases = runner.split_cost(summary.get("cost"), runner.base_key(cfg))
        out["cost"].append(cost)
        out["bases"].update(bases)
        rows = runs.read_jsonl(run_dir / "metrics.jsonl")
        out[arm] = {**figures(run_dir), "curve": runner.downsample(rows, ("language_mixing_rate", "accuracy"))}
    out["cost"] = runner.merge_costs(out["cost"])
    return out


def summarize(per_seed: list[dict]) -> dict:
    acc, con = [r["accuracy"] for r in per_seed], [r["consistency"] for r in per_seed]
    appears = effect("held-out mixing, accuracy-only RL − base", [a["final_mix"] - a["base_mix"] for a in acc], +1,
                     unit=" points", scale=100)
    removed = effect("held-out mixing, accuracy-only − with the consistency reward",
                     [a["final_mix"] - c["final_mix"] for a, c in zip(acc, con)], +1, unit=" points", scale=100)
    cost = effect("held-out pass@1, accuracy-only − with the consistency reward (the cost)",
                  [a["final_acc"] - c["final_acc"] for a, c in zip(acc, con)], +1, unit=" points", scale=100,
                  required=False)
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731 — a local shorthand
    shows = (f"held-out mixing: base {mean(acc, 'base_mix'):.1%}, accuracy-only RL {mean(acc, 'final_mix'):.1%}, "
             f"with the consistency reward {mean(con, 'final_mix'):.1%}; pass@1 {mean(acc, 'final_acc'):.1%} vs "
             f"{mean(con, 'final_acc'):.1%} ({per_seed[0]['steps']} GRPO steps per arm)")
    return {"F3": finding("F3", "Language mixing appears; the consistency reward removes it at a small cost",
                          PAPER[0], [appears, removed, cost], shows, paper_detail=PAPER[1])}


def _fmt_ci(values: list[float], scale: float = 100.0, unit: str = " %") -> str:
    mean, low, high = mean_ci95(values)
    if len(values) == 1:
        return f"{mean * scale:.1f}{unit}"
    return f"{mean * scale:.1f}{unit} [{low * scale:.1f}, {high * scale:.1f}]"


def report(rows: dict, seeds: list[int]) -> str:
    """The bench's markdown: per-seed figures of both arms and the means with 95 % t-intervals.
    `rows[(arm, seed)]` holds `figures()` of that run."""
    lines = ["| seed | arm | base acc | final acc | base mixing (en / zh) | final mixing (en / zh) | steps | s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed in seeds:
        for arm in ARMS:
            f = rows[(arm, seed)]
            lines.append(f"| {seed} | {arm} | {f['base_acc']:.3f} | {f['final_acc']:.3f} | "
                         f"{f['base_mix']:.1%} ({f['base_mix_en']:.1%} / {f['base_mix_zh']:.1%}) | "
                         f"{f['final_mix']:.1%} ({f['final_mix_en']:.1%} / {f['final_mix_zh']:.1%}) | "
                         f"{f['steps']} | {f['seconds']:.0f} |")
    acc = [rows[("accuracy", s)] for s in seeds]
    con = [rows[("consistency", s)] for s in seeds]
    ratio = [f["final_mix"] / max(f["base_mix"], 1e-9) for f in acc]
    cost = [a["final_acc"] - c["final_acc"] for a, c in zip(acc, con)]
    lines += [
        "",
        f"mean over {len(seeds)} seeds, 95 % t-interval:",
        f"- base mixing: {_fmt_ci([f['base_mix'] for f in acc])}",
        f"- accuracy-only final mixing: {_fmt_ci([f['final_mix'] for f in acc])}; ratio to base "
        f"{_fmt_ci(ratio, 1.0, '×')} (target ≥ 2×)",
        f"- consistency final mixing: {_fmt_ci([f['final_mix'] for f in con])} (target ≤ 5 %)",
        f"- held-out pass@1: accuracy-only {_fmt_ci([f['final_acc'] for f in acc])}, consistency "
        f"{_fmt_ci([f['final_acc'] for f in con])}; cost (paired) {_fmt_ci(cost, 100.0, ' points')} (target ≤ 2)",
    ]
    return "\n".join(lines)
