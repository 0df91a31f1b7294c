"""A rollout (the benchmark's 8 prompts × 8 samples × 128 new tokens, bf16, 3 M-parameter Qwen2 shape)
with and without one competing busy process, under the fixed thread count (torch's, as before) and
under `aha.kernels.threads`' budget, all in one run so the machine's other load is the same.

    PYTHONPATH=src .venv/bin/python bench/contention.py [--repeats 2] [--new-tokens 128]
    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src .venv/bin/python bench/contention.py   # what `import aha` first sets

The script imports torch before aha, so libgomp keeps its default (spinning) wait policy unless
OMP_WAIT_POLICY is set in the environment.

Weights are random (decode time does not depend on them; EOS is ignored). Prints one line per
setting and a JSON summary; `uptime` before and after says what else ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from aha.kernels import threads as budget  # noqa: E402
from aha.rollout import SamplingParams  # noqa: E402
from aha.rollout.torch_engine import TorchEngine  # noqa: E402


class _Tokenizer:
    pad_token_id, eos_token_id = 0, 1

    def decode(self, ids, **_):
        return ""


def _model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=512, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg).eval()


def rollout_seconds(engine, prompts, new_tokens: int) -> float:
    params = SamplingParams(max_new_tokens=new_tokens, seed=0, ignore_eos=True)
    start = time.perf_counter()
    engine.generate(prompts, params, n=8)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=128)
    args = p.parse_args()
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    print(f"torch threads {torch.get_num_threads()}, affinity {sorted(os.sched_getaffinity(0))}", flush=True)
    engine = TorchEngine(_model(), _Tokenizer(), bf16=True)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, 512, (32,), generator=g).tolist() for _ in range(8)]
    rollout_seconds(engine, prompts, 16)  # warm-up: kernel load, oneDNN primitives
    results: dict[str, list[float]] = {}
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            time.sleep(1.0 if busy else 0.0)  # let the budget see the neighbour
            for _ in range(args.repeats):
                for adaptive in (False, True):
                    budget.ADAPTIVE = adaptive
                    seconds = rollout_seconds(engine, prompts, args.new_tokens)
                    key = f"{'busy neighbour' if busy else 'alone':<14} {'budget' if adaptive else 'fixed':<6}"
                    results.setdefault(key, []).append(seconds)
                    print(f"{key} {seconds:7.2f} s (threads now {budget.shared_budget().threads(torch.get_num_threads())})", flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(json.dumps({k: [round(v, 2) for v in vs] for k, vs in results.items()}))


if __name__ == "__main__":
    main()
