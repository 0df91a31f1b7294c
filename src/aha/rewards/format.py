"""Format reward: 1 for exactly one <think>…</think> followed by one non-empty <answer>…</answer>."""

from __future__ import annotations

from aha.rewards.base import register_reward
from aha.template import parse_response


@register_reward("format")
def format_reward(completions: list[str], *, truncated: list[bool] | None = None, **_) -> list[float]:
    """Repeated, nested or unclosed tags, text after </answer> and truncated outputs all score 0.

    >>> format_reward(["<think>x</think> <answer>1</answer>", "<answer>1</answer>"])
    [1.0, 0.0]
    """
    cut = truncated or [False] * len(completions)
    return [1.0 if parse_response(c, t).well_formed else 0.0 for c, t in zip(completions, cut)]
