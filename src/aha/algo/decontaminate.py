"""Decontamination: drop training rows whose question overlaps a held-out (evaluation) question.

Overlap is word n-grams after normalisation (lower case, punctuation to spaces), as open-r1 and
the GPT-3 paper decontaminate: a row is contaminated when it shares any n-gram with a held-out
question. Questions shorter than n words (the synthetic tasks' "188 // 32") are compared whole,
since an n-gram test could never fire on them.
"""

from __future__ import annotations

import re
from typing import Iterable

_NON_WORD = re.compile(r"[^\w/*+\-=.]+")


def normalize(text: str) -> list[str]:
    return _NON_WORD.sub(" ", text.lower()).split()


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class HeldOut:
    """The held-out questions, indexed for overlap tests."""

    def __init__(self, questions: Iterable[str], n: int = 8):
        if n < 1:
            raise ValueError(f"n-gram size must be >= 1, got {n}")
        self.n = n
        self.whole: set[tuple[str, ...]] = set()
        self.grams: set[tuple[str, ...]] = set()
        for question in questions:
            words = normalize(question)
            self.whole.add(tuple(words))
            self.grams |= _grams(words, n)

    def overlaps(self, question: str) -> bool:
        words = normalize(question)
        if tuple(words) in self.whole:
            return True
        return len(words) >= self.n and not self.grams.isdisjoint(_grams(words, self.n))


def decontaminate(rows: list[dict], held_out: HeldOut, key: str = "question") -> tuple[list[dict], list[dict]]:
    """(kept, dropped): rows whose `key` overlaps a held-out question are dropped."""
    kept, dropped = [], []
    for row in rows:
        (dropped if held_out.overlaps(row[key]) else kept).append(row)
    return kept, dropped
