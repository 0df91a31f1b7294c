"""How often a 2-process run dies on its way out: the FSDP test's GRPO run, launched N times.

    PYTHONPATH=src .venv/bin/python bench/multiproc_exit.py --runs 40 [--sharding fsdp|none]

Two arms, alternating run by run: "drain" (aha as shipped) and "no-drain" (the same worker with
aha.train.dist's exit hook as it was before the pause: destroy the group and return). Each run is `tests/_grpo_worker.py` under `torchrun --nproc_per_node=2` (gloo, CPU, one thread per
rank) with tests/test_fsdp.py's settings, on the tests' tiny base (built once into --out). A run
whose ranks all wrote their results but which still exits non-zero died in teardown; the script
prints each such run's first native error line and the count. Before aha.train.dist's exit hook
left the GIL free for gloo's worker threads, about one run in eight aborted here with
"terminate called without an active exception".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import TINY  # noqa: E402  (the tests' tiny base: seconds to build)
from test_fsdp import SETTINGS  # noqa: E402
from test_multiproc import LENGTH_REWARD, _free_port  # noqa: E402

from aha.stages.pretrain import pretrain  # noqa: E402
from aha.tasks import get_task  # noqa: E402

# The exit hook as it was before the pause: destroy the group, nothing else (even `sleep(0)` would
# release the GIL). `init` registers the module's `_destroy` when it runs, so replacing it first is enough.
NO_DRAIN = """import runpy, sys
import torch.distributed as torch_dist
import aha.train.dist


def destroy_only():
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


aha.train.dist._destroy = destroy_only
sys.argv = [{worker!r}, *sys.argv[1:]]
runpy.run_path({worker!r}, run_name="__main__")
"""


def launch(out: Path, script: Path, model: Path, reward: Path, sharding: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if sharding != "none":
        env["AHA_SHARDING"] = sharding
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "--master_addr=127.0.0.1", str(script), str(out), str(model), *SETTINGS,
           f"rewards={{accuracy: 1.0, format: 0.2, '{reward}:length_reward': 0.5}}"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--sharding", choices=("fsdp", "none"), default="fsdp")
    parser.add_argument("--out", type=Path, default=Path("/tmp/aha-multiproc-exit"))
    args = parser.parse_args()
    model, reward = args.out / "tiny-base", args.out / "length_reward.py"
    if not (model / "config.json").exists():
        torch.set_num_threads(1)
        pretrain(TINY, get_task("division"), model)
    reward.write_text(LENGTH_REWARD)
    worker = ROOT / "tests" / "_grpo_worker.py"
    (args.out / "no_drain.py").write_text(NO_DRAIN.format(worker=str(worker)))
    scripts = {"drain": worker, "no-drain": args.out / "no_drain.py"}
    counts = {arm: {"runs": 0, "teardown": 0, "before": 0} for arm in scripts}
    for i in range(1, args.runs + 1):
        for arm, script in scripts.items():
            out = args.out / f"{arm}-{i}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            done = launch(out, script, model, reward, args.sharding)
            counts[arm]["runs"] += 1
            if done.returncode == 0:
                continue
            finished = all((out / f"rank{r}.json").exists() for r in (0, 1))
            counts[arm]["teardown" if finished else "before"] += 1
            first = next((ln for ln in done.stderr.splitlines() if "terminate" in ln or "Error" in ln), "?")
            print(f"{arm} run {i}: exit {done.returncode}, {'after' if finished else 'before'} the results: {first}",
                  flush=True)
    for arm, c in counts.items():
        print(f"{arm:>8}: {c['runs']} runs ({args.sharding}), {c['teardown']} died in teardown, "
              f"{c['before']} failed before the end")


if __name__ == "__main__":
    main()
