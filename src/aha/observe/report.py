"""`aha report RUN [RUN …]`: one self-contained HTML page per run (or comparison) and PNGs beside it.

The page works offline: figures are inlined as base64 PNGs, the style is inline, there is no script.
It reads only run-dir files (config.yaml, metrics.jsonl, samples.jsonl, summary.json), so it renders
any run — finished, in progress (`watch`) or from another machine.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import yaml

from aha.observe.aha import AhaResult, Milestone, detect_aha, milestones
from aha.observe.cost import format_flops
from aha.observe.metrics import REFLECTION_LEXICON, marker_spans
from aha.observe.monitors import CHECKS
from aha.observe.plots import PANELS, RunSeries, draw_panel

RUN_FILES = ("config.yaml", "metrics.jsonl", "samples.jsonl", "summary.json")


@dataclass
class Run:
    path: Path
    config_text: str = ""
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; lines that do not parse are skipped, since a run in progress may
    be mid-way through writing its last line when `watch` reads it."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no run directory at {path}")
    run = Run(path, metrics=read_jsonl(path / "metrics.jsonl"), samples=read_jsonl(path / "samples.jsonl"))
    if (path / "config.yaml").exists():
        run.config_text = (path / "config.yaml").read_text(encoding="utf-8")
        loaded = yaml.safe_load(run.config_text)
        run.config = loaded if isinstance(loaded, dict) else {}
    if (path / "summary.json").exists():
        loaded = json.loads((path / "summary.json").read_text(encoding="utf-8") or "{}")
        run.summary = loaded if isinstance(loaded, dict) else {}
    return run


def task_hooks(config: Mapping) -> tuple[tuple[str, ...], object | None]:
    """The run's task reflection markers and its optional `is_self_correction(row, markers)` hook,
    from config.yaml's `task` section; no markers and no hook when the task cannot be built here."""
    from aha.tasks import get_task

    section = config.get("task")
    name = section.get("name") if isinstance(section, Mapping) else section
    options = section.get("options", {}) if isinstance(section, Mapping) else {}
    if not isinstance(name, str):
        return (), None
    try:
        task = get_task(name, **(options or {}))
    except (KeyError, TypeError, ValueError):
        return (), None
    return tuple(getattr(task, "reflection_markers", ())), getattr(task, "is_self_correction", None)


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None, refresh: int | None = None) -> Path:
    """Render the report of one or more runs and return the HTML path.

    One run: RUN/report.html and RUN/figures/<panel>.png. Several: the runs overlaid, written to
    `out` or by default next to the first run as report-<a>-vs-<b>.html with a <stem>-figures/ folder.
    `refresh` (seconds) adds a meta refresh so an open browser tab follows a run in progress.
    """
    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise ValueError("write_report needs at least one run directory")
    if out is None:
        out = runs[0].path / "report.html" if len(runs) == 1 else \
            runs[0].path.parent / f"report-{'-vs-'.join(r.name for r in runs)}.html"
    out = Path(out)
    figures = out.parent / ("figures" if out.name == "report.html" else f"{out.stem}-figures")
    ahas = [detect_aha(r.metrics) for r in runs]
    series = [RunSeries(r.name, r.metrics, a.aha_step) for r, a in zip(runs, ahas)]
    images = []
    for panel in PANELS:
        png = figures / f"{panel.slug}.png"
        drawn = draw_panel(panel, series, png)
        images.append((panel.title, drawn, base64.b64encode(png.read_bytes()).decode("ascii")))
    page = _page(runs, ahas, images, refresh)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)  # atomic: a browser refreshing mid-write never sees half a page
    return out


def watch(run_dirs: Sequence[str | Path] | str | Path, interval: float = 10.0, out: str | Path | None = None,
          max_renders: int | None = None) -> Iterator[Path]:
    """Re-render whenever a run's files change; yields the report path after each render (the caller
    prints it). Stops after rendering once all runs have written summary.json (they finished)."""
    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    last, renders = None, 0
    while max_renders is None or renders < max_renders:
        stamp = tuple(_mtime(Path(d) / f) for d in dirs for f in RUN_FILES)
        done = all((Path(d) / "summary.json").exists() for d in dirs)
        if stamp != last:
            last = stamp
            renders += 1
            yield write_report(dirs, out, refresh=None if done else max(1, int(interval)))
        if done:
            return
        time.sleep(interval)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime_ns if path.exists() else -1.0


# ---------------------------------------------------------------- HTML


# The reports' shared style sheet (the run report, aha r1's, aha paper's, the experiments').
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px}
figure{margin:0;border:1px solid #eee;padding:4px;background:#fff} figure img{width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#666;text-align:center}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
.transcript{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,monospace;background:#fafafa;
 border-left:4px solid #999;padding:.6em;font-size:.9em}
.think{background:#eef4ff} .answer{background:#e8f8e8;font-weight:bold} .tag{color:#888}
mark{background:#ffe08a} .why{color:#666;font-size:.85em} .warn{color:#a40}
"""


def _page(runs: Sequence[Run], ahas: Sequence[AhaResult], images, refresh: int | None) -> str:
    title = "aha report — " + ", ".join(r.name for r in runs)
    head = [f'<meta charset="utf-8"><title>{_e(title)}</title><style>{CSS}</style>']
    if refresh:
        head.append(f'<meta http-equiv="refresh" content="{int(refresh)}">')
    body = [f"<h1>{_e(title)}</h1>", _summary_table(runs, ahas), "<h2>Curves</h2>", '<div class="grid">']
    for caption, drawn, data in images:
        note = "" if drawn else f"<figcaption>{_e(caption)} (not logged)</figcaption>"  # titles are in the PNGs
        body.append(f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">{note}</figure>')
    body.append("</div>")
    for run, aha in zip(runs, ahas):
        body.append(f"<h2>{_e(run.name)}</h2>")
        body += [_monitor_section(run), _milestone_section(run, aha), _cost_section(run), _config_section(run)]
    return "<!doctype html>\n<html lang=\"en\"><head>" + "".join(head) + "</head><body>" + "\n".join(body) + \
        "</body></html>\n"


def _summary_table(runs: Sequence[Run], ahas: Sequence[AhaResult]) -> str:
    rows = ["<table><tr><th>run</th><th>steps</th><th>base acc.</th><th>final acc.</th><th>wall</th>"
            "<th>aha</th></tr>"]
    for run, aha in zip(runs, ahas):
        s = run.summary
        steps = s.get("steps", max((int(r.get("step", 0)) for r in run.metrics), default=0))
        wall = f"{s['wall_seconds'] / 60:.1f} min" if _num(s.get("wall_seconds")) else "—"
        rows.append(f"<tr><td>{_e(run.name)}</td><td>{steps}</td><td>{_pct(s.get('base_accuracy'))}</td>"
                    f"<td>{_pct(s.get('final_accuracy'))}</td><td>{wall}</td><td>{_e(aha.describe())}</td></tr>")
    return "".join(rows) + "</table>"


def _monitor_section(run: Run) -> str:
    lines = []
    for check in CHECKS:
        hits = [int(r["step"]) for r in run.metrics if r.get(f"monitor/{check}") and "step" in r]
        if hits:
            lines.append(f"<li class=\"warn\">{_e(check)}: flagged on {len(hits)} steps, first at step {hits[0]}</li>")
    text = "<ul>" + "".join(lines) + "</ul>" if lines else "<p>No monitor fired.</p>"
    return "<h3>Failure monitors</h3>" + text


def _milestone_section(run: Run, aha: AhaResult) -> str:
    markers, hook = task_hooks(run.config)
    picked = milestones(run.samples, aha, markers=markers, is_self_correction=hook)
    if not picked:
        return "<h3>Milestone transcripts</h3><p>No samples logged.</p>"
    words = tuple(dict.fromkeys([*REFLECTION_LEXICON["en"], *markers]))
    return "<h3>Milestone transcripts</h3>" + "".join(_transcript(m, words) for m in picked)


def _transcript(m: Milestone, markers: Sequence[str]) -> str:
    s = m.sample
    facts = f"step {m.step} · reward {_fmt(s.get('reward'))} · accuracy {_fmt(s.get('accuracy'))} · " \
            f"length {_fmt(s.get('length'))}" + (" · truncated" if s.get("truncated") else "")
    return (f"<h4>{_e(m.title)}</h4><p class=\"why\">{_e(m.why)} — {_e(facts)}</p>"
            f"<p><b>Question:</b> {_e(str(s.get('question', '')))} &nbsp; <b>Reference:</b> "
            f"{_e(str(s.get('reference', '')))}</p><div class=\"transcript\">"
            f"{highlight_completion(str(s.get('completion', '')), markers)}</div>")


def highlight_completion(text: str, markers: Sequence[str] = ()) -> str:
    """HTML for a completion: every piece escaped, `<think>`/`<answer>` bodies tinted, their tags
    greyed, reflection markers inside the think body marked.

    >>> highlight_completion("<think>wait <b></think><answer>1</answer>", ["wait"])
    '<span class="tag">&lt;think&gt;</span><span class="think"><mark>wait</mark> &lt;b&gt;</span><span class="tag">&lt;/think&gt;</span><span class="tag">&lt;answer&gt;</span><span class="answer">1</span><span class="tag">&lt;/answer&gt;</span>'
    """
    out, region = [], None
    for piece in _split_tags(text):
        if piece in ("<think>", "<answer>"):
            region = piece[1:-1]
            out.append(f'<span class="tag">{_e(piece)}</span>')
        elif piece in ("</think>", "</answer>"):
            region = None
            out.append(f'<span class="tag">{_e(piece)}</span>')
        elif region == "think":
            out.append(f'<span class="think">{_mark(piece, markers)}</span>')
        elif region == "answer":
            out.append(f'<span class="answer">{_e(piece)}</span>')
        else:
            out.append(_e(piece))
    return "".join(out)


def _split_tags(text: str) -> list[str]:
    return [p for p in re.split(r"(</?think>|</?answer>)", text) if p]


def _mark(text: str, markers: Sequence[str]) -> str:
    out, pos = [], 0
    for a, b in marker_spans(text, markers):
        out += [_e(text[pos:a]), f"<mark>{_e(text[a:b])}</mark>"]
        pos = b
    return "".join(out) + _e(text[pos:])


def _cost_section(run: Run) -> str:
    cost = run.summary.get("cost")
    if not isinstance(cost, Mapping) or not cost.get("phases"):
        return "<h3>Cost</h3><p>No cost ledger in summary.json.</p>"
    rows = ["<table><tr><th>phase</th><th>calls</th><th>tokens generated</th><th>tokens scored</th>"
            "<th>tokens trained</th><th>FLOPs</th><th>seconds</th></tr>"]
    items = list(cost["phases"].items()) + [("total", cost.get("total", {}))]
    for name, c in items:
        rows.append(f"<tr><td>{_e(name)}</td><td>{c.get('calls', 0)}</td><td>{c.get('tokens_generated', 0):,}</td>"
                    f"<td>{c.get('tokens_forward', 0):,}</td><td>{c.get('tokens_trained', 0):,}</td>"
                    f"<td>{format_flops(float(c.get('flops', 0.0)))}</td><td>{float(c.get('seconds', 0.0)):.1f}</td></tr>")
    note = f"<p class=\"why\">FLOPs: 2·N per token forward, 6·N per token trained; N = {cost.get('params', 0):,} " \
           f"{_e(str(cost.get('param_kind', '')))} parameters; attention FLOPs not counted.</p>"
    return "<h3>Cost</h3>" + "".join(rows) + "</table>" + note


def _config_section(run: Run) -> str:
    if not run.config_text:
        return "<h3>Config</h3><p>No config.yaml.</p>"
    return f"<h3>Config</h3><details><summary>config.yaml</summary><pre>{_e(run.config_text)}</pre></details>"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pct(v) -> str:
    return f"{100 * v:.1f}%" if _num(v) else "—"


def _fmt(v) -> str:
    return f"{v:.3g}" if _num(v) else ("—" if v is None else str(v))
