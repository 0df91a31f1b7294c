"""Soak: a long run of the demo config, watching for leaks.

    PYTHONPATH=src .venv/bin/python bench/soak.py --steps 1000 --every 50

Runs the GRPO stage in-process (the demo's defaults, `grpo.steps=N`) with a listener that, every
`--every` steps, samples this process's resident memory (VmRSS), its open file descriptors and the
processes it has left (children, grandchildren: verifier workers, sandboxes). Prints one JSON line
per sample and a verdict: RSS after warm-up (the first 20 % of steps) must stay within 5 % of its
post-warm-up value; fds and children must not grow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descendants() -> int:
    """Processes whose ancestry leads to this one."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    me, count = os.getpid(), 0
    for pid in parents:
        p = pid
        while p in parents and p > 1:
            p = parents[p]
            if p == me:
                count += 1
                break
    return count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--extra", nargs="*", default=[], help="more key=value overrides")
    args = ap.parse_args()
    from aha import config, stages
    from aha.events import Events

    samples: list[dict] = []
    start = time.time()

    def watch(event) -> None:
        if event.kind == "metrics" and event.data["step"] % args.every == 0:
            row = {"step": event.data["step"], "rss_mb": round(rss_mb(), 1), "fds": len(os.listdir("/proc/self/fd")),
                   "children": descendants(), "seconds": round(time.time() - start, 1)}
            samples.append(row)
            print(json.dumps(row), flush=True)

    out = Path(tempfile.mkdtemp(prefix="aha-soak-"))
    cfg = config.load_config(config.ZeroConfig, overrides=[f"grpo.steps={args.steps}", f"run.out_dir={out}",
                                                            "run.progress=false", "eval.every=0", *args.extra])
    stages.grpo.run(cfg, out / "soak", Events([watch]))
    warm = [s for s in samples if s["step"] > 0.2 * args.steps]
    base = warm[0]["rss_mb"]
    drift = max(abs(s["rss_mb"] - base) / base for s in warm)
    verdict = {"rss_after_warmup_mb": base, "max_drift": round(drift, 4), "rss_within_5pct": drift <= 0.05,
               "fds": [warm[0]["fds"], warm[-1]["fds"]], "fds_stable": warm[-1]["fds"] <= warm[0]["fds"],
               "children": [warm[0]["children"], warm[-1]["children"]],
               "children_stable": warm[-1]["children"] <= warm[0]["children"],
               "children_after_run": descendants(), "wall_seconds": round(time.time() - start, 1)}
    print(json.dumps({"verdict": verdict}))
    sys.exit(0 if verdict["rss_within_5pct"] and verdict["fds_stable"] and verdict["children_stable"] else 1)


if __name__ == "__main__":
    main()
