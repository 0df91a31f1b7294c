"""Language mixing in miniature (R1 §2.3.2): accuracy-only GRPO vs GRPO with the consistency reward.

    PYTHONPATH=src .venv/bin/python bench/r1_mixing.py --seeds 0 1 2 --jobs 2 [--extra grpo.steps=100]

Runs `aha zero zero-bilingual` (the bilingual division task, its shipped base) for each seed in two
arms — rewards {accuracy 1, format 0.2} and the same plus {language_consistency W} — as separate
processes, `--jobs` at a time, then reads each run's summary.json (held-out evaluation of the base
and the final policy: 200 problems × 4 samples, T 0.6, top-p 0.95) and prints per-seed figures and
the means with 95 % Student-t intervals over seeds. The issue's targets:
  accuracy arm: held-out mixing ≥ 2× the base's;  consistency arm: mixing ≤ 5 %;
  held-out accuracy cost of the consistency arm (paired by seed) ≤ 2 points.
A finished run is read, not rerun (delete its directory to redo it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aha.observe.stats import mean_ci95

ARMS = {"accuracy": "{{accuracy: 1.0, format: 0.2}}",  # str.format templates: braces doubled
        "consistency": "{{accuracy: 1.0, format: 0.2, language_consistency: {w}}}"}


def run_one(out: Path, arm: str, seed: int, weight: float, extra: list[str], log_dir: Path) -> Path:
    name = f"{arm}-s{seed}"
    run_dir = out / name
    if (run_dir / "summary.json").exists():
        return run_dir
    rewards = ARMS[arm].format(w=weight)
    cmd = [sys.executable, "-m", "aha", "zero", "zero-bilingual", f"run.seed={seed}", f"run.name={name}",
           f"run.out_dir={out}", f"rewards={rewards}", "run.progress=false", "run.threads=1", "--force", *extra]
    with open(log_dir / f"{name}.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {done.returncode}); see {log_dir / f'{name}.log'}")
    return run_dir


def figures(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    base, final = s["base_eval"]["language_mixing"], s["final_eval"]["language_mixing"]
    return {"base_acc": s["base_accuracy"], "final_acc": s["final_accuracy"], "base_mix": base["all"],
            "final_mix": final["all"], "final_mix_en": final.get("en"), "final_mix_zh": final.get("zh"),
            "base_mix_en": base.get("en"), "base_mix_zh": base.get("zh"), "steps": s["steps"],
            "seconds": s["wall_seconds"]}


def fmt_ci(values: list[float], scale: float = 100.0, unit: str = " %") -> str:
    mean, low, high = mean_ci95(values)
    if len(values) == 1:
        return f"{mean * scale:.1f}{unit}"
    return f"{mean * scale:.1f}{unit} [{low * scale:.1f}, {high * scale:.1f}]"


def report(rows: dict, seeds: list[int]) -> str:
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
        f"- base mixing: {fmt_ci([f['base_mix'] for f in acc])}",
        f"- accuracy-only final mixing: {fmt_ci([f['final_mix'] for f in acc])}; ratio to base "
        f"{fmt_ci(ratio, 1.0, '×')} (target ≥ 2×)",
        f"- consistency final mixing: {fmt_ci([f['final_mix'] for f in con])} (target ≤ 5 %)",
        f"- held-out pass@1: accuracy-only {fmt_ci([f['final_acc'] for f in acc])}, consistency "
        f"{fmt_ci([f['final_acc'] for f in con])}; cost (paired) {fmt_ci(cost, 100.0, ' points')} (target ≤ 2)",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--weight", type=float, default=1.0, help="language_consistency weight")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (each on one thread)")
    ap.add_argument("--out", type=Path, default=Path("runs/r1-mixing"))
    ap.add_argument("--extra", nargs="*", default=[], help="more key=value overrides for every run")
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                    help="arms to run now (the table needs both, finished)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    jobs = [(arm, seed) for seed in args.seeds for arm in args.arms]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: run_one(args.out, j[0], j[1], args.weight, args.extra, logs), jobs))
    if set(args.arms) != set(ARMS):
        return
    rows = {(arm, seed): figures(args.out / f"{arm}-s{seed}") for seed in args.seeds for arm in ARMS}
    text = report(rows, args.seeds)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
