"""Rollout engines: one token-id interface, interchangeable backends."""

from aha.rollout.base import Completion, RolloutEngine, SamplingParams

__all__ = ["Completion", "RolloutEngine", "SamplingParams", "make_engine"]


def make_engine(name: str, model, tokenizer, **options) -> RolloutEngine:
    """`torch` (any torch device, the default) or `vllm` (GPU, optional extra, imported lazily)."""
    if name == "torch":
        from aha.rollout.torch_engine import TorchEngine

        return TorchEngine(model, tokenizer, **options)
    if name == "vllm":
        from aha.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model, tokenizer, **options)
    raise KeyError(f"unknown rollout engine {name!r}; valid engines: torch, vllm")
