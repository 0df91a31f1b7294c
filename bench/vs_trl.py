"""aha vs TRL's GRPOTrainer on the same tiny Qwen2, tokenizer, task, rewards and settings, 1 thread each.

    PYTHONPATH=src .venv/bin/python bench/vs_trl.py                      # 128 new tokens
    PYTHONPATH=src .venv/bin/python bench/vs_trl.py --new-tokens 512 --rounds 1 --steps 2
    PYTHONPATH=src .venv/bin/python bench/vs_trl.py --demo-base --time-to-accuracy 0.75 --max-steps 200 --eval-every 10

TRL runs in its own venv (.bench-venv, created on first use: CPU torch first, then trl), as a
subprocess; aha runs as another. Rounds alternate TRL and aha so a busy machine hurts both alike;
`step_time_ratio` is the median over rounds of (aha median s/step) / (TRL median s/step). The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _common as C  # noqa: E402

BENCH_VENV = ROOT / ".bench-venv"
TRL_SPEC = "trl==1.16.0"
TORCH_SPEC = "torch==2.13.0"


def ensure_bench_venv() -> Path:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run(pip + [TORCH_SPEC], check=True)  # CPU torch first: trl must not pull a CUDA build
        subprocess.run(pip + [TRL_SPEC, "transformers==5.23.0"], check=True)
    return python


def run_worker(python: str, args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([python, *args], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ---------------------------------------------------------------- aha worker (runs in a subprocess)

def aha_worker(model_dir: str, s: C.Settings, steps: int, warmup: int, target: float | None, eval_every: int):
    import torch

    from aha.algo.advantages import compute_advantages
    from aha.models.loading import stop_token_ids
    from aha.rollout import SamplingParams
    from aha.train.update import RolloutBatch, policy_update

    model, tok, engine, ref, opt, problems = C.aha_trainer(s, model_dir, steps, warmup)
    stops = () if s.force_length else stop_token_ids(tok)
    records, train_s, reached = [], 0.0, None
    for step in range(steps + warmup):
        t0 = time.perf_counter()
        chunk = problems[step * s.prompts : (step + 1) * s.prompts]
        prompt_ids = [tok(C.prompt_text(p))["input_ids"] for p in chunk]
        params = SamplingParams(max_new_tokens=s.new_tokens, temperature=s.temperature, stop_token_ids=stops, seed=step,
                                ignore_eos=s.force_length)
        completions = engine.generate(prompt_ids, params, n=s.group)
        t1 = time.perf_counter()
        texts = [c.text for c in completions]
        truncated = [False if s.force_length else c.truncated for c in completions]
        rewards = torch.tensor(C.rewards(texts, [chunk[c.prompt_index] for c in completions], truncated, s.new_tokens))
        advantages = compute_advantages("grpo", rewards, s.group)
        batch = RolloutBatch.from_completions(prompt_ids, completions, advantages)
        t2 = time.perf_counter()
        laps: dict = {}  # one micro-batch of all rows, as TRL's per_device_train_batch_size (tokens still capped)
        stats = policy_update(model, opt, batch, **C.update_kwargs(s, tok.pad_token_id, ref_model=ref, timings=laps))
        dt = time.perf_counter() - t0
        train_s += dt
        rec = {"step_s": dt, "generation_s": t1 - t0, "ref_s": laps.get("ref", 0.0), "forward_s": laps.get("forward", 0.0),
               "backward_s": laps.get("backward", 0.0), "other_s": t2 - t1, "tokens": batch.n_tokens,
               "trained_tokens": stats["forward_tokens"]}  # prompts once per group
        records.append(rec)
        if target is not None and eval_every and (step + 1) % eval_every == 0:
            rec["accuracy"] = C.held_out_accuracy(model, tok)
            if rec["accuracy"] >= target:
                reached = train_s
                break
    C.emit({"side": "aha", "steps": records[warmup:], "peak_rss_mb": C.peak_rss_mb(),
            "seconds_to_target": reached, "train_s": train_s})


def rollout_worker(model_dir: str, s: C.Settings, repeats: int):
    """aha's engine (bf16 and fp32) vs transformers' `generate` (fp32, its fastest here, and bf16
    weights) on the same model and batch, every completion forced to full length, in alternation."""
    import torch
    from transformers import AutoModelForCausalLM

    from aha.models.loading import load_tokenizer
    from aha.rollout import SamplingParams
    from aha.rollout.torch_engine import TorchEngine

    torch.set_num_threads(s.threads)
    tok = load_tokenizer(Path(model_dir))  # not AutoTokenizer: see aha.models.loading.load_tokenizer
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    model_bf16 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    problems = C.train_problems(s, 1)
    ids = [tok(C.prompt_text(p))["input_ids"] for p in problems]
    engines = {"aha_bf16": TorchEngine(model, tok, bf16=True), "aha_fp32": TorchEngine(model, tok, bf16=False)}
    enc = tok([C.prompt_text(p) for p in problems for _ in range(s.group)], return_tensors="pt", padding=True)
    n_tokens = s.prompts * s.group * s.new_tokens

    def hf(m):
        with torch.no_grad():
            m.generate(**enc, do_sample=True, max_new_tokens=s.new_tokens, min_new_tokens=s.new_tokens, top_k=0,
                       temperature=s.temperature, pad_token_id=tok.pad_token_id)

    params = SamplingParams(max_new_tokens=s.new_tokens, temperature=s.temperature, ignore_eos=True)
    runs = {**{name: (lambda e=e: e.generate(ids, params, n=s.group)) for name, e in engines.items()},
            "generate_fp32": lambda: hf(model), "generate_bf16": lambda: hf(model_bf16)}
    tps: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats + 1):  # the first round warms up
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            if r:
                tps[name].append(n_tokens / (time.perf_counter() - t0))
    ratio = lambda a, b: [x / y for x, y in zip(tps[a], tps[b])]  # noqa: E731
    C.emit({"tokens_per_s": tps, "prompt_tokens": len(ids[0]),
            "ratios": ratio("aha_bf16" if s.precision == "bf16-mixed" else "aha_fp32", "generate_fp32"),
            "ratios_fp32_vs_fp32": ratio("aha_fp32", "generate_fp32"),
            "ratios_bf16_vs_bf16": ratio("aha_bf16", "generate_bf16")})


# ---------------------------------------------------------------- driver

def summarize(side: str, runs: list[dict], settings: C.Settings) -> dict:
    steps = [r for run in runs for r in run["steps"]]
    step_s = C.median([r["step_s"] for r in steps])
    phases = {k: C.median([r.get(f"{k}_s", 0.0) for r in steps]) for k in ("generation", "ref", "forward", "backward", "other")}
    tokens = settings.prompts * settings.group * settings.new_tokens
    out = {"s_per_step": step_s, "completion_tokens_per_s": tokens / step_s, "phases_s": phases,
           "peak_rss_mb": max(run["peak_rss_mb"] for run in runs), "steps_measured": len(steps)}
    split = ", ".join(f"{k} {v:.2f}s ({100 * v / step_s:.0f}%)" for k, v in phases.items())
    print(f"{side:4} {step_s:6.2f} s/step  {out['completion_tokens_per_s']:7.0f} completion tok/s  "
          f"peak RSS {out['peak_rss_mb']:.0f} MB  [{split}]", flush=True)
    return out


def step_time(args, s: C.Settings, model_dir: Path, bench_python: Path) -> dict:
    trl_runs, aha_runs, ratios = [], [], []
    common = [str(model_dir), s.to_json(), str(args.steps), str(args.warmup)]
    for r in range(args.rounds):
        trl = run_worker(str(bench_python), [str(HERE / "_trl_worker.py"), *common])
        aha = run_worker(sys.executable, [__file__, "--worker", "aha", *common])
        trl_runs.append(trl)
        aha_runs.append(aha)
        pair = C.median([x["step_s"] for x in aha["steps"]]) / C.median([x["step_s"] for x in trl["steps"]])
        ratios.append(pair)
        print(f"round {r + 1}/{args.rounds}: aha/TRL step time {pair:.3f}", flush=True)
    result = {"trl": summarize("TRL", trl_runs, s), "aha": summarize("aha", aha_runs, s)}
    result["step_time_ratio"] = C.median(ratios)
    result["step_time_ratios"] = ratios
    print(f"aha/TRL step time (median of pairs): {result['step_time_ratio']:.3f}  "
          f"= TRL is {1 / result['step_time_ratio']:.2f}x slower", flush=True)
    return result


def time_to_accuracy(args, s: C.Settings, model_dir: Path, bench_python: Path) -> dict:
    """Training seconds (evaluations excluded) until the held-out accuracy reaches the target: TRL
    once, aha once per precision."""
    s = replace(s, force_length=False, new_tokens=args.accuracy_new_tokens)
    tail = [str(args.max_steps), "0", str(args.time_to_accuracy), str(args.eval_every)]
    runs = {"trl": run_worker(str(bench_python), [str(HERE / "_trl_worker.py"), str(model_dir), s.to_json(), *tail])}
    for precision in args.precision_list:
        s_p = replace(s, precision=precision)
        runs[f"aha_{precision}"] = run_worker(sys.executable, [__file__, "--worker", "aha", str(model_dir), s_p.to_json(), *tail])
    out = {}
    for name, res in runs.items():
        accs = [(i + 1, r["accuracy"]) for i, r in enumerate(res["steps"]) if "accuracy" in r]
        out[name] = {"seconds_to_target": res["seconds_to_target"], "train_s": res["train_s"], "accuracy_by_step": accs,
                     "median_step_s": C.median([r["step_s"] for r in res["steps"]])}
        print(f"{name}: target {args.time_to_accuracy} reached after {res['seconds_to_target']} s of training "
              f"(ran {res['train_s']:.0f} s, median step {out[name]['median_step_s']:.2f} s); "
              f"held-out accuracy by step {accs}", flush=True)
        if name != "trl" and res["seconds_to_target"] and runs["trl"]["seconds_to_target"]:
            out[f"time_to_accuracy_ratio_{name}"] = res["seconds_to_target"] / runs["trl"]["seconds_to_target"]
            print(f"{name}/TRL time to target: {out[f'time_to_accuracy_ratio_{name}']:.3f}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", choices=["aha", "rollout"], help=argparse.SUPPRESS)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2, help="TRL/aha alternations")
    p.add_argument("--steps", type=int, default=3, help="measured steps per run")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured first steps per run")
    p.add_argument("--rollout-repeats", type=int, default=3)
    p.add_argument("--time-to-accuracy", type=float, default=None, help="held-out accuracy target (optional mode)")
    p.add_argument("--max-steps", type=int, default=40, help="bound for the time-to-accuracy mode")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--accuracy-new-tokens", type=int, default=64)
    p.add_argument("--precision", choices=["bf16-mixed", "fp32"], default="bf16-mixed", help="aha's side")
    p.add_argument("--demo-base", action="store_true",
                   help="the demo's shipped base and settings (16 prompts × 8, β 0) instead of the 3 M bench model")
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "aha-bench-qwen2-3m-words")
    args, rest = p.parse_known_args()
    if args.worker:
        model_dir, settings = rest[0], C.Settings(**json.loads(rest[1]))
        if args.worker == "rollout":
            return rollout_worker(model_dir, settings, int(rest[2]))
        target = float(rest[4]) if len(rest) > 4 else None
        eval_every = int(rest[5]) if len(rest) > 5 else 0
        return aha_worker(model_dir, settings, int(rest[2]), int(rest[3]), target, eval_every)

    s = C.Settings(new_tokens=args.new_tokens, precision=args.precision)
    args.precision_list = [args.precision] if "--precision" in sys.argv else ["fp32", "bf16-mixed"]
    if args.demo_base:
        from aha.config import PretrainConfig, TaskConfig
        from aha.models.loading import shipped_base_dir

        model_dir = shipped_base_dir(PretrainConfig(), TaskConfig())
        s = replace(s, prompts=16, group=8, beta=0.0, compact_template=True)
    else:
        model_dir = C.build_model(s, args.model_dir)
    bench_python = ensure_bench_venv()
    print(f"settings: {s.to_json()}", flush=True)
    result: dict = {"settings": {**asdict(s), "trl": TRL_SPEC, "rounds": args.rounds, "steps": args.steps}}
    if args.time_to_accuracy is not None:
        result["accuracy"] = time_to_accuracy(args, s, model_dir, bench_python)
    else:
        result.update(step_time(args, s, model_dir, bench_python))
    roll = run_worker(sys.executable, [__file__, "--worker", "rollout", str(model_dir), s.to_json(), str(args.rollout_repeats)])
    result["rollout_tokens_per_s_ratio"] = C.median(roll["ratios"])
    result["rollout"] = roll
    speeds = ", ".join(f"{name} {C.median(v):.0f}" for name, v in roll["tokens_per_s"].items())
    print(f"rollout {s.prompts}x{s.group}x{s.new_tokens} (prompts of {roll['prompt_tokens']} tokens), tokens/s: {speeds}; "
          f"aha ({s.precision}) / generate (fp32) = {result['rollout_tokens_per_s_ratio']:.2f}x; "
          f"fp32/fp32 {C.median(roll['ratios_fp32_vs_fp32']):.2f}x; bf16/bf16 {C.median(roll['ratios_bf16_vs_bf16']):.2f}x",
          flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
