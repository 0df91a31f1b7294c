"""The task contract: problems in, `(reward, info)` out.

A task is pure: `verify` sees only the extracted answer text and the problem, never prints, never
draws random numbers, never parses the R1 template (the reward layer does that).
"""

from __future__ import annotations

import random
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

# Self-check words any task counts as reflection (paper §2.2.4: "wait", re-evaluation).
DEFAULT_REFLECTION_MARKERS = (
    "wait", "recheck", "re-check", "verify", "let me check", "hmm", "mistake", "actually",
    "on second thought", "double-check", "double check",
)


@dataclass(frozen=True)
class Problem:
    question: str  # what goes into the template's {prompt} slot
    answer: str  # the reference answer, as text
    id: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"id": self.id, "question": self.question, "answer": self.answer, "meta": dict(self.meta)}


class Task(ABC):
    """One family of problems with its verifier."""

    name: ClassVar[str]
    # Markers of a self-check in this task's chains of thought (lower-cased substrings).
    reflection_markers: ClassVar[tuple[str, ...]] = DEFAULT_REFLECTION_MARKERS
    # True when the prompt asks for the answer outside <answer> tags (R1's "\boxed{}" style): the
    # accuracy reward then hands the whole completion to `verify`, which extracts it itself.
    reads_full_completion: bool = False

    @abstractmethod
    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """`n` problems from `split` ('train' or 'test'), the same list for the same seed."""

    @abstractmethod
    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        """Reward in [0, 1] for the extracted answer text (None when there was none), and why."""

    def verify_many(self, answers: list[str | None], problems: list[Problem]) -> list[tuple[float, dict]]:
        """`verify` over a batch; tasks with slow verifiers (math, code) run it in parallel."""
        return [self.verify(a, p) for a, p in zip(answers, problems)]

    def corpus_document(self, problem: Problem, rng: random.Random) -> str | None:
        """A completion (trace + answer, in R1 shape) for pretraining a weak base model, or None
        for tasks that have no synthetic traces (benchmarks)."""
        return None

    def cold_start_completion(self, problem: Problem) -> str | None:
        """A readable long-CoT completion in R1's cold-start format (R1 §2.3.1: the reasoning, then a
        summary for the reader — in the R1-Zero template the summary is the answer block), or None
        for tasks without synthetic traces: real models bring the user's cold-start JSONL instead."""
        return None

    def corpus_facts(self, rng: random.Random) -> str | None:
        """A plain-text line of the facts the traces rely on (e.g. products), or None. A real base
        model brings such knowledge from general pretraining; the tiny one gets it from these lines,
        which carry no template and no trace style, so they leave the base's habits untouched."""
        return None



def in_test_split(key: str, test_share: float = 0.1) -> bool:
    """A fixed partition of a synthetic problem space: train and test never share a problem,
    whatever the seed, because membership depends only on the problem's text."""
    return zlib.crc32(key.encode()) % 10_000 < test_share * 10_000


TASKS: dict[str, Callable[..., Task]] = {}


def register_task(name: str):
    def wrap(cls):
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


def get_task(name: str, **options: Any) -> Task:
    from aha import tasks as _  # noqa: F401  (importing the package registers every task)

    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**options)
