"""F5 for `aha paper`: distillation beats RL on a small student (Table 6), measured by
`aha.experiments.distill_vs_rl`, its teacher the seed's shared R1-Zero run (`aha.experiments.zero`).

The effect is the distilled student's held-out pass@1 minus the RL-trained student's at equal
training FLOPs (that module's rule: the largest budget both arms cover, read by interpolation),
one value per seed — over seeds a Student-t interval like every other finding; with one seed the
module's bootstrap over held-out problems. The same difference with the teacher's sampling left
uncharged (the paper's own accounting) is shown beside it, informative.

`--quick` does not run F5: `distill_vs_rl` has its full schedule and a test-sized one, nothing in
between that still measures something, and the full one would take `--quick` past its 10 minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

from aha.events import Events
from aha.experiments import distill_vs_rl, runner, zero
from aha.experiments.verdict import effect, finding

FINDINGS = ("F5",)
PAPER = ("Table 6", "Table 6: Qwen-32B-Base after large-scale RL 47.0 on AIME 2024 pass@1, the same base "
                    "distilled from DeepSeek-R1 72.6: distillation beats RL on the smaller model")
QUICK_SKIP = ("not run in --quick: distill-vs-rl has no shortened schedule that still measures something "
              "(its full one adds minutes of RL and distillation per seed); run `aha paper`")


def describe(schedule: str) -> str:
    if schedule == "quick":
        return QUICK_SKIP
    s = distill_vs_rl.QUICK if schedule == "tiny" else distill_vs_rl.FULL
    return (f"distill-vs-rl ({'test-sized schedule' if schedule == 'tiny' else 'full schedule'}), teacher = the "
            f"seed's R1-Zero run; RL arm evaluated at steps {', '.join(map(str, s.rl_points))}; distillation from "
            f"{', '.join(map(str, s.distill_problems))} teacher problems; {s.eval.problems} held-out problems × "
            f"{s.eval.k} samples")


def run_seed(out_dir: Path, seed: int, quick: bool = False, events: Events | None = None) -> dict:
    """One seed of distill-vs-rl on the shared R1-Zero run; its comparison, curves and cost."""
    from aha.train.session import usable_cores

    name = runner.schedule(quick)
    if name == "quick":
        return {"seed": seed, "skipped": QUICK_SKIP}
    runs_root = Path(out_dir).parent.parent
    zero.zero_run(runs_root, seed, name, events)
    # distill_vs_rl keeps each seed in <its out_dir>/seed-<seed>: this cell's directory.
    result = distill_vs_rl.run_seed(Path(out_dir).parent, seed, name == "tiny", events,
                                    teacher_dir=zero.zero_dir(runs_root, seed), threads=usable_cores())
    return {"seed": seed, "comparison": result["comparison"],
            "teacher": {k: result["teacher"].get(k) for k in ("pass@1", "reflection_rate", "rl_flops")},
            "curves": {arm: [{k: p.get(k) for k in ("name", "flops", "pass@1")} for p in result[arm]["points"]]
                       for arm in ("rl", "distill")},
            "wall_seconds": result["wall_seconds"], **_cost(Path(out_dir), result)}


def _cost(seed_dir: Path, result: dict) -> dict:
    """The seed's ledgers: the RL arm's run, every distillation (teacher sampling + SFT) and every
    evaluation; the student base's pretraining apart, counted once like every embedded base."""
    rl_summary = json.loads((seed_dir / "rl" / "summary.json").read_text())
    rl_cost, bases = runner.split_cost(rl_summary.get("cost"), Path(result["student"]["model_dir"]).name)
    ledgers = [rl_cost]
    for point in result["distill"]["points"][1:]:
        ledgers.append(json.loads((seed_dir / point["name"] / "summary.json").read_text())["cost"])
    student_n, teacher_n = rl_cost.get("params", 0), result["teacher"].get("parameters") or 0
    for eval_json in sorted((seed_dir / "evals").glob("*/eval.json")):
        report = json.loads(eval_json.read_text())
        ledgers.append(runner.eval_cost(report, teacher_n if eval_json.parent.name == "teacher" else student_n))
    return {"cost": runner.merge_costs(ledgers), "bases": bases}


def summarize(per_seed: list[dict]) -> dict:
    ran = [r for r in per_seed if "skipped" not in r]
    if not ran:
        return {"F5": {"id": "F5", "title": "Distillation beats RL on a small student", "paper": PAPER[0],
                       "paper_detail": PAPER[1], "effects": [], "verdict": "not run", "shows": per_seed[0]["skipped"],
                       "mean": None, "low": None, "high": None, "excludes_zero": None,
                       "direction_matches_paper": None}}
    theirs = distill_vs_rl.summarize(ran)
    differences = [r["comparison"]["difference"] for r in ran]
    main = effect("held-out pass@1 at equal training FLOPs: distilled − RL student", differences, +1,
                  unit=" points", scale=100, within_seed=tuple(theirs["difference_ci95"]) if len(ran) == 1 else None,
                  within_seed_kind="bootstrap over held-out problems, one seed")
    uncharged = effect("the same with the teacher's sampling not charged (the paper's accounting)",
                       [r["comparison"]["teacher_sampling_not_charged"]["difference"] for r in ran], +1,
                       unit=" points", scale=100, required=False)
    m = theirs["mean"]
    shows = (f"at equal training FLOPs: RL student {m['rl']:.1%}, distilled student {m['distill']:.1%} "
             f"(teacher {m['teacher']:.1%}); {theirs['verdict']} (bootstrap over seeds and problems)")
    return {"F5": finding("F5", "Distillation beats RL on a small student", PAPER[0], [main, uncharged], shows,
                          paper_detail=PAPER[1])}
