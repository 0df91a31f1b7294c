"""Cold start in miniature (R1 §2.3.1): readable traces → SFT → RL, against R1-Zero from the base.

    # the traces (prompt/completion JSONL, what `aha sft` reads)
    PYTHONPATH=src .venv/bin/python bench/cold_start.py write traces.jsonl --n 400
    # the measurement: zero run, SFT on the traces, RL from the SFT model; steps to the zero's accuracy
    PYTHONPATH=src .venv/bin/python bench/cold_start.py measure --out runs/cold-start --seed 0

The traces are R1's cold-start output format on the embedded division task: readable reasoning —
one language, no code, a check of the first guess that steps down until the product fits — then the
summary, which in the R1-Zero template is the answer block: `<think>8*86=688>645 too high, wait,
7*86=602<=645 ok</think> <answer>7</answer>`. They use the corpus's own words, so the embedded
tokenizer covers them. Problems come from the train split with a seed of their own (disjoint from
the held-out set by construction of the split).

`measure` runs (1) `aha zero` with the given settings, (2) `aha sft` of the base on the traces,
(3) `aha zero model=<sft model>` with the same RL settings, in segments of `--every` steps (each
resumed exactly), each ending with the stage's final evaluation (200 held-out problems × 4
samples, T 0.6, top-p 0.95, same seed), until one reaches the zero run's final pass@1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from aha.tasks import get_task
from aha.tasks.cold_start import cold_start_rows as task_cold_start_rows


def cold_start_rows(n: int, seed: int = 7) -> list[dict]:
    """`n` prompt/completion rows: the R1-Zero prompt and a readable check trace + summary."""
    return [{"prompt": r["prompt"], "completion": r["completion"]}
            for r in task_cold_start_rows(get_task("division"), n, seed)]


def aha(*args: str, log: Path) -> None:
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "aha", *args], stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"aha {args[0]} failed (exit {done.returncode}); see {log}")


def measure(out: Path, seed: int, steps: int, every: int, n_traces: int, sft_args: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    common = [f"run.seed={seed}", f"grpo.steps={steps}", f"run.out_dir={out}", "run.progress=false",
              "eval.every=0", "run.threads=1", "--force"]
    zero_dir = out / "zero"
    if not (zero_dir / "summary.json").exists():
        aha("zero", "run.name=zero", *common, log=out / "zero.log")
    target = json.loads((zero_dir / "summary.json").read_text())["final_accuracy"]
    traces = out / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in cold_start_rows(n_traces)))
    sft_dir = out / "sft"
    if not (sft_dir / "summary.json").exists():
        aha("sft", str(traces), "run.name=sft", f"run.out_dir={out}", "run.progress=false", "run.threads=1", "--force", *sft_args,
            log=out / "sft.log")
    rl_dir = out / "cold-rl"
    # RL in segments of `every` steps: each segment resumes the last one exactly and ends with the
    # stage's own final evaluation (the zero run's protocol), so each point costs no extra code path.
    curve, reached = [], None
    for step in range(every, steps + 1, every):
        if step == every:
            aha("zero", "run.name=cold-rl", f"model.path={sft_dir / 'model'}", *common,
                f"grpo.steps={step}", log=out / f"cold-rl-{step}.log")
        else:
            aha("zero", "--resume", str(rl_dir), f"grpo.steps={step}", log=out / f"cold-rl-{step}.log")
        summary = json.loads((rl_dir / "summary.json").read_text())
        if not curve:
            curve.append((0, summary["base_accuracy"]))
        curve.append((step, summary["final_accuracy"]))
        if summary["final_accuracy"] >= target:
            reached = step
            break
    return {"zero_final_accuracy": target, "zero_steps": steps, "cold_rl_curve": curve,
            "cold_rl_steps_to_target": reached}


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
    if args.cmd == "write":
        rows = cold_start_rows(args.n, args.seed)
        args.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{len(rows)} traces → {args.path}")
    else:
        print(json.dumps(measure(args.out, args.seed, args.steps, args.every, args.n, args.sft), indent=2))


if __name__ == "__main__":
    main()
