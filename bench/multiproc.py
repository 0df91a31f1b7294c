"""Data-parallel GRPO step time: N processes × 1 thread against 1 process × 1 thread, on the
step-time benchmark's model and setting (`vs_trl.py`: the ~3 M Qwen2, 8 prompts × 8 samples,
128 forced new tokens, β 0.04, bf16-mixed).

    PYTHONPATH=src .venv/bin/python bench/multiproc.py                 # 2 processes vs 1
    PYTHONPATH=src .venv/bin/python bench/multiproc.py --procs 2 --rounds 3 --steps 4

Both sides run the same step through aha's multi-process path (`aha.train.dist`,
`aha.stages.grpo_shard`): the global prompts of the step, each rank's share sampled with the
row-keyed noise, the shares gathered, group advantages, each rank's share of the groups trained
with global normalisation and summed gradients. With 1 process every collective is a no-op. The
samples, and so the work, are identical on both sides. Rounds alternate the two so a busy machine
hurts both alike; `speedup` is the median over rounds of (1-process s/step) / (N-process s/step).
On a machine whose cores other jobs share, wall time measures what the scheduler granted;
`cpu_time_speedups` (1-process CPU seconds per step / the slowest rank's) is the speedup the split
of work allows when every process has a core of its own (communication waits are not CPU time).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _common as C  # noqa: E402


def worker(model_dir: str, s: C.Settings, steps: int, warmup: int) -> None:
    import torch

    from aha.algo.advantages import compute_advantages
    from aha.rollout import SamplingParams
    from aha.stages import grpo_shard
    from aha.stages.grpo_step import Rollout
    from aha.train import dist
    from aha.train.update import RolloutBatch, policy_update

    d = dist.init()
    model, tok, engine, ref, opt, problems = C.aha_trainer(s, model_dir, steps, warmup)
    records = []
    for step in range(steps + warmup):
        d.barrier()  # every rank starts the step together: the time is the slowest rank's
        t0, cpu0 = time.perf_counter(), time.process_time()
        chunk = problems[step * s.prompts : (step + 1) * s.prompts]
        lo, hi = d.share(len(chunk))
        mine = chunk[lo:hi]
        prompt_ids = [tok(C.prompt_text(p))["input_ids"] for p in mine]
        params = SamplingParams(max_new_tokens=s.new_tokens, temperature=s.temperature, seed=step,
                                ignore_eos=s.force_length, row_offset=lo * s.group)
        completions = engine.generate(prompt_ids, params, n=s.group)
        t1 = time.perf_counter()
        texts = [c.text for c in completions]
        scored = C.combine(C.REWARD_WEIGHTS, texts, problems=[mine[c.prompt_index] for c in completions],
                           task=C.get_task(C.TASK), truncated=[False] * len(texts),
                           lengths=[s.new_tokens] * len(texts), max_new_tokens=s.new_tokens)
        rollout = grpo_shard.gather_rollout(Rollout(mine, prompt_ids, completions, scored), d, lo)
        advantages = compute_advantages("grpo", torch.tensor(rollout.scored.total), s.group)
        batch = RolloutBatch.from_completions(rollout.prompt_ids, rollout.completions, advantages)
        t2 = time.perf_counter()
        stats = policy_update(model, opt, grpo_shard.rank_share(batch, d, s.group),
                              **C.update_kwargs(s, tok.pad_token_id, ref_model=ref), dist=d)
        t3 = time.perf_counter()
        # CPU seconds each rank spent on the step: on a machine whose cores other jobs also use, wall
        # time measures the share the scheduler gave, CPU time the work each rank had to do.
        cpu = d.gather(time.process_time() - cpu0)
        records.append({"step_s": t3 - t0, "generation_s": t1 - t0, "gather_s": t2 - t1, "update_s": t3 - t2,
                        "cpu_s_per_rank": cpu,
                        "loss": stats["loss"], "reward": sum(rollout.scored.total) / len(rollout.scored.total)})
    if d.is_main:
        C.emit({"procs": d.world, "steps": records[warmup:], "peak_rss_mb": C.peak_rss_mb()})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(procs: int, model_dir: Path, s: C.Settings, steps: int, warmup: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "TOKENIZERS_PARALLELISM": "false"}
    launcher = [] if procs == 1 else ["-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                                      "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    cmd = [sys.executable, *launcher, __file__, "--worker", str(model_dir), s.to_json(), str(steps), str(warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{procs}-process run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="measured steps per run")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured first steps per run")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "aha-bench-qwen2-3m-words")
    args, rest = p.parse_known_args()
    if args.worker:
        return worker(rest[0], C.Settings(**json.loads(rest[1])), int(rest[2]), int(rest[3]))
    s = C.Settings(new_tokens=args.new_tokens)
    model_dir = C.build_model(s, args.model_dir)
    print(f"settings: {s.to_json()}; cores usable: {len(os.sched_getaffinity(0))}", flush=True)
    single, multi, speedups, cpu_speedups = [], [], [], []
    for r in range(args.rounds):
        one = run(1, model_dir, s, args.steps, args.warmup)
        many = run(args.procs, model_dir, s, args.steps, args.warmup)
        single.append(one)
        multi.append(many)
        a, b = (C.median([x["step_s"] for x in res["steps"]]) for res in (one, many))
        speedups.append(a / b)
        cpu_one = C.median([sum(x["cpu_s_per_rank"]) for x in one["steps"]])
        cpu_slowest = C.median([max(x["cpu_s_per_rank"]) for x in many["steps"]])
        cpu_speedups.append(cpu_one / cpu_slowest)
        same = [x["loss"] for x in one["steps"]], [x["loss"] for x in many["steps"]]
        print(f"round {r + 1}/{args.rounds}: 1 process {a:.2f} s/step, {args.procs} processes {b:.2f} s/step "
              f"→ {a / b:.2f}x (CPU-time bound {cpu_speedups[-1]:.2f}x); losses 1p {same[0]} vs {args.procs}p {same[1]}", flush=True)
    phases = {name: {k: C.median([x[k] for res in runs for x in res["steps"]])
                     for k in ("step_s", "generation_s", "gather_s", "update_s")}
              for name, runs in (("1", single), (str(args.procs), multi))}
    result = {"settings": json.loads(s.to_json()), "procs": args.procs, "speedup": C.median(speedups),
              "speedups": speedups, "cpu_time_speedups": cpu_speedups, "phases_s": phases,
              "load_average": os.getloadavg()}
    print(f"speedup (median of rounds): {result['speedup']:.2f}x; 1-process CPU s / slowest rank's CPU s: "
          f"{C.median(cpu_speedups):.2f}x; load average {os.getloadavg()[0]:.1f}; phases: {json.dumps(phases)}", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
