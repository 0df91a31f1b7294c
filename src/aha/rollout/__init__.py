"""Rollout engines: one token-id interface, interchangeable backends."""

from aha.rollout.base import Completion, RolloutEngine, SamplingParams

__all__ = ["Completion", "RolloutEngine", "SamplingParams", "make_engine"]


def make_engine(name: str, model, tokenizer, **options) -> RolloutEngine:
    """`torch`: any torch device, the default. (A vLLM engine for GPUs is planned behind the same
    interface; it is not written yet, so asking for it is an error rather than a silent fallback.)"""
    if name == "torch":
        from aha.rollout.torch_engine import TorchEngine

        return TorchEngine(model, tokenizer, **options)
    if name == "vllm":
        raise KeyError("rollout.engine=vllm is not available yet in this version of aha; use rollout.engine=torch")
    raise KeyError(f"unknown rollout engine {name!r}; valid engines: torch")
