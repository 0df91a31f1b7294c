"""Reward registry and the weighted sum. Every component is kept for logging."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

RewardFn = Callable[..., list]  # (completions, **context) -> list[float | None]

REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str):
    def wrap(fn: RewardFn) -> RewardFn:
        REWARDS[name] = fn
        return fn

    return wrap


def get_reward(name: str) -> RewardFn:
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name or name.endswith(".py"):
        from aha.rewards.user import load_user_reward  # user code: `module:function` or `file.py:function`

        return load_user_reward(name)
    raise KeyError(f"unknown reward {name!r}; valid rewards: {', '.join(sorted(REWARDS))} or 'module:function'")


@dataclass
class RewardBreakdown:
    total: list[float]  # weighted sum per completion
    components: dict[str, list[float | None]]  # raw value of each component (None = not applicable)
    infos: list[dict]  # verifier details per completion (from the accuracy reward)

    def component_means(self) -> dict[str, float]:
        out = {}
        for name, values in self.components.items():
            present = [v for v in values if v is not None]
            out[name] = sum(present) / len(present) if present else math.nan
        return out


def combine(
    weights: Mapping[str, float], completions: Sequence[str], **context
) -> RewardBreakdown:
    """Call each weighted reward once on the whole batch and sum. A None counts as 0 in the sum
    (the component does not apply to that sample) but stays None in the log."""
    infos: list[dict] = [dict() for _ in completions]
    components: dict[str, list[float | None]] = {}
    for name, weight in weights.items():
        if weight == 0:
            continue
        values = get_reward(name)(list(completions), infos=infos, **context)
        _check_values(name, values, len(completions))
        components[name] = values
    total = [
        sum(weights[name] * (vals[i] or 0.0) for name, vals in components.items()) for i in range(len(completions))
    ]
    return RewardBreakdown(total, components, infos)


def _check_values(name: str, values, n: int) -> None:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        got = f"{type(values).__name__} of length {len(values)}" if hasattr(values, "__len__") else type(values).__name__
        raise TypeError(f"reward {name!r} must return a list of {n} floats or None, got {got}")
    for i, v in enumerate(values):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise TypeError(f"reward {name!r} returned {v!r} at index {i}; expected a finite float or None")
