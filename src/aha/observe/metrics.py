"""Behaviour metrics of one step's completions: how long, how reflective, how mixed, how repetitive.

Pure functions of text and numbers. The trainer calls `behaviour_metrics` once per step and logs the
dict to `metrics.jsonl`; the aha detector, the monitors and the report read those keys back.
A key whose value is undefined for a step (no correct completion, no rewards given) is left out
rather than logged as NaN, so readers can treat "missing" uniformly.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from aha.tasks.base import DEFAULT_REFLECTION_MARKERS
from aha.template import think_text

# Reflection lexicons per language (lower-case). English starts from the task-level defaults the
# paper points at ("wait", re-evaluation) and adds common self-correction phrases.
REFLECTION_LEXICON: Mapping[str, tuple[str, ...]] = {
    "en": DEFAULT_REFLECTION_MARKERS
    + ("let me verify", "re-evaluate", "reconsider", "check again", "that's not right", "i made an error"),
    "zh": ("等等", "等一下", "检查", "验证", "重新", "不对", "错了", "嗯"),
}

# Word tokens for n-gram statistics: one CJK character is a word (no spaces to split on),
# otherwise runs of letters/digits, and each punctuation mark on its own.
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+|[^\w\s]")


def behaviour_metrics(
    completions: Sequence[str],
    lengths: Sequence[int],
    correct: Sequence[bool],
    truncated: Sequence[bool],
    markers: Sequence[str],
    *,
    rewards: Sequence[float] | None = None,
    group_size: int | None = None,
    languages: str | Sequence[str] | None = None,
    lexicon: str | Sequence[str] | None = "en",
    ngram: int = 4,
) -> dict[str, float]:
    """Lengths are in tokens; rates are shares in [0, 1].

    `markers` are the task's own self-check markers, counted on top of the `lexicon` (a language code
    of REFLECTION_LEXICON, an explicit list, or None for the task markers only). `rewards` and
    `group_size` (samples per prompt, completions grouped consecutively) give the share of groups whose
    rewards are all equal. `languages` is the prompt's language (one code, or one per completion) for
    the language-mixing rate; without it that key is skipped.
    """
    n = len(completions)
    if not (len(lengths) == len(correct) == len(truncated) == n):
        raise ValueError(f"completions, lengths, correct, truncated must have one entry each; got "
                         f"{n}, {len(lengths)}, {len(correct)}, {len(truncated)}")
    thinks = [think_text(c) for c in completions]
    reflections = [reflection_count(t, _lexicon(lexicon, markers)) for t in thinks]
    out = length_stats(lengths, correct)
    out.update({
        "reflection_rate": float(np.mean([r > 0 for r in reflections])) if n else 0.0,
        "reflections_per_completion": float(np.mean(reflections)) if n else 0.0,
        "truncation_rate": float(np.mean(np.asarray(truncated, dtype=bool))) if n else 0.0,
        "repeated_ngram_rate": float(np.mean([repeated_ngram_rate(c, ngram) for c in completions])) if n else 0.0,
    })
    if rewards is not None and group_size:
        out["group_all_equal_rate"] = all_equal_group_rate(rewards, group_size)
    if languages is not None and n:
        targets = [languages] * n if isinstance(languages, str) else list(languages)
        out["language_mixing_rate"] = float(np.mean([language_mixing(t, g) for t, g in zip(thinks, targets)]))
    return out


def length_stats(lengths: Sequence[int], correct: Sequence[bool]) -> dict[str, float]:
    """Mean/p50/p90 of response length, and the mean split by correctness (R1's Figure 3 rises in both)."""
    arr = np.asarray(lengths, dtype=float)
    if arr.size == 0:
        return {}
    ok = np.asarray(correct, dtype=bool)
    out = {
        "response_length_mean": float(arr.mean()),
        "response_length_p50": float(np.percentile(arr, 50)),
        "response_length_p90": float(np.percentile(arr, 90)),
    }
    if ok.any():
        out["response_length_correct_mean"] = float(arr[ok].mean())
    if (~ok).any():
        out["response_length_incorrect_mean"] = float(arr[~ok].mean())
    return out


def reflection_count(text: str, markers: Sequence[str]) -> int:
    """Occurrences of any marker in `text`, case-insensitive; Latin markers match whole words only,
    so "ok" does not fire inside "look" and "wait" not inside "awaited"."""
    if not markers or not text:
        return 0
    return len(_marker_pattern(tuple(sorted(set(m.lower() for m in markers), key=len, reverse=True))).findall(text))


def marker_spans(text: str, markers: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of each marker occurrence, for highlighting in the report."""
    if not markers or not text:
        return []
    pattern = _marker_pattern(tuple(sorted(set(m.lower() for m in markers), key=len, reverse=True)))
    return [m.span() for m in pattern.finditer(text)]


@lru_cache(maxsize=64)
def _marker_pattern(markers: tuple[str, ...]) -> re.Pattern:
    # Longest first so "let me check" wins over "check"; word boundaries only where the marker's edge
    # is an ASCII word character (CJK text has no spaces, so a boundary there would never match).
    parts = []
    for m in markers:
        left = r"(?<![A-Za-z0-9_])" if re.match(r"[A-Za-z0-9_]", m) else ""
        right = r"(?![A-Za-z0-9_])" if re.search(r"[A-Za-z0-9_]$", m) else ""
        parts.append(left + re.escape(m) + right)
    return re.compile("|".join(parts), re.IGNORECASE)


def _lexicon(lexicon: str | Sequence[str] | None, markers: Sequence[str]) -> tuple[str, ...]:
    if lexicon is None:
        base: Sequence[str] = ()
    elif isinstance(lexicon, str):
        if lexicon not in REFLECTION_LEXICON:
            raise KeyError(f"no reflection lexicon for {lexicon!r}; known: {', '.join(REFLECTION_LEXICON)}")
        base = REFLECTION_LEXICON[lexicon]
    else:
        base = lexicon
    return tuple(dict.fromkeys([*base, *markers]))


def all_equal_group_rate(rewards: Sequence[float], group_size: int, tol: float = 1e-9) -> float:
    """Share of prompt groups whose G rewards are all equal: their GRPO advantages are all zero,
    so they carry no learning signal (DAPO's dynamic sampling drops exactly these)."""
    arr = np.asarray(rewards, dtype=float)
    if group_size <= 0 or arr.size % group_size:
        raise ValueError(f"{arr.size} rewards do not split into groups of {group_size}")
    if arr.size == 0:
        return 0.0
    groups = arr.reshape(-1, group_size)  # (B, G)
    return float(np.mean(groups.max(axis=1) - groups.min(axis=1) <= tol))


def words(text: str) -> list[str]:
    """Lower-cased word tokens (CJK characters one by one, punctuation separately)."""
    return [w.lower() for w in _WORD.findall(text)]


def repeated_ngram_rate(text: str, n: int = 4) -> float:
    """Share of the word n-grams of `text` that already occurred earlier in it: 0 for fresh text,
    near 1 for a degenerate loop. Text shorter than n words scores 0."""
    toks = words(text)
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def language_mixing(think: str, target: str) -> float:
    """Share of the chain-of-thought words that are not in the `target` language (R1 §2.3.2).

    Delegates to the word-level detector of the language-consistency reward so the metric and the
    reward can never disagree; imported lazily because that module is optional for the metrics.
    """
    from aha.rewards.language import language_mixing_rate

    return float(language_mixing_rate(think, target))
