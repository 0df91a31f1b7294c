"""What limits the miniature's reward model: more preference pairs, more epochs, or neither?

    PYTHONPATH=src .venv/bin/python bench/rm_study.py --seeds 0 1 2 --jobs 2 \\
        --grid 2000x2 8000x2 2000x8 --out /tmp/rm-study

For each PAIRSxEPOCHS of `--grid` and each seed, `aha rm` (defaults otherwise: synthetic
general_bilingual pairs on the shipped bilingual base, one thread) as its own process, `--jobs` at
a time; a finished run is read, not rerun. Then, per run:
- held-out pairwise accuracy (the 200 test-split pairs `aha rm` reports) and the Spearman
  agreement of its ranking of held-out candidate summaries with the hidden rubric;
- pairwise accuracy by the pair's qualities (perfect > wrong, perfect > other_language, …) on
  `--breakdown` fresh pairs of the test split, and on as many pairs of the train split (the first
  ones `aha rm` trained on, same seed): a quality pair right on train and at chance on test is
  memorised, not learned.
Means over seeds with 95 % Student-t intervals.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aha.observe.stats import mean_ci95
from aha.models.reward import load_reward_model, score_texts
from aha.tasks.general import preference_pairs
from aha.template import summary_text

ROOT = Path(__file__).resolve().parent.parent


def train(out: Path, pairs: int, epochs: int, seed: int) -> Path:
    run_dir = out / f"p{pairs}-e{epochs}-s{seed}"
    if (run_dir / "summary.json").exists():
        return run_dir
    cmd = [sys.executable, "-m", "aha", "rm", f"run.out_dir={out}", f"run.name={run_dir.name}", f"run.seed={seed}",
           f"rm.pairs={pairs}", f"rm.epochs={epochs}", "run.threads=1", "run.progress=false"]
    if run_dir.exists():
        cmd = [sys.executable, "-m", "aha", "rm", "--resume", str(run_dir), "run.progress=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    with open(out / f"{run_dir.name}.log", "w") as log:
        subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return run_dir


def by_quality(model_dir: Path, seed: int, split: str, n: int) -> dict[str, list[float]]:
    """{"chosen > rejected": [1.0 where the model ranks the pair right, …]} over n pairs of `split`."""
    model, tokenizer = load_reward_model(model_dir)
    rows = preference_pairs(n, seed, split=split)
    prompts = [r["prompt"] for r in rows]
    chosen = score_texts(model, tokenizer, prompts, [summary_text(r["chosen"]) for r in rows], 256)
    rejected = score_texts(model, tokenizer, prompts, [summary_text(r["rejected"]) for r in rows], 256)
    out = collections.defaultdict(list)
    for row, a, b in zip(rows, chosen, rejected):
        out[" > ".join(row["qualities"])].append(float(a > b))
        out["all"].append(float(a > b))
    return out


def figures(run_dir: Path, seed: int, breakdown: int) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    row = {"held_out": summary["held_out_accuracy_end"], "spearman": summary["rubric_agreement_end"]["spearman"]}
    for split in ("train", "test"):
        for pair, hits in by_quality(run_dir / "model", seed, split, breakdown).items():
            row[f"{split}: {pair}"] = (sum(hits) / len(hits), len(hits))
    return row


def show(config: str, rows: list[dict]) -> None:
    print(f"\n== {config}  (seeds {len(rows)})")
    for key in ("held_out", "spearman"):
        mean, low, high = mean_ci95([r[key] for r in rows])
        print(f"  {key:<40} {' / '.join(f'{r[key]:.3f}' for r in rows)}   mean {mean:.3f} [{low:.3f}, {high:.3f}]")
    pairs = [k for k in rows[0] if ":" in k and all(k in r for r in rows)]
    for key in sorted(pairs, key=lambda k: (k.split(":")[1], k)):
        accs = [r[key][0] for r in rows]
        print(f"  {key:<40} {' / '.join(f'{a:.2f}' for a in accs)}   (n≈{rows[0][key][1]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--grid", nargs="+", default=["2000x2", "8000x2", "2000x8"], help="PAIRSxEPOCHS")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--breakdown", type=int, default=1000, help="pairs per split for the quality breakdown")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rm-study"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid = [tuple(int(x) for x in g.split("x")) for g in args.grid]
    runs = [(pairs, epochs, seed) for pairs, epochs in grid for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:  # each job is its own `aha rm` process
        dirs = list(pool.map(lambda r: train(args.out, *r), runs))
    results = collections.defaultdict(list)
    for (pairs, epochs, seed), run_dir in zip(runs, dirs):
        results[f"{pairs} pairs x {epochs} epochs"].append(figures(run_dir, seed, args.breakdown))
    for config, rows in results.items():
        show(config, rows)


if __name__ == "__main__":
    main()
