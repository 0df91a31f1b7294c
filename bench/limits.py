"""The machine's own matmul rate at the model's shapes, and aha's achieved FLOP/s against it, per
precision (fp32, and bf16 for `model.precision=bf16-mixed`, measured against bf16 matmuls).

    PYTHONPATH=src .venv/bin/python bench/limits.py --threads 1      # add --threads 0 for every core

FLOPs counted: 2·N per generated token (rollout), 6·N per token through forward + backward (update:
the tokens it really runs — completions, and each prompt once per group — β = 0 so no reference
forward), N = parameters (tied head once). The limit is the time-weighted matmul rate over the
model's own (M, K, N) shapes at the same row count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import _common as C  # noqa: E402


def matmul_rate(rows: int, shapes: list[tuple[int, int]], dtype=torch.float32, seconds: float = 0.5) -> float:
    """GFLOP/s of `linear` at (rows × K) @ (K × N) over the given layer shapes, all weighed by FLOPs."""
    flops, spent = 0.0, 0.0
    for k, n in shapes:
        x, w = torch.randn(rows, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
        torch.nn.functional.linear(x, w)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / len(shapes):
            torch.nn.functional.linear(x, w)
            reps += 1
        spent += time.perf_counter() - t0
        flops += 2.0 * rows * k * n * reps
    return flops / spent / 1e9


def model_shapes(cfg) -> list[tuple[int, int]]:
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    qkv = (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * head_dim
    per_layer = [(cfg.hidden_size, qkv), (cfg.hidden_size, cfg.hidden_size),
                 (cfg.hidden_size, 2 * cfg.intermediate_size), (cfg.intermediate_size, cfg.hidden_size)]
    return per_layer + [(cfg.hidden_size, cfg.vocab_size)]


def achieved(model_dir: Path, s: C.Settings, bf16: bool) -> dict:
    from aha.models.loading import load_model_dir
    from aha.observe.cost import count_params
    from aha.rollout import SamplingParams
    from aha.rollout.torch_engine import TorchEngine
    from aha.train.update import RolloutBatch, policy_update, prefer_fast_attention

    model, tok = load_model_dir(model_dir)
    prefer_fast_attention(model, bf16)
    n_params = count_params(model, exclude_embeddings=False)
    problems = C.train_problems(s, 1)
    ids = [tok(C.prompt_text(p))["input_ids"] for p in problems]
    engine = TorchEngine(model, tok, bf16=bf16)
    params = SamplingParams(max_new_tokens=s.new_tokens, seed=0, ignore_eos=True)
    engine.generate(ids, params, n=s.group)  # warm-up
    t0 = time.perf_counter()
    out = engine.generate(ids, params, n=s.group)
    rollout_s = time.perf_counter() - t0
    generated = sum(len(c.ids) for c in out)
    batch = RolloutBatch.from_completions(ids, out, torch.randn(len(out)))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    kwargs = C.update_kwargs(s, tok.pad_token_id, beta=0.0, bf16=bf16)
    policy_update(model, opt, batch, **kwargs)  # warm-up
    laps: dict = {}
    stats = policy_update(model, opt, batch, timings=laps, **kwargs)
    update_s = laps["forward"] + laps["backward"]
    trained = stats["forward_tokens"]
    return {"parameters": n_params, "rollout_gflops": 2 * n_params * generated / rollout_s / 1e9,
            "rollout_tokens_per_s": generated / rollout_s, "update_gflops": 6 * n_params * trained / update_s / 1e9,
            "update_tokens_per_s": trained / update_s, "decode_rows": len(out), "trained_tokens": trained}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="0 = every core this process may use")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16-mixed"], default=["fp32", "bf16-mixed"])
    p.add_argument("--model-dir", type=Path, default=Path("/tmp/aha-bench-qwen2-3m-words"))
    args = p.parse_args()
    s = C.Settings(new_tokens=args.new_tokens)
    model_dir = C.build_model(s, args.model_dir)
    from transformers import AutoConfig

    shapes = model_shapes(AutoConfig.from_pretrained(model_dir))
    results = []
    for threads, precision in [(t, p) for t in args.threads for p in args.precision]:
        threads = threads or (os.cpu_count() or 1)
        torch.set_num_threads(threads)
        bf16 = precision == "bf16-mixed"
        got = achieved(model_dir, s, bf16)
        rows_update = got["trained_tokens"]
        dtype = torch.bfloat16 if bf16 else torch.float32
        limit_update = matmul_rate(rows_update, shapes, dtype)
        limit_decode = matmul_rate(s.prompts * s.group, shapes, dtype)
        row = {"threads": threads, "precision": precision, "matmul_gflops_update_shapes": limit_update,
               "matmul_gflops_decode_shapes": limit_decode, **got,
               "update_fraction_of_limit": got["update_gflops"] / limit_update,
               "rollout_fraction_of_update_limit": got["rollout_gflops"] / limit_update,
               "rollout_fraction_of_decode_limit": got["rollout_gflops"] / limit_decode}
        results.append(row)
        print(f"{threads} thread(s), {precision}: {dtype} matmul {limit_update:.0f} GFLOP/s at update shapes ({rows_update} rows), "
              f"{limit_decode:.0f} at decode shapes ({s.prompts * s.group} rows)\n"
              f"  update  {got['update_gflops']:.1f} GFLOP/s = {row['update_fraction_of_limit']:.0%} of the limit "
              f"({got['update_tokens_per_s']:.0f} tokens/s fwd+bwd)\n"
              f"  rollout {got['rollout_gflops']:.1f} GFLOP/s = {row['rollout_fraction_of_decode_limit']:.0%} of the "
              f"decode-shape limit, {row['rollout_fraction_of_update_limit']:.0%} of the update-shape limit "
              f"({got['rollout_tokens_per_s']:.0f} tokens/s)", flush=True)
    print(json.dumps({"limits": results}))


if __name__ == "__main__":
    main()
