"""Stages: each is `run(cfg, run_dir, events=None) -> summary`, reads top-down, and exchanges only
run-directory files with the others (records.jsonl, HF checkpoints, metrics.jsonl, summary.json).

    from aha import config, stages
    cfg = config.load_config(config.SFTConfig, overrides=["data.path=traces.jsonl"])
    summary = stages.sft.run(cfg, Path("runs/cold-start"))

Submodules load on first use (they import torch and transformers).
"""

import importlib

__all__ = ["evaluate", "grpo", "pretrain", "rm", "sample", "sft"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"aha.stages.{name}")
    raise AttributeError(f"module 'aha.stages' has no attribute {name!r}")
