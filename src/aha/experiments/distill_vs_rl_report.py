"""The distill-vs-RL report: `report.html` (self-contained: inline style, the figure as a base64
PNG, no script) and `figures/accuracy-vs-flops.png` beside it, from `results.json`'s contents."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aha.observe.cost import format_flops
from aha.observe.report import CSS

_ARMS = (("rl", "RL (GRPO) student", "C0", "o"), ("distill", "distilled student", "C1", "s"))
_SEED_STYLES = ("-", "--", ":", "-.")

_CSS = CSS + """
.why{color:#666;font-size:.9em} .verdict{font-size:1.1em;font-weight:bold}
"""


def draw_curves(per_seed: list[dict], path: Path, dpi: int = 110) -> Path:
    """Held-out pass@1 against training FLOPs: each seed's two arms, the teacher's level, and the
    equal-FLOPs budget the seed is compared at."""
    fig = Figure(figsize=(7.5, 4.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, result in enumerate(per_seed):
        style = _SEED_STYLES[i % len(_SEED_STYLES)]
        for arm, label, color, marker in _ARMS:
            points = result[arm]["points"]
            ax.plot([p["flops"] for p in points], [p["pass@1"] for p in points], style, color=color, marker=marker,
                    markersize=4, linewidth=1.4, label=f"{label}, seed {result['seed']}")
        ax.axhline(result["teacher"]["pass@1"], color="C2", linestyle=style, linewidth=0.9, alpha=0.7,
                   label=f"teacher, seed {result['seed']}")
        ax.axvline(result["comparison"]["budget_flops"], color="0.5", linestyle=style, linewidth=0.8, alpha=0.6)
    ax.set_xlabel("training FLOPs (teacher sampling counted for distillation; grey: equal-FLOPs budget)")
    ax.set_ylabel("held-out pass@1")
    ax.set_title("Distillation vs RL on the same small student")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def write_report(results: dict, out_dir: Path) -> Path:
    """`out_dir/report.html` for `results` (what `distill_vs_rl.run` writes to results.json)."""
    per_seed, summary = results["per_seed"], results["summary"]
    png = draw_curves(per_seed, out_dir / "figures" / "accuracy-vs-flops.png")
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    first = per_seed[0]
    student, teacher = first["student"], first["teacher"]
    body = [
        "<h1>Table 6 in miniature: distillation vs RL at equal FLOPs</h1>",
        f"<p class=\"verdict\">{_e(summary['verdict'])}</p>",
        "<p class=\"why\">DeepSeek-R1 Table 6: Qwen-32B-Base after large-scale RL 47.0 on AIME 2024, distilled from "
        "R1 72.6. Here: the teacher is <code>aha zero</code> (default size, "
        f"{_int(teacher.get('parameters'))} non-embedding parameters); the student ({_shape(student['shape'])}) "
        "starts from its own base, pretrained on the same corpus. Pass@1 on held-out problems, k samples at T 0.6, "
        "top-p 0.95, one instrument for every model. FLOPs: 2·N per token forward, 6·N per token trained "
        "(N non-embedding); distillation pays for the teacher's sampling at the teacher's N; evaluation and "
        "pretraining are counted for neither arm, the teacher's own RL is not charged to distillation.</p>",
        _seed_table(summary), f"<p class=\"why\">Budget rule: {_e(first['comparison']['rule'])}. Interval: "
        f"{_e(summary['interval'])}. With the teacher's sampling left uncharged (the paper compares training "
        f"runs only), distilled − RL averages {100 * summary['mean_difference_teacher_sampling_not_charged']:+.1f} "
        "points at that view's largest common budget.</p>",
        f'<figure><img alt="pass@1 against FLOPs" src="data:image/png;base64,{image}"></figure>',
        "<h2>Shared and separate costs</h2>", _cost_table(per_seed),
        "<h2>Every point</h2>", *[_points_table(r) for r in per_seed],
    ]
    page = (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>distill vs RL</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    out = out_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _seed_table(summary: dict) -> str:
    rows = ["<table><tr><th>seed</th><th>equal-FLOPs budget</th><th>teacher</th><th>RL student</th>"
            "<th>distilled student</th><th>distilled − RL</th><th>reflection: teacher / RL / distilled "
            "(last points)</th></tr>"]
    for r in summary["rows"]:
        reflection = " / ".join(_pct(v) for v in (r["teacher_reflection"], r["reflection"]["rl"],
                                                  r["reflection"]["distill"]))
        rows.append(f"<tr><td>{r['seed']}</td><td>{format_flops(r['budget_flops'])}</td><td>{r['teacher']:.3f}</td>"
                    f"<td>{r['rl']:.3f}</td><td>{r['distill']:.3f}</td><td>{100 * r['difference']:+.1f} pts</td>"
                    f"<td>{reflection}</td></tr>")
    m, (low, high) = summary["mean"], summary["difference_ci95"]
    rows.append(f"<tr><th>mean</th><td></td><td>{m['teacher']:.3f}</td><td>{m['rl']:.3f}</td><td>{m['distill']:.3f}</td>"
                f"<td>{100 * m['difference']:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}]</td><td></td></tr>")
    return "".join(rows) + "</table>"


def _pct(value) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, float) else "—"


def _cost_table(per_seed: list[dict]) -> str:
    rows = ["<table><tr><th>seed</th><th>teacher's RL (not charged)</th><th>RL arm, final</th>"
            "<th>distill arm, final</th><th>wall: teacher / RL / distill / student base</th></tr>"]
    for r in per_seed:
        c, w = r["comparison"], r["wall_seconds"]
        wall = " / ".join(f"{w.get(k, 0.0):.0f} s" for k in ("teacher", "rl", "distill", "student_base"))
        teacher_flops = r["teacher"].get("rl_flops")
        rows.append(f"<tr><td>{r['seed']}</td><td>{format_flops(teacher_flops) if teacher_flops else '—'}</td>"
                    f"<td>{format_flops(c['rl_final']['flops'])}</td><td>{format_flops(c['distill_final']['flops'])}"
                    f"</td><td>{wall}</td></tr>")
    s = per_seed[0]["student"]
    note = (f"<p class=\"why\">The student base (shared by both arms and all seeds, not compared): "
            f"{s['pretrain_tokens']:,} tokens, {s['pretrain_wall_seconds']:.0f} s to build (once; cached).</p>")
    return "".join(rows) + "</table>" + note


def _points_table(result: dict) -> str:
    rows = [f"<h3>seed {result['seed']}</h3><table><tr><th>point</th><th>training FLOPs</th><th>pass@1</th>"
            "<th>95% interval</th><th>reflection</th><th>length</th><th>detail</th></tr>"]
    for arm in ("rl", "distill"):
        for p in result[arm]["points"]:
            detail = (f"{p['trained_rows']} rows from {p['problems']} teacher problems, sampling "
                      f"{format_flops(p['teacher_sampling_flops'])}" if "problems" in p else "")
            rows.append(f"<tr><td>{_e(arm + ' · ' + p['name'])}</td><td>{format_flops(p['flops'])}</td>"
                        f"<td>{p['pass@1']:.3f}</td><td>[{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}]</td>"
                        f"<td>{_pct(p.get('reflection_rate'))}</td><td>{p.get('response_length_mean', 0):.1f}</td>"
                        f"<td>{_e(detail)}</td></tr>")
    return "".join(rows) + "</table>"


def _shape(shape: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in shape.items())


def _int(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
