"""Find the aha moment in a run: when reflection and response length changed regime, and the
transcripts that show it (R1 paper §2.2.4 and its Figure 3).

`detect_aha(metrics_rows)` reads the per-step rows of `metrics.jsonl`; `milestones(samples_rows, aha)`
picks transcripts from `samples.jsonl`. Both are pure: rows in, dataclasses out.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from aha.observe.changepoint import segments
from aha.observe.metrics import REFLECTION_LEXICON, marker_spans
from aha.template import think_text

REFLECTION_KEY = "reflection_rate"
LENGTH_KEY = "response_length_mean"


@dataclass(frozen=True)
class ChangePoint:
    metric: str
    step: int  # first step of the new regime
    before: float  # mean of the metric over the previous regime
    after: float  # mean over the new regime

    @property
    def rise(self) -> bool:
        return self.after > self.before


@dataclass(frozen=True)
class AhaResult:
    aha_step: int | None  # first rise of reflection (or of length when reflection is not logged)
    steps: tuple[int, ...] = ()  # every rise of that metric: a run can have more than one aha
    metric: str | None = None  # the series that defined `steps`
    confirmed: bool = False  # the other series rose too, within a few steps of `aha_step`
    change_points: tuple[ChangePoint, ...] = field(default_factory=tuple)  # all regimes, both series

    def describe(self) -> str:
        """One line for the console and the report."""
        if self.aha_step is None:
            return "no aha moment: reflection and response length show no rise beyond noise"
        mine = [c for c in self.change_points if c.metric == self.metric and c.step >= self.aha_step]
        # A rise spread over several steps fits as a staircase of regimes: report where it settles.
        climb = [mine[0]]
        for c in mine[1:]:
            if not c.rise:
                break
            climb.append(c)
        also = " (response length rose with it)" if self.confirmed and self.metric == REFLECTION_KEY else ""
        return f"aha at step {self.aha_step}: {self.metric} {climb[0].before:.3g} → {climb[-1].after:.3g}{also}"

    def to_dict(self) -> dict:
        return asdict(self)


def series(rows: Iterable[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the rows that logged `key` with a finite value, in step order."""
    pairs = sorted(
        (int(r["step"]), float(r[key]))
        for r in rows
        if "step" in r and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    )
    return np.array([p[0] for p in pairs], dtype=int), np.array([p[1] for p in pairs], dtype=float)


def change_points(rows: Sequence[Mapping], key: str, penalty_scale: float = 3.0) -> list[ChangePoint]:
    steps, values = series(rows, key)
    segs = segments(values, penalty_scale=penalty_scale)
    return [ChangePoint(key, int(steps[b.start]), a.mean, b.mean) for a, b in zip(segs, segs[1:])]


def detect_aha(
    metrics_rows: Sequence[Mapping],
    *,
    reflection_key: str = REFLECTION_KEY,
    length_key: str = LENGTH_KEY,
    penalty_scale: float = 3.0,
) -> AhaResult:
    """The steps where the reflection rate rises to a new regime, confirmed when response length
    rises within max(3, 5% of the run's steps). Falls back to length alone when reflection is not
    logged. A run whose series are flat (noise only) or only fall reports no aha."""
    found = {k: change_points(metrics_rows, k, penalty_scale) for k in (reflection_key, length_key)}
    logged = [k for k in (reflection_key, length_key) if len(series(metrics_rows, k)[0])]
    all_cps = tuple(cp for k in (reflection_key, length_key) for cp in found[k])
    if not logged:
        return AhaResult(None, change_points=all_cps)
    primary = logged[0]
    rises = [cp.step for cp in found[primary] if cp.rise]
    if not rises:
        return AhaResult(None, metric=primary, change_points=all_cps)
    other = length_key if primary == reflection_key else reflection_key
    steps, _ = series(metrics_rows, primary)
    tol = max(3, int(0.05 * (steps[-1] - steps[0] + 1)))
    confirmed = any(cp.rise and abs(cp.step - rises[0]) <= tol for cp in found[other])
    return AhaResult(rises[0], tuple(rises), primary, confirmed, all_cps)


# ---------------------------------------------------------------- milestone transcripts


@dataclass(frozen=True)
class Milestone:
    kind: str  # "start", "first_self_correction", "aha", "end"
    title: str
    why: str  # how it was chosen, shown under the transcript
    step: int
    sample: Mapping  # the samples.jsonl row


SelfCorrection = Callable[[Mapping, Sequence[str]], bool]


def milestones(
    samples_rows: Sequence[Mapping],
    aha: AhaResult | None,
    *,
    markers: Sequence[str] = (),
    lexicon: str | None = "en",
    is_self_correction: SelfCorrection | None = None,
) -> list[Milestone]:
    """Typical completions at the start, the aha step and the end, plus the first completion in which
    a reflection fixed a wrong intermediate result. `markers` are the task's reflection markers;
    `is_self_correction(row, markers)` is the task hook that replaces the generic rule."""
    rows = [r for r in samples_rows if "step" in r and isinstance(r.get("completion"), str)]
    if not rows:
        return []
    words = tuple(dict.fromkeys([*(REFLECTION_LEXICON.get(lexicon, ()) if lexicon else ()), *markers]))
    rule = is_self_correction or generic_self_correction
    steps = sorted({int(r["step"]) for r in rows})
    out = [_typical(rows, steps[0], "start", "Start of training")]
    first = next((r for r in sorted(rows, key=lambda r: r["step"]) if rule(r, words)), None)
    if first is not None:
        out.append(Milestone("first_self_correction", "First self-correction",
                             "the first sample whose reflection replaced a wrong intermediate value by the "
                             "right answer", int(first["step"]), first))
    if aha is not None and aha.aha_step is not None:
        at = next((s for s in steps if s >= aha.aha_step), steps[-1])
        out.append(_typical(rows, at, "aha", f"At the aha step ({aha.aha_step})"))
    out.append(_typical(rows, steps[-1], "end", "End of training"))
    return sorted(out, key=lambda m: m.step)  # stable: chronological, "start" first, "end" last


def _typical(rows: Sequence[Mapping], step: int, kind: str, title: str) -> Milestone:
    """The sample of `step` whose length is closest to that step's median: typical, not cherry-picked."""
    at = [r for r in rows if int(r["step"]) == step]
    lengths = np.array([float(r.get("length", len(r["completion"]))) for r in at])
    pick = at[int(np.argmin(np.abs(lengths - np.median(lengths))))]
    return Milestone(kind, title, f"median-length sample of step {step} ({len(at)} logged)", step, pick)


def generic_self_correction(row: Mapping, markers: Sequence[str]) -> bool:
    """A correct completion whose chain of thought reaches a reflection marker before it ever states
    the reference answer, stated some other value before it, and states the reference after it.

    >>> generic_self_correction({"completion": "<think>8*86=688>645 too high, wait, 7*86=602 ok</think>"
    ...     "<answer>7</answer>", "reference": "7", "accuracy": 1.0}, ["wait"])
    True
    """
    if float(row.get("accuracy") or 0.0) < 1.0 or row.get("reference") is None:
        return False
    think = think_text(str(row["completion"]))
    marks = _first_marker(think, markers)
    if marks is None:
        return False
    before, after = think[:marks], think[marks:]
    ref = _value_pattern(str(row["reference"]).strip())
    stated_other = bool(re.search(r"\w", before))
    return stated_other and not ref.search(before) and bool(ref.search(after))


def _first_marker(text: str, markers: Sequence[str]) -> int | None:
    spans = marker_spans(text, markers)
    return spans[0][0] if spans else None


def _value_pattern(value: str) -> re.Pattern:
    # The value as a standalone token: "7" must not match inside "687" or "7.5".
    return re.compile(r"(?<![\w.])" + re.escape(value) + r"(?![\w]|\.\d)")

