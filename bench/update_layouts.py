"""The update's layouts side by side: unpadded (linear layers on real tokens only) vs padded (each
prompt once per group, completions padded to the micro-batch's longest), on the same rollouts.

    PYTHONPATH=src .venv/bin/python bench/update_layouts.py                 # both batches, both precisions

Two batches: the demo's (its shipped base, 16 prompts × 8, completions stopped at `</answer>`, so
lengths vary) and the issue-#5 benchmark's (3.3 M Qwen2, 8 × 8, every completion forced to 128
tokens: no padding to save, so the unpadded layout must only not lose). Layouts alternate within one
process; the ratio is the median over repeats of unpadded / padded seconds for one `policy_update`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import _common as C  # noqa: E402


def rollouts(which: str, bf16: bool):
    from aha.config import PretrainConfig, TaskConfig
    from aha.models.loading import load_model_dir, shipped_base_dir, stop_token_ids
    from aha.rollout import SamplingParams
    from aha.rollout.torch_engine import TorchEngine
    from aha.train.update import RolloutBatch, prefer_fast_attention

    if which == "demo":
        s = C.Settings(prompts=16, group=8, new_tokens=64, compact_template=True, force_length=False)
        model_dir = shipped_base_dir(PretrainConfig(), TaskConfig())
    else:
        s = C.Settings(new_tokens=128)
        model_dir = C.build_model(s, Path("/tmp/aha-bench-qwen2-3m-words"))
    model, tok = load_model_dir(model_dir)
    prefer_fast_attention(model, bf16)
    ids = [tok(C.prompt_text(p))["input_ids"] for p in C.train_problems(s, 1)]
    params = SamplingParams(max_new_tokens=s.new_tokens, seed=0, ignore_eos=s.force_length,
                            stop_token_ids=() if s.force_length else stop_token_ids(tok))
    out = TorchEngine(model, tok, bf16=bf16).generate(ids, params, n=s.group)
    batch = RolloutBatch.from_completions(ids, out, torch.randn(len(out), generator=torch.Generator().manual_seed(0)))
    return model, tok, batch, s


def compare(which: str, precision: str, repeats: int) -> dict:
    from aha.train import unpadded
    from aha.train.update import policy_update

    bf16 = precision == "bf16-mixed"
    model, tok, batch, s = rollouts(which, bf16)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every repeat updates the same weights
    kwargs = C.update_kwargs(s, tok.pad_token_id, beta=0.0, bf16=bf16, share_prompts=True)
    supports = unpadded.supports
    seconds: dict[str, list[float]] = {"padded": [], "unpadded": []}
    try:
        for r in range(repeats + 1):  # the first round warms up
            for layout in seconds:
                unpadded.supports = supports if layout == "unpadded" else (lambda model: False)
                t0 = time.perf_counter()
                policy_update(model, opt, batch, **kwargs)
                if r:
                    seconds[layout].append(time.perf_counter() - t0)
    finally:
        unpadded.supports = supports
    lengths = [len(c) for c in batch.completion_ids]
    ratios = [u / p for u, p in zip(seconds["unpadded"], seconds["padded"])]
    row = {"batch": which, "precision": precision, "rows": len(lengths), "completion_tokens": sum(lengths),
           "longest": max(lengths), "padded_s": C.median(seconds["padded"]), "unpadded_s": C.median(seconds["unpadded"]),
           "ratio": C.median(ratios), "ratios": ratios}
    print(f"{which:5} {precision:10} {len(lengths)} rows, {sum(lengths)} completion tokens (longest {max(lengths)}): "
          f"padded {row['padded_s']:.3f} s, unpadded {row['unpadded_s']:.3f} s, unpadded/padded {row['ratio']:.2f}",
          flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", nargs="+", choices=["demo", "forced"], default=["demo", "forced"])
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16-mixed"], default=["fp32", "bf16-mixed"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [compare(b, prec, args.repeats) for b in args.batch for prec in args.precision]
    print(json.dumps({"layouts": rows, "threads": args.threads}))


if __name__ == "__main__":
    main()
