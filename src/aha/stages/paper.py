"""`aha paper`: the R1 paper's findings F1–F6 measured over seeds, with intervals, in one report.

Reads top-down: settings → the state file (which (experiment, seed) cells are finished) → the cells
in sequence, seed by seed and within a seed experiment by experiment (`aha.experiments.EXPERIMENTS`),
each cell's result saved to the state file the moment it finishes → each experiment's `summarize`
over the seeds → `results.json` and the self-contained `report.html`.

Resumable: a killed `aha paper` (Ctrl-C, SIGTERM, a crash, a power cut) is continued by running it
again with the same --out. Finished cells are read back; the cell it stopped in starts again, and
its stages resume from their own checkpoints (`aha.experiments.runner`). An experiment module that
is not installed is reported as not run; one that fails is reported as failed, the others go on.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from aha import runs
from aha.events import Events
from aha.experiments import EXPERIMENTS, runner
from aha.experiments.verdict import finding_verdict
from aha.train.signals import StopRequested

STATE = "state.json"
FINDINGS = {  # shown for findings whose experiment did not run (the modules bring their own text)
    "F1": ("Pure RL lifts a base model", "AIME 15.6 → 71.0 (R1-Zero)"),
    "F2": ("The aha moment: longer thinking, lasting self-checks", "Fig. 3, Table 3"),
    "F3": ("Language mixing appears; the consistency reward removes it at a small cost", "§2.3.2"),
    "F4": ("Cold start steadies and speeds early RL", "§2.3.1"),
    "F5": ("Distillation beats RL on a small student", "Table 6"),
    "F6": ("Majority vote beats pass@1", "86.7 vs 71.0"),
}


@dataclass(frozen=True)
class PaperSettings:
    seeds: int = 3  # seeds 0 … seeds-1, each run through every experiment
    quick: bool = False  # one seed, shorter schedules: a first look, not a result

    def validate(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"--seeds: expected ≥ 1, got {self.seeds}")


def run(settings: PaperSettings, out_dir: Path, events: Events | None = None) -> dict:
    """Run every unfinished cell, then summarize and write results.json and report.html."""
    settings.validate()
    events = (events or Events()).for_stage("paper")
    schedule = runner.schedule(settings.quick)
    seeds = list(range(settings.seeds))
    state = load_state(out_dir, schedule)
    state["loadavg_start"] = state.get("loadavg_start") or list(os.getloadavg())
    cells = [(name, seed) for seed in seeds for name in EXPERIMENTS]
    for number, (name, seed) in enumerate(cells, 1):
        key = f"{name}/{seed}"
        if key in state["cells"]:
            continue
        module = load_experiment(name)
        if isinstance(module, str):
            state["missing"][name] = module
            continue
        events.info(f"[{number}/{len(cells)}] {name} (findings {', '.join(EXPERIMENTS[name][1])}), seed {seed}"
                    + (" — continuing where it stopped" if key in state["seconds"] else ""))
        run_cell(module, key, out_dir / "runs" / name / f"seed-{seed}", seed, settings.quick, state, out_dir, events)
    state["loadavg_end"] = list(os.getloadavg())
    save_state(out_dir, state)
    results = summarize(state, seeds, schedule, settings)
    runs.write_json(out_dir / "results.json", results)
    from aha.observe.paper_report import write_report

    results["report"] = str(write_report(results, out_dir))
    events.done(results)
    return results


def run_cell(module, key: str, cell_dir: Path, seed: int, quick: bool, state: dict, out_dir: Path,
             events: Events) -> None:
    """One experiment for one seed; its seconds count even when it is stopped, and a failure is
    recorded (with the traceback in the cell's directory) instead of ending the other cells."""
    start, cpu = time.time(), time.process_time()
    try:
        result = module.run_seed(cell_dir, seed, quick, events)
        state["cells"][key] = result
        state["failed"].pop(key, None)
        events.info(f"{key} done in {(time.time() - start) / 60:.1f} min")
    except StopRequested:  # SIGTERM or Ctrl-C: the stage saved a checkpoint; `aha paper` stops here too
        raise
    except Exception as err:  # noqa: BLE001 — one experiment's failure must not lose the others
        cell_dir.mkdir(parents=True, exist_ok=True)
        (cell_dir / "error.txt").write_text(traceback.format_exc())
        state["failed"][key] = f"{type(err).__name__}: {err}"
        events.warning(f"{key} failed: {err} (traceback in {cell_dir / 'error.txt'}); the other cells go on")
    finally:  # Ctrl-C and SIGTERM included: the state keeps what finished and the time spent
        state["seconds"][key] = state["seconds"].get(key, 0.0) + time.time() - start
        # CPU seconds (all threads) beside wall seconds: on a shared machine, wall time measures the neighbours too.
        state["cpu_seconds"][key] = state["cpu_seconds"].get(key, 0.0) + time.process_time() - cpu
        save_state(out_dir, state)


def load_experiment(name: str):
    """The experiment's module, or a line saying why it is not available."""
    module_name = EXPERIMENTS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        # The experiment (or the aha.experiments module it wraps) is not installed; anything else
        # missing is a real error.
        if not (err.name or "").startswith("aha.experiments."):
            raise
        return "not run: experiment not available"


def load_state(out_dir: Path, schedule: str) -> dict:
    """The state file, or a fresh one; a state of another schedule is refused (its cells measured
    something else)."""
    path = out_dir / STATE
    if not path.exists():
        return {"schedule": schedule, "cells": {}, "seconds": {}, "cpu_seconds": {}, "failed": {}, "missing": {}}
    state = json.loads(path.read_text())
    state.setdefault("cpu_seconds", {})
    if state.get("schedule") != schedule:
        raise ValueError(f"{out_dir}: holds cells of the {state.get('schedule')!r} schedule, not {schedule!r}; "
                         "use another --out, or --fresh to start over")
    state["missing"] = {}  # looked up again: the module may have been installed since
    return state


def save_state(out_dir: Path, state: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    runs.write_json(out_dir / STATE, state)


def summarize(state: dict, seeds: list[int], schedule: str, settings: PaperSettings) -> dict:
    """Findings over the seeds that finished, the summed cost, and the record of the runs."""
    findings, per_seed = {}, {}
    for name, (module_name, ids) in EXPERIMENTS.items():
        rows = [state["cells"][f"{name}/{s}"] for s in seeds if f"{name}/{s}" in state["cells"]]
        per_seed[name] = rows
        findings.update(_findings_of(name, ids, rows, state, seeds))
    keys = [f"{n}/{s}" for s in seeds for n in EXPERIMENTS if f"{n}/{s}" in state["cells"]]
    ledgers = [state["cells"][k].get("cost") for k in keys]
    bases: dict = {}
    for k in keys:
        bases.update(state["cells"][k].get("bases") or {})
    return {
        "settings": asdict(settings), "schedule": schedule, "seeds": seeds,
        "findings": {fid: findings[fid] for fid in sorted(findings)},
        "per_seed": per_seed,
        "cost": {"runs": runner.merge_costs([c for c in ledgers if isinstance(c, dict)]),
                 "by_experiment": {n: runner.merge_costs([c.get("cost") for c in per_seed[n]
                                                          if isinstance(c.get("cost"), dict)]) for n in EXPERIMENTS},
                 "bases": bases, "cells_without_ledger": [k for k, c in zip(keys, ledgers) if not isinstance(c, dict)]},
        "seconds": {k: state["seconds"].get(k, 0.0) for k in state["seconds"]},
        "wall_seconds": sum(state["seconds"].values()),
        "cpu_seconds": dict(state["cpu_seconds"]),
        "schedules": {name: _describe(name, schedule) for name in EXPERIMENTS},
        "failed": state["failed"], "missing": state["missing"],
        "loadavg": {"start": state.get("loadavg_start"), "end": state.get("loadavg_end")},
    }


def _findings_of(name: str, ids: tuple, rows: list[dict], state: dict, seeds: list[int]) -> dict:
    """The experiment's finding records, or records saying why there are none."""
    failed = [f"seed {k.split('/')[1]}: {v}" for k, v in state["failed"].items() if k.split("/")[0] == name]
    if not rows:
        why = state["missing"].get(name) or ("not run: failed — " + "; ".join(failed) if failed else "not run yet")
        return {fid: _not_run(fid, why) for fid in ids}
    module = load_experiment(name)
    try:
        out = module.summarize(rows)
    except Exception as err:  # noqa: BLE001 — a broken summary is reported, the other findings still are
        return {fid: _not_run(fid, f"not summarized: {type(err).__name__}: {err}") for fid in ids}
    records = out if all(fid in out for fid in ids) else {ids[0]: out}
    note = f"{len(rows)} of {len(seeds)} seeds finished" + (f" ({'; '.join(failed)})" if failed else "")
    return {fid: normalize(fid, records[fid], note if len(rows) < len(seeds) else "") for fid in ids}


def _describe(name: str, schedule: str) -> str:
    module = load_experiment(name)
    if isinstance(module, str):
        return module
    if hasattr(module, "describe"):
        return module.describe(schedule)
    return json.dumps(getattr(module, "SCHEDULES", {}).get(schedule, "schedule not described"))


def _not_run(fid: str, why: str) -> dict:
    title, paper = FINDINGS[fid]
    return {"id": fid, "title": title, "paper": paper, "effects": [], "shows": why, "verdict": "not run",
            "mean": None, "low": None, "high": None, "excludes_zero": None, "direction_matches_paper": None}


def normalize(fid: str, record: dict, note: str = "") -> dict:
    """A finding record with every key the report reads. Records from `verdict.finding` pass as
    they are; a record with only a headline (mean and an interval as low/high, ci_low/ci_high or
    ci95) gets one effect built from it."""
    title, paper = FINDINGS[fid]
    out = {"id": fid, "title": title, "paper": paper, **record}
    if not out.get("effects"):
        low = record.get("low", record.get("ci_low", (record.get("ci95") or [None, None])[0]))
        high = record.get("high", record.get("ci_high", (record.get("ci95") or [None, None])[1]))
        mean = record.get("mean", record.get("effect_mean"))
        if mean is not None:
            from aha.experiments.verdict import judge

            sign = record.get("paper_sign") or (1 if record.get("direction_matches_paper", True) == (mean > 0) else -1)
            judged = judge(mean, float("nan") if low is None else low, float("nan") if high is None else high, sign)
            out["effects"] = [{"name": record.get("effect", "effect"), "unit": record.get("unit", ""), "scale": 1.0,
                               "values": record.get("values", [mean]), "mean": mean, "low": low, "high": high,
                               "interval": record.get("interval", "as reported"), "paper_sign": sign,
                               "required": True, **judged}]
    out.setdefault("shows", record.get("miniature", record.get("what_the_miniature_shows", "")))
    out["paper"] = record.get("paper", record.get("paper_figure", paper))
    if out.get("effects") and out.get("verdict") not in ("reproduced", "partly reproduced", "not reproduced",
                                                         "undecided"):
        out["verdict"] = finding_verdict(out["effects"])
    out["note"] = note
    return out
