"""Rollout engines: one token-id interface, interchangeable backends, registered by name."""

__all__ = ["Completion", "ENGINES", "RolloutEngine", "SamplingParams", "make_engine"]


def _torch_engine(model, tokenizer, **options):
    from aha.rollout.torch_engine import TorchEngine

    return TorchEngine(model, tokenizer, **options)


# Engines by `rollout.engine` name; factories import their backend only when used.
ENGINES = {"torch": _torch_engine}


def __getattr__(name: str):
    # The contract types load torch; `ENGINES` must not (config validation reads it before any
    # model loads), so they are imported on first use.
    if name in ("Completion", "RolloutEngine", "SamplingParams"):
        from aha.rollout import base

        return getattr(base, name)
    raise AttributeError(f"module 'aha.rollout' has no attribute {name!r}")


def make_engine(name: str, model, tokenizer, **options):
    """`torch`: any torch device, the default. (A vLLM engine for GPUs is planned behind the same
    interface; it is not written yet, so asking for it is an error rather than a silent fallback.)"""
    if name not in ENGINES:
        raise KeyError(f"unknown rollout engine {name!r}; valid engines: {', '.join(ENGINES)}")
    return ENGINES[name](model, tokenizer, **options)
