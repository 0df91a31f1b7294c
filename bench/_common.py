"""Shared by the aha and TRL sides of `vs_trl.py`: one model, one task, one reward, one eval.

Imports only aha's torch/transformers-level modules, so the TRL side (its own venv, `src` on the
path) computes exactly the rewards and the held-out accuracy that the aha side does.
"""

from __future__ import annotations

import json
import resource
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aha.config import PretrainConfig
from aha.rewards import combine
from aha.rollout import SamplingParams
from aha.rollout.torch_engine import TorchEngine
from aha.tasks import get_task
from aha.template import build_prompt

TASK = "division"
REWARD_WEIGHTS = {"accuracy": 1.0, "format": 0.2}


@dataclass(frozen=True)
class Settings:
    prompts: int = 8
    group: int = 8
    new_tokens: int = 128
    lr: float = 1e-4
    beta: float = 0.04
    temperature: float = 1.0
    threads: int = 1
    hidden: int = 256
    layers: int = 4
    mlp: int = 768
    pretrain_documents: int = 2048  # brief: enough for a template-following base, seconds to build
    force_length: bool = True  # every completion runs to new_tokens (EOS suppressed in both)
    # A real-LLM-like tokenizer: the template is ~90 tokens of plain text, as with Qwen's (the issue's
    # TRL measurement had ≈ 116), not the demo tokenizer's one token per template half.
    compact_template: bool = False
    precision: str = "bf16-mixed"  # aha's side (TRL runs fp32, its fastest setting on CPU)
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def build_model(s: Settings, out: Path) -> Path:
    """The ~3 M-parameter Qwen2 base, pretrained briefly with aha's own pretrain stage (cached)."""
    from aha.stages.pretrain import pretrain

    if (out / "config.json").exists():
        return out
    cfg = PretrainConfig(documents=s.pretrain_documents, hidden=s.hidden, layers=s.layers, heads=4, kv_heads=2,
                         mlp=s.mlp, seed=s.seed)
    pretrain(cfg, get_task(TASK), out, compact_template=s.compact_template)
    config = json.loads((out / "config.json").read_text())
    config["max_position_embeddings"] = 4096  # room for 512 new tokens; RoPE itself has no limit
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def train_problems(s: Settings, steps: int):
    """The prompts of `steps` steps, in order; both sides draw from this list."""
    return get_task(TASK).problems("train", s.prompts * steps, seed=s.seed + 1)


def prompt_text(problem) -> str:
    return build_prompt(problem.question)


def rewards(texts: list[str], problems: list, truncated: list[bool], max_new: int) -> list[float]:
    """Accuracy + format, through aha's reward layer. Forced-length completions count as not truncated:
    the length is forced by the benchmark, not chosen by the policy."""
    lengths = [max_new] * len(texts)
    return combine(REWARD_WEIGHTS, texts, problems=problems, task=get_task(TASK), truncated=truncated,
                   lengths=lengths, max_new_tokens=max_new).total


@torch.no_grad()
def held_out_accuracy(model, tokenizer, n: int = 64, k: int = 2, seed: int = 12345) -> float:
    """Sampled (T=0.6, top-p 0.95) accuracy on a fixed held-out set: the same code for both sides."""
    task = get_task(TASK)
    problems = task.problems("test", n, seed=seed)
    ids = [tokenizer(prompt_text(p))["input_ids"] for p in problems]
    stops = tuple(tokenizer.encode("</answer>", add_special_tokens=False))
    params = SamplingParams(max_new_tokens=64, temperature=0.6, top_p=0.95, stop_token_ids=stops, seed=seed)
    out = TorchEngine(model, tokenizer).generate(ids, params, n=k)
    scored = combine({"accuracy": 1.0}, [c.text for c in out], problems=[problems[c.prompt_index] for c in out],
                     task=task, truncated=[c.truncated for c in out])
    return sum(scored.total) / len(out)


def update_kwargs(s: Settings, pad_id: int, *, beta: float | None = None, bf16: bool | None = None, **extra) -> dict:
    """`policy_update`'s arguments as every benchmark runs it: GRPO's clipped surrogate (ε 0.2),
    token-mean loss, μ = 1, one micro-batch of all rows (TRL's per-device batch is the whole batch
    too), its tokens capped at 16 k. `beta` and `bf16` default to the settings'."""
    return dict(pad_id=pad_id, micro_batch_size=s.prompts * s.group, mu=1, eps_low=0.2, eps_high=0.2,
                beta=s.beta if beta is None else beta, loss_agg="token-mean", max_len=s.new_tokens,
                temperature=s.temperature, max_grad_norm=1.0,
                bf16=s.precision == "bf16-mixed" if bf16 is None else bf16, micro_batch_tokens=16384, **extra)


def peak_rss_mb() -> float:
    """This process's own peak (VmHWM): ru_maxrss would also count the parent's peak before exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def emit(record: dict) -> None:
    """Workers end with one JSON line; the driver reads the last line of their stdout."""
    print("RESULT " + json.dumps(record), flush=True)


def aha_trainer(s: "Settings", model_dir, steps: int, warmup: int):
    """The aha side's model, tokenizer, engine, reference, optimizer and problems for `s` (one
    set-up for every aha-vs-X step benchmark)."""
    import copy

    from aha.models.loading import load_model_dir
    from aha.rollout.torch_engine import TorchEngine
    from aha.train.forward import prefer_fast_attention

    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    model, tok = load_model_dir(model_dir)
    bf16 = s.precision == "bf16-mixed"
    prefer_fast_attention(model, bf16)
    engine = TorchEngine(model, tok, bf16=bf16)
    ref = copy.deepcopy(model).eval().requires_grad_(False) if s.beta > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.0)  # TRL's defaults
    return model, tok, engine, ref, opt, train_problems(s, steps + warmup)
