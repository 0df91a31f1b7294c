"""Optimizer and learning-rate schedule, one construction for every trainer."""

from __future__ import annotations

import math

import torch


def adamw(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    # β2 = 0.99, not 0.999: RL and short SFT runs have few steps, and a second moment that forgets
    # faster follows the shifting gradient scale (TRL's and verl's GRPO defaults differ; this one
    # is what aha's runs were measured with).
    # Trainable parameters only: with LoRA the frozen base has no optimizer state.
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))


def schedule(optimizer, warmup_steps: int, total_steps: int | None = None, shape: str = "constant"):
    """Linear warm-up over `warmup_steps`, then `constant`, `linear` decay to 0 or `cosine` decay to 0
    at `total_steps`."""
    warmup = max(1, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps or shape == "constant" or not total_steps:
            return min(1.0, (step + 1) / warmup)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1.0 - progress if shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
