"""Length and repetition shaping rewards, added to accuracy with their own weights.

Each needs settings (token limit, n-gram size) that reach the function as batch context
(`max_new_tokens=…`) or through a factory (`make_overlong_penalty(4096, 512)`), so the registry
stays a plain name → callable map. Lengths are in tokens (`lengths`, one int per completion).
"""

from __future__ import annotations

import math
from typing import Sequence

from aha.rewards.base import register_reward

# Yeo et al. 2025 ("Demystifying Long Chain-of-Thought Reasoning in LLMs"), cosine reward defaults.
COSINE_DEFAULTS = {"correct_short": 2.0, "correct_long": 1.0, "wrong_short": -10.0, "wrong_long": 0.0, "exceed": -10.0}


def _need_lengths(lengths, completions, name: str) -> list[int]:
    if lengths is None:
        raise ValueError(f"reward {name!r} needs token lengths: pass lengths=[…] (one int per completion)")
    if len(lengths) != len(completions):
        raise ValueError(f"reward {name!r}: {len(lengths)} lengths for {len(completions)} completions")
    return [int(x) for x in lengths]


def overlong_value(length: int, max_new_tokens: int, buffer: int) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 up to `max − buffer` tokens,
    then linear down to −1 at `max`, and −1 beyond.

    >>> [overlong_value(n, 100, 20) for n in (50, 80, 90, 100, 120)]
    [0.0, 0.0, -0.5, -1.0, -1.0]
    """
    if not 0 < buffer <= max_new_tokens:
        raise ValueError(f"overlong buffer must be in (0, max_new_tokens], got {buffer} for {max_new_tokens}")
    free = max_new_tokens - buffer
    if length <= free:
        return 0.0
    if length <= max_new_tokens:
        return (free - length) / buffer
    return -1.0


@register_reward("overlong")
def overlong_penalty(
    completions: Sequence[str], *, lengths: Sequence[int] | None = None, max_new_tokens: int | None = None,
    overlong_buffer: int | None = None, **_,
) -> list[float]:
    """DAPO overlong penalty per completion; the buffer defaults to a fifth of `max_new_tokens`
    (DAPO: 4,096 of 20,480).

    >>> overlong_penalty(["a", "b", "c"], lengths=[10, 90, 100], max_new_tokens=100, overlong_buffer=20)
    [0.0, -0.5, -1.0]
    """
    lengths = _need_lengths(lengths, completions, "overlong")
    if max_new_tokens is None:
        raise ValueError("reward 'overlong' needs max_new_tokens (the generation limit, in tokens)")
    buffer = overlong_buffer or max(1, max_new_tokens // 5)
    return [overlong_value(n, max_new_tokens, buffer) for n in lengths]


def make_overlong_penalty(max_new_tokens: int, overlong_buffer: int):
    """The penalty with its settings bound, for `register_reward("my_overlong")(…)`."""

    def reward(completions, *, lengths=None, **_):
        return overlong_penalty(completions, lengths=lengths, max_new_tokens=max_new_tokens, overlong_buffer=overlong_buffer)

    return reward


def cosine_value(correct: bool, length: int, max_len: int, truncated: bool = False, **values: float) -> float:
    """Cosine length scaling (Yeo et al. 2025): correct answers earn more when short
    (`correct_short` → `correct_long`), wrong ones are punished less when long (`wrong_short` →
    `wrong_long`, so the model keeps thinking on hard problems); cut-off output earns `exceed`.

    >>> cosine_value(True, 0, 100), cosine_value(True, 100, 100), cosine_value(False, 50, 100)
    (2.0, 1.0, -5.0)
    """
    v = {**COSINE_DEFAULTS, **values}
    if truncated or length > max_len:
        return v["exceed"]
    start, end = (v["correct_short"], v["correct_long"]) if correct else (v["wrong_short"], v["wrong_long"])
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * length / max_len))


@register_reward("cosine_length")
def cosine_length_reward(
    completions: Sequence[str], *, lengths: Sequence[int] | None = None, max_new_tokens: int | None = None,
    correct: Sequence[bool] | None = None, truncated: Sequence[bool] | None = None, problems=None, task=None, **_,
) -> list[float]:
    """Replaces plain accuracy (use it instead of, not with, `accuracy`). Correctness comes from a
    `correct` column if given, else from the task's verifier on the <answer> text.

    >>> cosine_length_reward(["x", "y"], lengths=[0, 50], max_new_tokens=100, correct=[True, False])
    [2.0, -5.0]
    """
    lengths = _need_lengths(lengths, completions, "cosine_length")
    if max_new_tokens is None:
        raise ValueError("reward 'cosine_length' needs max_new_tokens (the generation limit, in tokens)")
    if correct is None:
        if task is None or problems is None:
            raise ValueError("reward 'cosine_length' needs correct=[…] or task= and problems=")
        from aha.rewards.accuracy import accuracy_reward

        correct = [r >= 1.0 for r in accuracy_reward(list(completions), problems=problems, task=task)]
    cut = truncated or [False] * len(completions)
    return [cosine_value(bool(c), n, max_new_tokens, bool(t)) for c, n, t in zip(correct, lengths, cut)]


def repetition_value(text: str, ngram_size: int = 3, max_penalty: float = -1.0) -> float:
    """`max_penalty` × the share of repeated word n-grams (0 when every n-gram is new).

    >>> repetition_value("a b c d e f"), round(repetition_value("go on " * 20, ngram_size=2), 3)
    (0.0, -0.949)
    """
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0, got {max_penalty}")
    words = text.lower().split()
    grams = [tuple(words[i : i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
    if not grams:
        return 0.0
    repeated = 1.0 - len(set(grams)) / len(grams)
    return max_penalty * repeated if repeated else 0.0  # no -0.0


@register_reward("repetition")
def repetition_penalty(
    completions: Sequence[str], *, ngram_size: int = 3, repetition_max_penalty: float = -1.0, **_
) -> list[float]:
    """Penalise looping text (a failure mode of long RL generations). Words are split on
    whitespace, so unspaced scripts (Chinese) are judged coarsely.

    >>> repetition_penalty(["one two three four", "la la la la la la"])
    [0.0, -0.75]
    """
    return [repetition_value(c, ngram_size, repetition_max_penalty) for c in completions]
