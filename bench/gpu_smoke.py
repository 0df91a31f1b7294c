"""GPU smoke test of the vLLM rollout engines: a few GRPO steps with `rollout.engine=vllm` (colocated)
and `rollout.engine=vllm_server` (aha's server in a subprocess), checked by
the sampler/trainer log-prob gap (`rollout_logprob_gap`, logged by every update) — the number that
shows rollouts sampled from stale weights (TRL #5312: 0.015 → 0.2 with sleep mode on).

    PYTHONPATH=src python bench/gpu_smoke.py                      # the shipped tiny Qwen2 base
    PYTHONPATH=src python bench/gpu_smoke.py --model /models/Qwen2.5-0.5B --max-new-tokens 128

Installs nothing: needs torch with CUDA and vllm (`pip install 'aha-rl[vllm]'`); without them it
prints why and exits 2. Each variant runs in its own process (one vLLM engine per process), the
same seeded steps with model.precision=bf16-mixed (the trainer stays where aha puts it: the CPU
today; only the rollout is on the GPU):

- `torch`: aha's torch engine (bf16), the reference gap;
- `vllm`, `vllm-sleep1`, `vllm-sleep2`: the vLLM engine without sleep, and sleeping at level 1
  (weights to CPU) and level 2 (weights dropped) between rollouts;
- `vllm-stale`: a negative control whose weight sync is switched off, so its rollouts come from the
  starting weights. The learning rate is high enough for the policy to move every step; the check
  is only meaningful if this variant's gap does exceed the threshold;
- `server`, `server-stale`: the same through `python -m aha.rollout.vllm_server` started by the
  variant on `--server-gpu` (default: GPU 1 when there are two, else GPU 0), weights pushed over
  NCCL with two GPUs, over HTTP with one (`--server-transport`; NCCL refuses two ranks on one GPU);
  `server-stale` never pushes, so the server samples the weights it loaded from disk.

Passes when every vllm/server variant's gap stays below `--max-gap` at every step and each `-stale`
control's does not (from step 2 on). Prints one JSON line (per-variant gaps, rewards, rollout seconds, the
verdict); exits 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = ("torch", "vllm", "vllm-sleep1", "vllm-sleep2", "vllm-stale", "server", "server-stale")
ENGINE_OPTIONS = {
    "vllm": [],
    "vllm-sleep1": ["rollout.options.sleep=true", "rollout.options.sleep_level=1"],
    "vllm-sleep2": ["rollout.options.sleep=true", "rollout.options.sleep_level=2"],
    "vllm-stale": [],
}


def overrides(args, variant: str, run_dir: Path, server_url: str | None = None) -> list[str]:
    engine = "torch" if variant == "torch" else "vllm_server" if variant.startswith("server") else "vllm"
    extra = ENGINE_OPTIONS.get(variant, [])
    if engine == "vllm_server":
        extra = [f"rollout.options.base_url={server_url}", f"rollout.options.weight_transport={args.server_transport}",
                 f"rollout.options.group_port={free_port()}", "rollout.options.startup_timeout=600"]
    if engine == "vllm":
        extra = [*extra, f"rollout.options.gpu_memory_utilization={args.gpu_memory_utilization}"]
        if args.enforce_eager:
            extra.append("rollout.options.enforce_eager=true")
    return [f"model.path={args.model}", "model.precision=bf16-mixed", f"run.out_dir={run_dir.parent}",
            f"run.name={run_dir.name}", "run.progress=false", f"run.save_every={10**6}", "run.seed=0",
            f"grpo.steps={args.steps}", f"grpo.prompts_per_step={args.prompts}", f"grpo.group_size={args.group}",
            f"grpo.lr={args.lr}", "grpo.beta=0", f"rollout.max_new_tokens={args.max_new_tokens}",
            "rollout.temperature=1.0", "rollout.top_p=1.0", "eval.problems=8", "eval.k=1", "eval.every=0",
            f"rollout.engine={engine}", *extra]


def child(args) -> None:
    """One variant: GRPO through the stage itself (`aha.stages.grpo.run`), then its logged metrics."""
    from aha.config import ZeroConfig, load_config
    from aha.runs import read_jsonl
    from aha.stages import grpo

    if args.variant == "vllm-stale":
        from aha.rollout.vllm_engine import VLLMEngine

        VLLMEngine.load_weights = lambda self, state_dict: None  # the control: rollouts keep the starting weights
    if args.variant == "server-stale":
        from aha.rollout.vllm_server_engine import VLLMServerEngine

        VLLMServerEngine.load_weights = lambda self, state_dict: None  # the server keeps what it loaded from disk
    run_dir = Path(args.run_dir)
    server, url = start_server(args) if args.variant.startswith("server") else (None, None)
    try:
        cfg = load_config(ZeroConfig, None, overrides(args, args.variant, run_dir, url))
        clock = time.time()
        summary = grpo.run(cfg, run_dir)
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    print(json.dumps({"variant": args.variant, "seconds": round(time.time() - clock, 1),
                      "gaps": [round(r["rollout_logprob_gap"], 5) for r in rows],
                      "rewards": [round(r["reward"], 4) for r in rows],
                      "rollout_seconds": [round(r["seconds/rollout"], 3) for r in rows],
                      "tokens_generated": [r["tokens_generated"] for r in rows],
                      "final_accuracy": summary["final_accuracy"]}))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args):
    """`python -m aha.rollout.vllm_server` on --server-gpu; the engine waits for its /health."""
    port = free_port()
    command = [sys.executable, "-m", "aha.rollout.vllm_server", args.model, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "bfloat16", "--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    if args.enforce_eager:
        command.append("--enforce-eager")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(args.server_gpu)}
    return subprocess.Popen(command, env=env), f"http://127.0.0.1:{port}"


def unavailable(variants) -> str | None:
    if all(v == "torch" for v in variants):
        return None
    from aha.rollout import vllm_unavailable

    return vllm_unavailable()


def run_variant(args, variant: str, tmp: Path) -> dict:
    command = [sys.executable, __file__, "--child", "--variant", variant, "--run-dir", str(tmp / variant),
               *sys.argv[1:]]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "error": f"timed out after {args.timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"variant"')]
    if done.returncode or not lines:
        return {"variant": variant, "error": f"exit {done.returncode}", "stderr_tail": done.stderr[-3000:]}
    return json.loads(lines[-1])


def verdict(results: dict, max_gap: float) -> list[str]:
    """The failures, in words (empty: passed)."""
    failures = []
    for variant, r in results.items():
        if "error" in r:
            failures.append(f"{variant}: {r['error']}")
        elif variant != "torch" and not variant.endswith("-stale") and max(r["gaps"]) > max_gap:
            failures.append(f"{variant}: log-prob gap {max(r['gaps']):.4f} > {max_gap} (stale or wrong weights?)")
    for control in ("vllm-stale", "server-stale"):
        stale = results.get(control)
        if stale and "error" not in stale and max(stale["gaps"][1:], default=0.0) <= max_gap:
            failures.append(f"{control}: gap {max(stale['gaps'][1:], default=0.0):.4f} ≤ {max_gap}: the policy did "
                            "not move enough for the check to see stale weights (raise --lr or --steps)")
    return failures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="HF model directory (default: aha's shipped tiny base)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="high on purpose: each update moves the policy visibly")
    p.add_argument("--max-gap", type=float, default=0.05, help="largest mean |sampler − trainer| log-prob gap allowed")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True,
                   help="no CUDA graphs (faster start-up; --no-enforce-eager checks the graphs too)")
    p.add_argument("--server-gpu", type=int, default=None, help="GPU of the server variants (default: 1 if two, else 0)")
    p.add_argument("--server-transport", choices=("nccl", "http"), default=None,
                   help="weights to the server over NCCL (needs two GPUs) or HTTP (default: nccl with two GPUs)")
    p.add_argument("--timeout", type=int, default=420, help="seconds per variant")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.model is None:
        from aha.config import PretrainConfig, TaskConfig
        from aha.models.loading import shipped_base_dir

        args.model = str(shipped_base_dir(PretrainConfig(), TaskConfig()))
    if args.server_gpu is None or args.server_transport is None:
        gpus = _gpu_count()
        args.server_gpu = (1 if gpus >= 2 else 0) if args.server_gpu is None else args.server_gpu
        args.server_transport = args.server_transport or ("nccl" if gpus >= 2 and args.server_gpu != 0 else "http")
    if args.child:
        child(args)
        return 0
    variants = [v for v in args.variants.split(",") if v]
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        p.error(f"unknown variants {bad}; valid: {', '.join(VARIANTS)}")
    reason = unavailable(variants)
    if reason:
        print(json.dumps({"ok": False, "skipped": True, "reason": f"needs torch with CUDA and vllm ({reason})"}))
        return 2
    with tempfile.TemporaryDirectory(prefix="aha-gpu-smoke-") as tmp:
        results = {v: run_variant(args, v, Path(tmp)) for v in variants}
    failures = verdict(results, args.max_gap)
    print(json.dumps({"ok": not failures, "failures": failures, "model": args.model, "max_gap": args.max_gap,
                      "results": results}))
    return 0 if not failures else 1


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
