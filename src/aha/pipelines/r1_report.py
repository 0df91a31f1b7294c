"""`aha r1`'s report: one page comparing the stages (accuracy with its interval, length, reflection,
language mixing, readability, reward-model score, cost per stage), the RL stages' training curves
with the R1-Zero run overlaid, and the SFT mix. Self-contained HTML (figures inlined as PNG)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aha import runs
from aha.observe.cost import format_flops
from aha.observe.plots import PANELS, RunSeries, draw_panel
from aha.observe.report import CSS

# (key in compare.json, column title, format)
COLUMNS = (
    ("pass@1", "held-out pass@1", "pct"), ("response_length_mean", "length (tokens)", "num"),
    ("reflection_rate", "reflection", "pct"), ("language_mixing", "mixing", "pct"),
    ("readable_rate", "readable", "pct"), ("rm_score", "RM score (general)", "num"),
    ("rubric", "rubric (general)", "pct"),
)
BARS = (("pass@1", "Held-out pass@1"), ("language_mixing", "Language mixing in the CoT"),
        ("readable_rate", "Readable completions"), ("rm_score", "Reward-model score, general prompts"))
RL_STAGES = ("zero", "reasoning-rl", "all-scenario-rl")


def write_report(pipeline_dir: Path) -> Path:
    comparison = json.loads((pipeline_dir / "compare.json").read_text())
    figures = pipeline_dir / "figures"
    images = [(title, _bar_chart(comparison, key, title, figures / f"bar-{key}.png")) for key, title in BARS
              if any(key in row for row in comparison.values())]
    series = [RunSeries(name, runs.read_jsonl(pipeline_dir / name / "metrics.jsonl"))
              for name in RL_STAGES if (pipeline_dir / name / "metrics.jsonl").exists()]
    for panel in PANELS[:4]:  # accuracy, length, reflection, language: what R1's stages change
        png = figures / f"{panel.slug}.png"
        draw_panel(panel, series, png)
        images.append((panel.title, _b64(png)))
    mix_file = pipeline_dir / "rejection-sft" / "mix.json"
    mix = json.loads(mix_file.read_text()) if mix_file.exists() else {}
    out = pipeline_dir / "report.html"
    tmp = out.with_name("report.html.tmp")
    tmp.write_text(_page(pipeline_dir.name, comparison, images, mix), encoding="utf-8")
    tmp.replace(out)
    return out


def _page(name: str, comparison: dict, images, mix: dict) -> str:
    body = [f"<h1>aha r1 — {html.escape(name)}</h1>",
            "<p>Every stage's model on the same held-out problems (k samples at T 0.6, top-p 0.95); "
            "the interval is a bootstrap 95 % over problems. Cost is the stage's own (the base's build "
            "is shared by all).</p>", stage_table(comparison), "<h2>Stages</h2>", '<div class="grid">']
    for title, data in images:
        body.append(f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}"></figure>')
    body.append("</div>")
    if mix:
        body.append("<h2>Rejection-sampling SFT mix</h2><pre>" + html.escape(json.dumps(mix, indent=2)) + "</pre>")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>aha r1 — {html.escape(name)}'
            f"</title><style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def stage_table(comparison: dict) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in COLUMNS)
    rows = [f"<table><tr><th>stage</th>{head}<th>FLOPs</th><th>wall</th></tr>"]
    for stage, row in comparison.items():
        cells = []
        for key, _, kind in COLUMNS:
            value = row.get(key)
            text = "—" if value is None else (f"{value:.1%}" if kind == "pct" else f"{value:.2f}")
            if key == "pass@1" and "pass@1_ci95" in row:
                low, high = row["pass@1_ci95"]
                text += f" [{low:.1%}, {high:.1%}]"
            cells.append(f"<td>{text}</td>")
        cost = row.get("cost") or {}
        flops = format_flops(cost["flops"]) if cost.get("flops") else "—"
        wall = f"{cost['seconds'] / 60:.1f} min" if cost.get("seconds") else "—"
        rows.append(f"<tr><td>{html.escape(stage)}</td>{''.join(cells)}<td>{flops}</td><td>{wall}</td></tr>")
    return "".join(rows) + "</table>"


def _bar_chart(comparison: dict, key: str, title: str, path: Path) -> str:
    names = [name for name, row in comparison.items() if row.get(key) is not None]
    values = np.array([comparison[name][key] for name in names], dtype=float)
    fig = Figure(figsize=(6.4, 3.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(names)), values, color=[f"C{i % 10}" for i in range(len(names))])
    if key == "pass@1":  # the bootstrap interval as error bars
        lows = [comparison[n]["pass@1_ci95"][0] for n in names]
        highs = [comparison[n]["pass@1_ci95"][1] for n in names]
        ax.errorbar(range(len(names)), values, yerr=[values - lows, np.array(highs) - values], fmt="none",
                    ecolor="black", capsize=3)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return _b64(path)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")
