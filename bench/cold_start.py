"""Cold start in miniature (R1 §2.3.1): readable traces → SFT → RL, against R1-Zero from the base.

    # the traces (prompt/completion JSONL, what `aha sft` reads)
    PYTHONPATH=src .venv/bin/python bench/cold_start.py write traces.jsonl --n 400
    # the measurement: zero run, SFT on the traces, RL from the SFT model; steps to the zero's accuracy
    PYTHONPATH=src .venv/bin/python bench/cold_start.py measure --out runs/cold-start --seed 0

A thin driver over `aha.experiments.cold_start` (what `aha paper` runs for F4). The traces are R1's
cold-start output format on the embedded division task (`aha.tasks.cold_start`): readable reasoning
— one language, no code, a check of the first guess that steps down until the product fits — then
the answer block: `<think>8*86=688>645 too high, wait, 7*86=602<=645 ok</think> <answer>7</answer>`.

`measure` runs (1) `aha zero` with the given steps (zero-tiny otherwise), (2) `aha sft` of the base
on the traces, (3) GRPO from the SFT model with the zero run's config, in segments of `--every`
steps (each resumed exactly), each ending with the stage's final evaluation (200 held-out problems
× 4 samples, T 0.6, top-p 0.95, same seed), until one reaches the zero run's final pass@1. Every run
is resumable: run the command again after a stop.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aha.experiments import cold_start, runner
from aha.tasks import get_task
from aha.tasks.cold_start import cold_start_rows as task_cold_start_rows


def cold_start_rows(n: int, seed: int = 7) -> list[dict]:
    """`n` prompt/completion rows: the R1-Zero prompt and a readable check trace + summary."""
    return [{"prompt": r["prompt"], "completion": r["completion"]}
            for r in task_cold_start_rows(get_task("division"), n, seed)]


def measure(out: Path, seed: int, steps: int, every: int, n_traces: int, sft_args: list[str]) -> dict:
    zero_dir = out / "zero"
    cfg = runner.zero_config("zero-tiny", zero_dir, [f"run.seed={seed}", f"grpo.steps={steps}", "eval.every=0",
                                                     "run.threads=1"])
    runner.run_grpo(cfg, zero_dir)
    result = cold_start.measure(zero_dir, out, seed, every=every, window=every, traces=n_traces,
                                sft_overrides=["run.threads=1", *sft_args])
    return {"zero_final_accuracy": result["target"], "zero_steps": result["zero_steps"],
            "cold_rl_curve": [(p["step"], p["accuracy"]) for p in result["cold_curve"]],
            "cold_rl_steps_to_target": result["cold_steps_to_target"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write the cold-start traces")
    w.add_argument("path", type=Path)
    w.add_argument("--n", type=int, default=400)
    w.add_argument("--seed", type=int, default=7)
    m = sub.add_parser("measure", help="zero vs cold start → RL, steps to the zero run's final accuracy")
    m.add_argument("--out", type=Path, default=Path("runs/cold-start"))
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--steps", type=int, default=200)
    m.add_argument("--every", type=int, default=20)
    m.add_argument("--n", type=int, default=400)
    m.add_argument("--sft", nargs="*", default=["sft.lr=5e-4"], help="key=value overrides for aha sft")
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # aha's own notes only, as the CLI does
    if args.cmd == "write":
        rows = cold_start_rows(args.n, args.seed)
        args.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{len(rows)} traces → {args.path}")
    else:
        print(json.dumps(measure(args.out, args.seed, args.steps, args.every, args.n, args.sft), indent=2))


if __name__ == "__main__":
    main()
