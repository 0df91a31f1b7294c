"""Stages report what they do as events; whoever runs them decides what to show.

A stage never touches the terminal: it calls `events.phase(...)`, `events.advance(...)`,
`events.metrics(...)`, `events.warning(...)`, and the listeners it was given render them — the
CLI's progress bars and console warnings, TensorBoard or W&B writers, a pipeline's aggregate, a
test's recorder. With no listener (the Python API's default) events cost a function call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

Listener = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    kind: str  # "phase" | "advance" | "metrics" | "info" | "warning" | "done"
    stage: str  # "grpo", "sft", "sample", "pretrain", "evaluate", …
    data: dict = field(default_factory=dict)


class Events:
    """Fans each event out to the listeners, in order."""

    def __init__(self, listeners: Iterable[Listener] = (), stage: str = ""):
        self.listeners = list(listeners)
        self.stage = stage

    def for_stage(self, stage: str) -> "Events":
        """The same listeners, events labelled with `stage`."""
        return Events(self.listeners, stage)

    def emit(self, kind: str, **data) -> None:
        event = Event(kind, self.stage, data)
        for listener in self.listeners:
            listener(event)

    def phase(self, name: str, total: int | None = None, completed: int = 0) -> None:
        """A unit of work starts (a progress bar): `total` steps, `completed` already done."""
        self.emit("phase", name=name, total=total, completed=completed)

    def advance(self, completed: int, total: int | None = None, info: str = "") -> None:
        self.emit("advance", completed=completed, total=total, info=info)

    def metrics(self, step: int, row: dict) -> None:
        """One step's metrics row (what metrics.jsonl holds), for TensorBoard/W&B-style loggers."""
        self.emit("metrics", step=step, row=row)

    def info(self, message: str) -> None:
        self.emit("info", message=message)

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)

    def done(self, summary: dict) -> None:
        self.emit("done", summary=summary)


class Recorder:
    """A listener that keeps every event (tests, notebooks)."""

    def __init__(self):
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]
