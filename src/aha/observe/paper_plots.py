"""The figures of `aha paper`'s report: one PNG per finding, every seed drawn, from results.json's
per-seed records. A finding without a figure of its own (or whose data is missing) gets the generic
one: each effect's per-seed values, mean and 95 % interval against zero.

matplotlib's Agg canvas per figure (no global backend switch), as `aha.observe.plots`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aha.observe.plots import ema


def _figure(panels: int) -> tuple[Figure, list]:
    fig = Figure(figsize=(6.4 * panels if panels > 1 else 6.4, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def _curve(ax, steps, values, color, label, style="-") -> None:
    pairs = [(s, v) for s, v in zip(steps, values) if isinstance(v, (int, float)) and math.isfinite(v)]
    if not pairs:
        return
    x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=float)
    if len(x) >= 20:
        ax.plot(x, y, style, color=color, alpha=0.2, linewidth=0.8)
        y = ema(y, span=max(5, len(x) // 30))
    ax.plot(x, y, style, color=color, linewidth=1.6, label=label, marker="o" if len(x) < 20 else None, markersize=3)


def _paired(ax, per_seed: Sequence[Mapping], before: str, after: str, labels: tuple[str, str], title: str,
            scale: float = 100.0) -> None:
    for i, r in enumerate(per_seed):
        ax.plot([0, 1], [r[before] * scale, r[after] * scale], "-o", color=f"C{i % 10}", label=f"seed {r['seed']}")
    ax.set_xticks([0, 1], labels)
    ax.set_xlim(-0.4, 1.4)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def draw_f1(per_seed, fig_axes) -> None:
    fig, (left, right) = fig_axes
    _paired(left, per_seed, "pass1_base", "pass1_final", ("base", "after GRPO"), "Held-out pass@1 (%)")
    for i, r in enumerate(per_seed):
        c = r["curves"]
        _curve(right, c["step"], c["accuracy"], f"C{i % 10}", f"seed {r['seed']} · train accuracy")
        _curve(right, c["step"], c.get("eval/accuracy", []), f"C{i % 10}", f"seed {r['seed']} · held-out", "--")
    right.set(title="Accuracy during GRPO", xlabel="step")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)


def draw_f2(per_seed, fig_axes) -> None:
    fig, (left, right) = fig_axes
    for i, r in enumerate(per_seed):
        c, color = r["curves"], f"C{i % 10}"
        _curve(left, c["step"], c["response_length_mean"], color, f"seed {r['seed']}")
        _curve(right, c["step"], c["reflection_rate"], color, f"seed {r['seed']}")
        if r.get("aha_step") is not None:
            for ax in (left, right):
                ax.axvline(r["aha_step"], color=color, linestyle="-.", linewidth=1.0, alpha=0.8)
    left.set(title="Response length (tokens); -. = aha step", xlabel="step")
    right.set(title="Completions with a self-check", xlabel="step")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def draw_f3(per_seed, fig_axes) -> None:
    fig, (left, right) = fig_axes
    groups = (("base", lambda r: r["accuracy"]["base_mix"]), ("accuracy-only", lambda r: r["accuracy"]["final_mix"]),
              ("+ consistency", lambda r: r["consistency"]["final_mix"]))
    for j, (label, get) in enumerate(groups):
        values = [100 * get(r) for r in per_seed]
        left.bar(j, float(np.mean(values)), color=f"C{j}", alpha=0.5)
        left.plot([j] * len(values), values, "ko", markersize=4)
    left.set_xticks(range(len(groups)), [g[0] for g in groups])
    left.set_title("Held-out language mixing (%), dots = seeds")
    for arm, style in (("accuracy", "-"), ("consistency", "--")):
        for i, r in enumerate(per_seed):
            c = r[arm]["curve"]
            _curve(right, c["step"], [None if v is None else 100 * v for v in c["language_mixing_rate"]],
                   f"C{i % 10}", f"seed {r['seed']} · {arm}", style)
    right.set(title="Mixing during RL (%, T 1.0)", xlabel="step")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=7)


def draw_f4(per_seed, fig_axes) -> None:
    fig, (left, right) = fig_axes
    for i, r in enumerate(per_seed):
        color = f"C{i % 10}"
        curve = r["cold_curve"]
        left.plot([p["step"] for p in curve], [100 * p["accuracy"] for p in curve], "-o", color=color, markersize=3,
                  label=f"seed {r['seed']} · cold start → RL")
        left.axhline(100 * r["target"], color=color, linestyle=":", linewidth=1.0)
        left.plot([0, r["zero_steps"]], [100 * r["zero_base_accuracy"], 100 * r["target"]], "s", color=color,
                  alpha=0.6, markersize=6, label=f"seed {r['seed']} · R1-Zero: base, after its {r['zero_steps']} steps")
        right.plot(range(1, len(r["zero_early_rewards"]) + 1), r["zero_early_rewards"], "--", color=color,
                   label=f"seed {r['seed']} · R1-Zero")
        right.plot(range(1, len(r["cold_early_rewards"]) + 1), r["cold_early_rewards"], "-", color=color,
                   label=f"seed {r['seed']} · cold start")
    left.set(title="Held-out pass@1 (%) vs RL steps; : = zero's final", xlabel="RL step")
    right.set(title="Mean reward per step, early RL", xlabel="RL step")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def draw_f6(per_seed, fig_axes) -> None:
    fig, (left, right) = fig_axes
    for i, r in enumerate(per_seed):
        color = f"C{i % 10}"
        for key, style, what in (("pass_at_k_final", "-o", "final"), ("pass_at_k_base", ":o", "base")):
            ks = sorted(int(k) for k in r[key])
            left.plot(ks, [100 * r[key][str(k)] for k in ks], style, color=color, markersize=3,
                      label=f"seed {r['seed']} · {what}")
    left.set(title="pass@k (unbiased, %)", xlabel="k")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    _paired(right, per_seed, "pass1_final", "cons_final", ("pass@1", f"cons@{per_seed[0]['k']}"),
            "Final policy: pass@1 vs majority vote (%)")


def draw_f5(per_seed, fig_axes) -> None:
    fig, (left, right) = fig_axes
    for i, r in enumerate(per_seed):
        color = f"C{i % 10}"
        for arm, style, what in (("rl", "-o", "RL student"), ("distill", "--s", "distilled student")):
            points = r["curves"][arm]
            left.plot([p["flops"] / 1e9 for p in points], [100 * p["pass@1"] for p in points], style, color=color,
                      markersize=3, label=f"seed {r['seed']} · {what}")
        left.axvline(r["comparison"]["budget_flops"] / 1e9, color=color, linestyle=":", linewidth=1.0)
    left.set(title="Held-out pass@1 (%) vs training GFLOPs; : = equal budget", xlabel="GFLOP")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    _paired(right, [{"seed": r["seed"], "rl": r["comparison"]["rl"], "distill": r["comparison"]["distill"]}
                    for r in per_seed], "rl", "distill", ("RL", "distilled"), "At equal FLOPs: pass@1 (%)")


def draw_effects(finding: Mapping, fig_axes) -> None:
    """Each effect: per-seed dots, the mean and its interval, zero marked (any finding)."""
    fig, (ax,) = fig_axes
    effects = finding.get("effects") or []
    for y, e in enumerate(effects):
        scale = e.get("scale", 1.0)
        ax.plot([v * scale for v in e.get("values", [])], [y] * len(e.get("values", [])), "o", color="C0", alpha=0.6)
        if e.get("low") is not None:
            ax.plot([e["low"] * scale, e["high"] * scale], [y, y], "-", color="C1", linewidth=3)
        ax.plot([e["mean"] * scale], [y], "D", color="C1")
    ax.axvline(0, color="0.3", linewidth=1)
    ax.set_yticks(range(len(effects)), [_short(e["name"]) for e in effects], fontsize=7)
    ax.set_title(f"{finding.get('id', '')}: effects (dots = seeds, bar = 95 % CI)")
    ax.grid(alpha=0.3)


def _short(text: str, width: int = 38) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


SPECIFIC: dict[str, tuple[str, Callable]] = {  # finding: (experiment whose per-seed records it draws, drawer)
    "F1": ("zero", draw_f1), "F2": ("zero", draw_f2), "F3": ("mixing", draw_f3),
    "F4": ("cold_start", draw_f4), "F5": ("distill_vs_rl", draw_f5), "F6": ("zero", draw_f6),
}


def draw_finding(finding: Mapping, per_seed: Sequence[Mapping], path: Path) -> bool:
    """Write the finding's figure as a PNG: its own when it has one and the records fit it (True),
    else the generic effects plot (False)."""
    fig, axes = _figure(2)
    specific = finding["id"] in SPECIFIC
    try:
        if not specific:
            raise KeyError(finding["id"])
        SPECIFIC[finding["id"]][1](per_seed, (fig, axes))
    except (KeyError, TypeError, ValueError, IndexError):  # no drawer, or records of another shape
        specific = False
        fig, axes = _figure(1)
        draw_effects(finding, (fig, axes))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return specific
