"""Language mixing in miniature (R1 §2.3.2): accuracy-only GRPO vs GRPO with the consistency reward.

    PYTHONPATH=src .venv/bin/python bench/r1_mixing.py --seeds 0 1 2 --jobs 2 [--extra grpo.steps=100]

A thin driver over `aha.experiments.mixing` (what `aha paper` runs for F3): for each seed, both
arms of `aha zero zero-bilingual` — rewards {accuracy 1, format 0.2} and the same plus
{language_consistency W} — `--jobs` at a time as separate processes (one thread each), then the
per-seed figures and the means with 95 % Student-t intervals over seeds. The issue's targets:
  accuracy arm: held-out mixing ≥ 2× the base's;  consistency arm: mixing ≤ 5 %;
  held-out accuracy cost of the consistency arm (paired by seed) ≤ 2 points.
A finished run is read, not rerun; a stopped one continues from its checkpoint.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from aha.events import Events
from aha.experiments.mixing import ARMS, figures, report, run_arm

__all__ = ["figures", "report", "run_one"]


def run_one(out: Path, arm: str, seed: int, weight: float, extra: list[str]) -> Path:
    """One arm in this (worker) process; its notes and warnings go to out/logs/<arm>-s<seed>.log."""
    log = out / "logs" / f"{arm}-s{seed}.log"

    def to_log(event) -> None:
        if event.kind in ("info", "warning"):
            with open(log, "a") as fh:
                fh.write(f"{event.kind}: {event.data['message']}\n")

    return run_arm(out, arm, seed, weight, ["run.threads=1", *extra], Events([to_log]))


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
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # aha's own notes only, as the CLI does
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    jobs = [(arm, seed) for seed in args.seeds for arm in args.arms]
    with ProcessPoolExecutor(args.jobs) as pool:
        list(pool.map(run_one, *zip(*[(args.out, arm, seed, args.weight, args.extra) for arm, seed in jobs])))
    if set(args.arms) != set(ARMS):
        return
    rows = {(arm, seed): figures(args.out / f"{arm}-s{seed}") for seed in args.seeds for arm in ARMS}
    text = report(rows, args.seeds)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
