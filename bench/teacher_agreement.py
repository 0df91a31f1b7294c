"""A teacher behind an endpoint and the same teacher as a run directory give the same traces, in rate.

    PYTHONPATH=src .venv/bin/python bench/teacher_agreement.py --run runs/zero-tiny [--problems 1000 --k 4]

`aha distill`'s teacher step is `aha sample` (verify, filter correct + readable + dedupe). This runs
it twice on the same train prompts: once with `--teacher RUN` (aha's torch engine in process), once
against `aha serve RUN` on a loopback port through the OpenAI-compatible engine (`--teacher URL`),
same sampling settings (T 0.6, top-p 0.95, max 64 tokens). The two draw different random noise, so
individual traces differ; the issue's target is on rates: kept-trace rates within 2 points on
≥ 1,000 prompts. Printed: per teacher the records, kept share, correct share, and the difference
with a 95 % normal interval for two independent proportions (over records).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from serve_load import free_port, start  # noqa: E402  (bench helpers: a server subprocess on loopback)

from aha import runs  # noqa: E402


def sample(target: str, out: Path, name: str, args: argparse.Namespace, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "aha", "sample", target, f"run.out_dir={out}", f"run.name={name}",
           f"sample.problems={args.problems}", f"sample.k={args.k}", f"task.name={args.task}", "run.progress=false",
           f"run.threads={args.threads}", "--force", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"aha sample {target} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((out / name / "summary.json").read_text())


def rate_difference(a: dict, b: dict, key: str) -> dict:
    pa, pb = a[key] / a["records"], b[key] / b["records"]
    se = math.sqrt(pa * (1 - pa) / a["records"] + pb * (1 - pb) / b["records"])
    return {"run": pa, "url": pb, "difference": pb - pa, "ci95": [pb - pa - 1.96 * se, pb - pa + 1.96 * se]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a trained run directory (e.g. the demo's)")
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--task", default="division", help="the task the teacher was trained on")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/teacher-agreement"))
    args = ap.parse_args()
    model_dir = runs.model_dir_of(args.run)
    local = sample(str(args.run), args.out, "run-teacher", args, [])
    port = free_port()
    server, name = start("aha", str(model_dir), port, cb=False, aha_args=["--threads", str(args.threads)])
    try:
        remote = sample(f"http://127.0.0.1:{port}/v1", args.out, "url-teacher", args,
                        [f"model.path={model_dir}", f"rollout.options.model_name={name}"])
    finally:
        server.terminate()
        server.wait()
    for summary in (local, remote):
        summary["correct"] = round(summary["correct_rate"] * summary["records"])
    print(json.dumps({
        "prompts": args.problems, "k": args.k, "records": [local["records"], remote["records"]],
        "kept": rate_difference(local, remote, "kept"), "correct": rate_difference(local, remote, "correct"),
        "filters": {"run": local["filters"], "url": remote["filters"]},
    }, indent=2))


if __name__ == "__main__":
    main()
