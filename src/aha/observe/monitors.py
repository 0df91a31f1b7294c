"""Failure monitors: one-line warnings while a GRPO run goes wrong, and flags in its metrics.

The trainer calls `RunMonitor.check(metrics)` once per step with that step's metrics dict; it gets
back the warnings to print (only when a condition starts, so the console is not flooded) and
`monitor/<name>` flags (1.0 while the condition holds, else 0.0) to merge into the logged row.
Every check looks at windowed means after a warm-up, so one noisy step never fires and a healthy
run stays quiet. Thresholds are constructor arguments; the defaults are documented per check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

CHECKS = ("format_stuck", "length_collapse", "length_at_cap", "entropy_collapse", "no_signal", "reward_hacking")


@dataclass
class MonitorResult:
    warnings: list[str]  # one line each, for the console
    flags: dict[str, float]  # "monitor/<check>": 1.0 while it holds, merged into the metrics row


@dataclass
class RunMonitor:
    warmup: int = 20  # steps before any check: the start of a run is legitimately wild
    window: int = 10  # steps averaged by each check
    format_floor: float = 0.01  # format reward below this over the window, past warm-up: stuck at 0
    collapse_ratio: float = 0.6  # window-mean length below this share of its best earlier window mean
    cap_rate: float = 0.2  # truncated share above this: completions pile up at max_tokens
    entropy_ratio: float = 0.1  # window-mean entropy below this share of the first window's
    entropy_floor: float = 0.02  # …or below this many nats per token
    equal_rate: float = 0.9  # share of groups with all-equal rewards above this: no advantage signal
    eval_drop: float = 0.1  # held-out accuracy this far below its best while…
    reward_rise: float = 0.05  # …train reward is at least this much above its level at that best
    _columns: dict = field(default_factory=dict)  # key -> per-step values, NaN where not logged
    _steps: int = 0
    _active: set = field(default_factory=set)

    def check(self, metrics: Mapping[str, float]) -> MonitorResult:
        """Record this step's metrics and judge the run so far."""
        self._record(metrics)
        fired = {} if self._steps <= self.warmup else self._fired()
        warnings = [f"step {metrics.get('step', self._steps)}: {msg}"
                    for name, msg in fired.items() if name not in self._active]
        self._active = set(fired)
        return MonitorResult(warnings, {f"monitor/{c}": float(c in fired) for c in CHECKS})

    def _record(self, metrics: Mapping[str, float]) -> None:
        # Columns rather than a list of dicts: each check then reads one array, so a step costs
        # O(window) instead of a scan over the whole history.
        for key in set(self._columns) | set(metrics):
            column = self._columns.setdefault(key, [math.nan] * self._steps)
            value = metrics.get(key)
            column.append(float(value) if _finite(value) else math.nan)
        self._steps += 1

    def _fired(self) -> dict[str, str]:
        checks = (self._format_stuck, self._length_collapse, self._length_at_cap,
                  self._entropy_collapse, self._no_signal, self._reward_hacking)
        out = {}
        for name, fn in zip(CHECKS, checks):
            msg = fn()
            if msg:
                out[name] = msg
        return out

    # ------------------------------------------------------------------ the checks

    def _format_stuck(self) -> str | None:
        key = "reward/format" if self._recent("reward/format").size else "format"
        recent = self._recent(key)
        if recent.size and recent.mean() < self.format_floor:
            return (f"format reward stuck at {recent.mean():.3f} for {recent.size} steps — the model never "
                    f"closes <think>/<answer>; check the template, max_tokens and the base model")
        return None

    def _length_collapse(self) -> str | None:
        means = self._window_means("response_length_mean")
        if means.size < 2:
            return None
        i = int(np.argmax(means[:-1]))
        best = means[i]
        # Shorter answers that score better are the policy getting concise, not a collapse.
        rewards = self._window_means("reward")
        improving = rewards.size == means.size and rewards[-1] - rewards[i] >= self.reward_rise
        if means[-1] < self.collapse_ratio * best and not improving:
            return (f"response length collapsing: {means[-1]:.1f} tokens vs {best:.1f} before — the policy "
                    f"is dropping its reasoning (learning rate too high? a length penalty?)")
        return None

    def _length_at_cap(self) -> str | None:
        recent = self._recent("truncation_rate")
        if recent.size and recent.mean() > self.cap_rate:
            return (f"{recent.mean():.0%} of completions hit the token cap — raise max_tokens or add an "
                    f"overlong penalty; truncated answers score 0")
        return None

    def _entropy_collapse(self) -> str | None:
        values = self._values("entropy")
        if values.size <= self.window:
            return None
        first, recent = values[: self.window].mean(), values[-self.window :].mean()
        if recent < max(self.entropy_floor, self.entropy_ratio * first):
            return (f"entropy collapsed to {recent:.3f} nats/token (from {first:.3f}) — sampling is nearly "
                    f"deterministic, groups stop differing; raise temperature or lower the learning rate")
        return None

    def _no_signal(self) -> str | None:
        recent = self._recent("group_all_equal_rate")
        if recent.size and recent.mean() > self.equal_rate:
            return (f"{recent.mean():.0%} of groups have all-equal rewards — zero advantage, no learning "
                    f"signal; the task is too easy or too hard for this model")
        return None

    def _reward_hacking(self) -> str | None:
        evals = self._values("eval/accuracy", keep_index=True)
        at = np.flatnonzero(np.isfinite(evals))
        if at.size < 2:
            return None
        best_i = int(at[:-1][np.argmax(evals[at[:-1]])])
        last_i = int(at[-1])
        best, last = evals[best_i], evals[last_i]
        reward = self._values("reward", keep_index=True)
        then, now = _around(reward, best_i, self.window), _around(reward, last_i, self.window)
        if best - last >= self.eval_drop and then is not None and now is not None and now - then >= self.reward_rise:
            return (f"train reward up {then:.3f} → {now:.3f} while held-out accuracy fell {best:.3f} → "
                    f"{last:.3f} — the policy may be exploiting the reward (reward hacking)")
        return None

    # ------------------------------------------------------------------ helpers

    def _values(self, key: str, keep_index: bool = False) -> np.ndarray:
        """`key` over the run; only the logged (finite) values unless keep_index, then NaN-padded."""
        arr = np.asarray(self._columns.get(key, []), dtype=float)
        return arr if keep_index else arr[np.isfinite(arr)]

    def _recent(self, key: str) -> np.ndarray:
        """`key` over the last `window` steps, empty unless it was logged in all of them."""
        tail = np.asarray(self._columns.get(key, [])[-self.window :], dtype=float)
        if tail.size < self.window or not np.isfinite(tail).all():
            return np.array([])
        return tail

    def _window_means(self, key: str) -> np.ndarray:
        """Means of consecutive windows of `key`, the last one ending at the newest step."""
        values = self._values(key)
        k = values.size // self.window
        if k == 0:
            return np.array([])
        return values[values.size - k * self.window :].reshape(k, self.window).mean(axis=1)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _around(values: np.ndarray, i: int, window: int) -> float | None:
    """Mean of the finite values in the `window` steps ending at index i."""
    part = values[max(0, i - window + 1) : i + 1]
    part = part[np.isfinite(part)]
    return float(part.mean()) if part.size else None
