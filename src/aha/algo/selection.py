"""Rejection-sampling filters (R1 §2.3.3) as pure, registered functions over sample records.

A record is a dict with at least `prompt_id`, `completion`, `reward`, `correct` (bool) and
`language` (the prompt's language code). A filter takes the records and returns those it keeps,
in order; `apply_filters` runs a list of them and says how many each one dropped, so the counts
always add up: records = kept + Σ dropped.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from aha.algo.registry import Registry
from aha.rewards.language import language_mixing_rate
from aha.template import parse_response

FILTERS = Registry("sample filter")
Filter = Callable[[list[dict]], list[dict]]

MAX_MIXING = 0.0  # share of other-language words a readable CoT may hold (numbers and tags excluded)
MAX_PARAGRAPH_WORDS = 200  # R1 drops "long paragraphs"; a paragraph is text between blank lines


@FILTERS.register("correct")
def keep_correct(records: list[dict]) -> list[dict]:
    """Only verified-correct answers (R1 keeps correct responses only)."""
    return [r for r in records if r["correct"]]


def unreadable_reason(completion: str, language: str = "en", truncated: bool = False) -> str | None:
    """Why a response is not readable (None when it is): R1 drops chains of thought with mixed
    languages, long paragraphs or code blocks, and its output format puts a summary (here, the
    answer block) after the reasoning.

    >>> unreadable_reason("<think>9*7=63 ok</think> <answer>63</answer>") is None
    True
    >>> unreadable_reason("<think>7 times 9 得 63</think> <answer>63</answer>")
    'mixed languages in the reasoning (50% other-language words)'
    """
    parsed = parse_response(completion, truncated)
    if not parsed.well_formed:
        return f"no reasoning-then-summary shape ({parsed.reason})"
    think = parsed.think
    mixing = language_mixing_rate(think, language)
    if mixing > MAX_MIXING:
        return f"mixed languages in the reasoning ({mixing:.0%} other-language words)"
    if "```" in think:
        return "a code block in the reasoning"
    longest = max((len(p.split()) for p in re.split(r"\n\s*\n", think)), default=0)
    if longest > MAX_PARAGRAPH_WORDS:
        return f"a paragraph of {longest} words in the reasoning (limit {MAX_PARAGRAPH_WORDS})"
    return None


@FILTERS.register("readable")
def keep_readable(records: list[dict]) -> list[dict]:
    return [r for r in records if unreadable_reason(r["completion"], r.get("language", "en"),
                                                    r.get("truncated", False)) is None]


@FILTERS.register("dedupe")
def dedupe(records: list[dict]) -> list[dict]:
    """One record per (prompt, completion text after whitespace normalisation): the first seen."""
    seen, kept = set(), []
    for r in records:
        key = (r["prompt_id"], " ".join(r["completion"].split()))
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept


def cap_per_prompt(records: list[dict], cap: int) -> list[dict]:
    """At most `cap` records per prompt (the first ones), so easy prompts do not dominate the mix."""
    counts: dict = {}
    kept = []
    for r in records:
        counts[r["prompt_id"]] = counts.get(r["prompt_id"], 0) + 1
        if counts[r["prompt_id"]] <= cap:
            kept.append(r)
    return kept


def apply_filters(records: list[dict], names: Sequence[str], cap: int = 0) -> tuple[list[dict], list[dict]]:
    """(kept records, [{filter, dropped, left}, …]) — the report of what each step removed."""
    report, kept = [], list(records)
    steps: list[tuple[str, Filter]] = [(name, FILTERS.get_or_raise(name)) for name in names]
    if cap:
        steps.append((f"max_per_prompt={cap}", lambda rs: cap_per_prompt(rs, cap)))
    for name, fn in steps:
        before = len(kept)
        kept = fn(kept)
        report.append({"filter": name, "dropped": before - len(kept), "left": len(kept)})
    return kept, report
