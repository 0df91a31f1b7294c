"""The report's figures: one PNG per panel, every run overlaid, the aha step marked.

matplotlib with the Agg backend (no display, no GUI toolkit), chosen per figure rather than with
`matplotlib.use` so importing aha never changes the backend of a user's notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aha.observe.aha import series


@dataclass(frozen=True)
class Panel:
    slug: str  # file name of the figure
    title: str
    keys: tuple[tuple[str, str], ...]  # (metrics key, label); the first is drawn solid
    ylabel: str


PANELS = (
    Panel("accuracy", "Accuracy and reward",
          (("accuracy", "train accuracy"), ("eval/accuracy", "held-out pass@1"), ("reward", "reward")), "value"),
    Panel("length", "Response length", (("response_length_mean", "mean"), ("response_length_p90", "p90")), "tokens"),
    Panel("reflection", "Reflection", (("reflection_rate", "completions with a reflection"),), "share"),
    Panel("language", "Language mixing", (("language_mixing_rate", "CoT words off the prompt's language"),), "share"),
    Panel("entropy", "Policy entropy", (("entropy", "entropy"),), "nats / token"),
    Panel("kl", "KL to the reference", (("kl", "KL (k3)"),), "nats"),
)

_STYLES = ("-", "--", ":")


@dataclass(frozen=True)
class RunSeries:
    name: str
    rows: Sequence[Mapping]  # metrics.jsonl
    aha_step: int | None = None


def draw_panel(panel: Panel, runs: Sequence[RunSeries], path: Path, dpi: int = 110) -> bool:
    """Write `panel` for all runs to `path`; False (and a figure saying so) when no run logged it."""
    fig = Figure(figsize=(6.4, 3.6), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = False
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        for (key, label), style in zip(panel.keys, _STYLES):
            steps, values = series(run.rows, key)
            if not steps.size:
                continue
            drawn = True
            name = f"{run.name} · {label}" if len(runs) > 1 else label
            _line(ax, steps, values, color, style, name, sparse=key.startswith("eval/"))
        if run.aha_step is not None:
            ax.axvline(run.aha_step, color=color, linestyle="-.", linewidth=1.2, alpha=0.8,
                       label=f"aha · {run.name}" if len(runs) > 1 else "aha step")
    ax.set_title(panel.title)
    if drawn:
        ax.set_xlabel("step")
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", fontsize=14, color="0.4", transform=ax.transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return drawn


def _line(ax, steps: np.ndarray, values: np.ndarray, color: str, style: str, label: str, sparse: bool) -> None:
    if sparse or steps.size < 20:
        ax.plot(steps, values, style, color=color, marker="o", markersize=3, linewidth=1.4, label=label)
        return
    # Per-step RL curves are noisy: the raw series faint, an EMA bold, so trends read at a glance.
    ax.plot(steps, values, style, color=color, alpha=0.25, linewidth=0.8)
    ax.plot(steps, ema(values, span=max(5, steps.size // 30)), style, color=color, linewidth=1.8, label=label)


def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average with α = 2/(span+1), started at the first value."""
    alpha = 2.0 / (span + 1.0)
    out = np.empty_like(values, dtype=float)
    acc = float(values[0])
    for i, v in enumerate(values):
        acc = alpha * float(v) + (1.0 - alpha) * acc
        out[i] = acc
    return out

