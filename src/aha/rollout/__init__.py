"""Rollout engines: one token-id interface, interchangeable backends, registered by name."""

__all__ = ["Completion", "ENGINES", "RolloutEngine", "SamplingParams", "make_engine"]


def _torch_engine(model, tokenizer, **options):
    from aha.rollout.torch_engine import TorchEngine

    return TorchEngine(model, tokenizer, **options)


def _openai_engine(model, tokenizer, **options):
    from aha.rollout.openai_engine import OpenAIEngine

    return OpenAIEngine(model, tokenizer, **options)


def _vllm_engine(model, tokenizer, **options):
    from aha.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(model, tokenizer, **options)


def _vllm_server_engine(model, tokenizer, **options):
    from aha.rollout.vllm_server_engine import VLLMServerEngine

    return VLLMServerEngine(model, tokenizer, **options)


# Engines by `rollout.engine` name; factories import their backend only when used.
ENGINES = {"torch": _torch_engine, "openai": _openai_engine, "vllm": _vllm_engine, "vllm_server": _vllm_server_engine}

# `rollout.options` of engine=vllm (VLLMEngine's keyword arguments besides max_batch/bf16), listed here
# so that config validation checks them without importing torch or vLLM (a test keeps the two in step).
VLLM_OPTIONS = ("model_dir", "dtype", "gpu_memory_utilization", "max_model_len", "sleep", "sleep_level",
                "enforce_eager")
# `rollout.options` of engine=vllm_server (VLLMServerEngine's keyword arguments besides max_batch/bf16).
VLLM_SERVER_OPTIONS = ("base_url", "host", "port", "group_port", "timeout", "startup_timeout", "sync_timeout",
                       "weight_transport", "device")


def vllm_unavailable() -> str | None:
    """Why engine=vllm cannot run on this machine, or None. Torch-free when vllm is not installed (the
    usual case on a CPU machine); with vllm installed, torch is imported to ask for a CUDA device."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed"
    import torch

    return None if torch.cuda.is_available() else "torch sees no CUDA device"


def __getattr__(name: str):
    # The contract types load torch; `ENGINES` must not (config validation reads it before any
    # model loads), so they are imported on first use.
    if name in ("Completion", "RolloutEngine", "SamplingParams"):
        from aha.rollout import base

        return getattr(base, name)
    raise AttributeError(f"module 'aha.rollout' has no attribute {name!r}")


def make_engine(name: str, model, tokenizer, **options):
    """`torch`: any torch device, the default. `openai`: any OpenAI-compatible endpoint (options:
    base_url, model_name, concurrency, timeout, max_retries; see `aha.rollout.openai_engine`).
    `vllm`: vLLM colocated in this process on a CUDA GPU (options: `VLLM_OPTIONS`; see
    `aha.rollout.vllm_engine`; written against vLLM's API, not run in aha's CPU-only CI).
    `vllm_server`: aha's vLLM server on other GPUs (`aha vllm-serve`), weights pushed after each update
    (options: `VLLM_SERVER_OPTIONS`; see `aha.rollout.vllm_server_engine`; NCCL/vLLM parts unverified)."""
    if name not in ENGINES:
        raise KeyError(f"unknown rollout engine {name!r}; valid engines: {', '.join(ENGINES)}")
    return ENGINES[name](model, tokenizer, **options)
