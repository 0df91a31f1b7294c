"""`aha paper`'s report: one self-contained HTML page (inline style, figures as base64 PNGs, no
script, no network) from results.json — the findings table, one section and figure per finding,
every effect's verdict line, the schedules and the summed cost ledger."""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Mapping

from aha.experiments.verdict import interval_text, verdict_line
from aha.observe.cost import format_flops
from aha.observe.paper_plots import SPECIFIC, draw_finding
from aha.observe.report import CSS

_CSS = CSS + """
th,td{text-align:left} th{background:#f4f4f4} td.num{text-align:right;white-space:nowrap}
.v{font-weight:bold;white-space:nowrap} .reproduced{color:#1a7f37} .partly{color:#9a6700}
.not{color:#b42318} .undecided,.notrun{color:#666} .note{color:#666;font-size:.9em}
.banner{background:#fff4d6;border:1px solid #e8c66a;padding:.6em 1em} ul.lines li{margin:.25em 0}
"""
_CLASS = {"reproduced": "reproduced", "partly reproduced": "partly", "not reproduced": "not", "opposite": "not",
          "undecided": "undecided", "not run": "notrun"}


def write_report(results: Mapping, out_dir: Path) -> Path:
    """report.html and figures/F<n>.png in `out_dir`; returns the page's path."""
    out_dir = Path(out_dir)
    images = {}
    for fid, f in results["findings"].items():
        if not f.get("effects"):
            continue  # not run: nothing to draw
        experiment = SPECIFIC[fid][0] if fid in SPECIFIC else None
        rows = results["per_seed"].get(experiment, []) if experiment else []
        png = out_dir / "figures" / f"{fid}.png"
        draw_finding(f, rows, png)
        images[fid] = base64.b64encode(png.read_bytes()).decode("ascii")
    page = _page(results, images)
    path = out_dir / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def _page(results: Mapping, images: Mapping[str, str]) -> str:
    title = "aha paper — DeepSeek-R1's findings in miniature"
    body = [f"<h1>{_e(title)}</h1>", _intro(results), _findings_table(results)]
    for fid, f in results["findings"].items():
        body.append(_finding_section(f, images.get(fid)))
    body += [_schedule_section(results), _cost_section(results)]
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def _intro(results: Mapping) -> str:
    seeds, schedule = results["seeds"], results["schedule"]
    load = results.get("loadavg") or {}
    lines = [f"<p>Seeds {', '.join(map(str, seeds))} · schedule <b>{_e(schedule)}</b> · compute time of the "
             f"experiments {results['wall_seconds'] / 60:.1f} min · load average (1/5/15 min) at the start "
             f"{_load(load.get('start'))}, at the end {_load(load.get('end'))} · written "
             f"{time.strftime('%Y-%m-%d %H:%M')}.</p>",
             "<p>Every effect is the paper's claim turned into a difference measured on the embedded miniature "
             "(a 0.85 M-parameter Qwen2 on the quotient-digit task), over seeds, with a 95 % interval. "
             "<i>Reproduced</i> means the interval excludes zero on the paper's side; nothing was tuned to agree.</p>"]
    if schedule != "full":
        lines.insert(0, f"<p class=\"banner\">Schedule <b>{_e(schedule)}</b>: one seed and shortened runs — a first "
                        "look, not a result. With one seed there is no seed-to-seed interval; findings measured on "
                        "held-out problems carry a bootstrap interval over problems instead, others stay undecided.</p>")
    return "".join(lines)


def _findings_table(results: Mapping) -> str:
    rows = ["<table><tr><th>finding</th><th>paper</th><th>miniature: headline effect, mean [95 % CI]</th>"
            "<th>verdict</th></tr>"]
    for fid, f in results["findings"].items():
        headline = next((e for e in f.get("effects", []) if e.get("required", True)), None)
        measured = f"{_e(headline['name'])}: <b>{_e(interval_text(headline))}</b>" if headline else _e(f.get("shows", ""))
        rows.append(f"<tr><td><a href=\"#{fid}\">{fid}</a> {_e(f['title'])}</td><td>{_e(f['paper'])}</td>"
                    f"<td>{measured}</td><td>{_verdict(f['verdict'])}</td></tr>")
    return "".join(rows) + "</table>"


def _finding_section(f: Mapping, image: str | None) -> str:
    parts = [f"<h2 id=\"{f['id']}\">{f['id']} — {_e(f['title'])} {_verdict(f['verdict'])}</h2>",
             f"<p><b>Paper:</b> {_e(f.get('paper_detail') or f['paper'])}</p>", f"<p><b>Miniature:</b> {_e(f.get('shows', ''))}</p>"]
    if f.get("note"):
        parts.append(f"<p class=\"note\">{_e(f['note'])}</p>")
    lines = []
    for e in f.get("effects", []):
        role = "" if e.get("required", True) else " <span class=\"note\">(informative: does not decide)</span>"
        lines.append(f"<li>{_e(verdict_line(e))}{role} <span class=\"note\">per seed: "
                     f"{_e(', '.join(_value(v, e) for v in e.get('values', [])))}</span></li>")
    if lines:
        parts.append("<ul class=\"lines\">" + "".join(lines) + "</ul>")
    if image:
        parts.append(f"<figure><img alt=\"{f['id']}: {_e(f['title'])}\" src=\"data:image/png;base64,{image}\"></figure>")
    return "".join(parts)


def _schedule_section(results: Mapping) -> str:
    notes = results.get("schedules") or {}
    items = "".join(f"<li><b>{_e(name)}</b>: {_e(text)}</li>" for name, text in notes.items())
    problems = [f"<li>{_e(k)}: {_e(v)}</li>" for k, v in {**results.get("missing", {}), **results.get("failed", {})}.items()]
    out = "<h2>Schedules</h2><ul>" + items + "</ul>"
    if problems:
        out += "<p>Not run or failed:</p><ul>" + "".join(problems) + "</ul>"
    return out


def _cost_section(results: Mapping) -> str:
    cost = results["cost"]
    rows = ["<table><tr><th>experiment</th><th>tokens generated</th><th>tokens trained</th><th>FLOPs</th>"
            "<th>stage seconds</th><th>wall seconds</th><th>CPU seconds</th></tr>"]
    walls, cpus = results.get("seconds", {}), results.get("cpu_seconds", {})
    of = lambda d, name: sum(v for k, v in d.items() if k.split("/")[0] == name)  # noqa: E731
    for name, ledger in cost["by_experiment"].items():
        rows.append(_cost_row(name, ledger.get("total", {}), of(walls, name), of(cpus, name)))
    rows.append(_cost_row("<b>all runs</b>", cost["runs"].get("total", {}), results["wall_seconds"],
                          sum(cpus.values()), raw=True))
    for key, phase in cost.get("bases", {}).items():
        rows.append(_cost_row(f"embedded base {key} (built once, shipped; counted once)", phase, None, None))
    note = ("<p class=\"note\">Summed from each run's cost ledger (summary.json): FLOPs 2·N per token forward, "
            "6·N per token trained, N the non-embedding parameters; attention FLOPs not counted. Stage seconds are "
            "the ledgers' own; wall seconds are each experiment's time in `aha paper`, model loading included; "
            "CPU seconds add up every thread, and move less than wall seconds when other work shares the machine.")
    if cost.get("cells_without_ledger"):
        note += " Cells without a ledger (not counted): " + _e(", ".join(cost["cells_without_ledger"])) + "."
    return "<h2>Cost</h2>" + "".join(rows) + "</table>" + note + "</p>"


def _cost_row(name: str, c: Mapping, wall: float | None, cpu: float | None, raw: bool = False) -> str:
    label = name if raw else _e(name)
    return (f"<tr><td>{label}</td><td class=\"num\">{int(c.get('tokens_generated', 0)):,}</td>"
            f"<td class=\"num\">{int(c.get('tokens_trained', 0)):,}</td>"
            f"<td class=\"num\">{format_flops(float(c.get('flops', 0.0)))}</td>"
            f"<td class=\"num\">{float(c.get('seconds', 0.0)):.0f}</td>"
            f"<td class=\"num\">{'—' if wall is None else f'{wall:.0f}'}</td>"
            f"<td class=\"num\">{'—' if cpu is None else f'{cpu:.0f}'}</td></tr>")


def _verdict(verdict: str) -> str:
    return f"<span class=\"v {_CLASS.get(verdict, 'undecided')}\">{_e(verdict)}</span>"


def _value(v: float, e: Mapping) -> str:
    return f"{v * e.get('scale', 1.0):+.3g}"


def _load(values) -> str:
    return " / ".join(f"{v:.1f}" for v in values) if values else "—"


def _e(text) -> str:
    return html.escape(str(text), quote=True)
