"""What every `aha paper` experiment does around its stages: pick the schedule, run a stage in this
process so that a killed run continues where it stopped, evaluate a model once, and split its cost.

Resumable by construction: a stage's run directory with `summary.json` at the wanted length is
read, not rerun; one with a checkpoint is resumed by the stage itself (exactly, as `aha zero
--resume` does); one with neither (killed before its first checkpoint) is emptied and started
again, so no stale log line survives into the new run.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Mapping

from aha import runs
from aha.events import Events

SCHEDULE_ENV = "AHA_PAPER_SCHEDULE"  # "tiny": the test schedule (seconds per experiment), never for results
SCHEDULES = ("full", "quick", "tiny")


def schedule(quick: bool) -> str:
    """"full", "quick", or "tiny" when $AHA_PAPER_SCHEDULE says so (the tests' schedule)."""
    forced = os.environ.get(SCHEDULE_ENV, "")
    if forced:
        if forced not in SCHEDULES:
            raise ValueError(f"${SCHEDULE_ENV}={forced!r}: expected one of {', '.join(SCHEDULES)}")
        return forced
    return "quick" if quick else "full"


def recipe(name: str) -> Path:
    """A bundled recipe's path (aha/recipes/NAME.yaml)."""
    path = resources.files("aha") / "recipes" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no bundled recipe {name!r}")
    return Path(str(path))


def zero_config(source: str | Path, run_dir: Path, overrides: list[str]):
    """A validated ZeroConfig from a bundled recipe name or a config.yaml, writing into `run_dir`."""
    from aha.config import ZeroConfig, load_config

    path = Path(source) if Path(source).suffix == ".yaml" else recipe(str(source))
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return load_config(ZeroConfig, path, [f"run.out_dir={run_dir.parent}", f"run.name={run_dir.name}", *overrides])


def _finished(run_dir: Path, steps: int | None) -> dict | None:
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return summary if steps is None or summary.get("steps") == steps else None


def _clear_if_unstarted(run_dir: Path) -> None:
    # Killed before its first checkpoint: nothing to resume from, and its logs would be stale.
    if run_dir.exists() and runs.latest_checkpoint(run_dir) is None:
        shutil.rmtree(run_dir)


def run_grpo(cfg, run_dir: Path, events: Events | None = None) -> dict:
    """`aha.stages.grpo.run`, resumable: finished runs are read; checkpointed ones continue."""
    from aha.stages import grpo

    done = _finished(run_dir, cfg.grpo.steps)
    if done is not None:
        return done
    _clear_if_unstarted(run_dir)
    return grpo.run(cfg, run_dir, events)


def run_sft(cfg, run_dir: Path, events: Events | None = None) -> dict:
    """`aha.stages.sft.run`, resumable like `run_grpo`."""
    from aha.stages import sft

    done = _finished(run_dir, None)
    if done is not None:
        return done
    _clear_if_unstarted(run_dir)
    return sft.run(cfg, run_dir, events)


def run_eval(model_dir: Path, settings, out_dir: Path, events: Events | None = None) -> dict:
    """`aha eval` of a model directory (paper protocol, records kept); read back when done before
    with the same settings."""
    from dataclasses import asdict

    from aha.stages import paper_eval

    path = out_dir / "eval.json"
    if path.exists():
        report = json.loads(path.read_text())
        if report.get("settings") == asdict(settings):
            return report
    if events is not None:
        events.info(f"evaluating {model_dir.name}: {settings.problems} held-out problems × {settings.k} samples "
                    f"(T {settings.temperature}, top-p {settings.top_p})")
    return paper_eval.run(str(model_dir), settings, out_dir)


def per_problem(eval_dir: Path) -> dict[str, tuple[float, float]]:
    """{prompt_id: (share of samples correct, majority answer correct)} from an eval's records."""
    groups: dict[str, list[dict]] = {}
    for row in runs.read_jsonl(eval_dir / "records.jsonl"):
        groups.setdefault(row["prompt_id"], []).append(row)
    out = {}
    for pid, rows in groups.items():
        share = sum(bool(r["correct"]) for r in rows) / len(rows)
        # The vote is one of the sampled answers; it is right when a sample with that answer was.
        voted = any(r["correct"] and r["answer"] == r["voted"] for r in rows) if rows[0]["voted"] is not None else False
        out[pid] = (share, float(voted))
    return out


def paired_bootstrap(after: Mapping[str, float], before: Mapping[str, float], seed: int) -> tuple[float, float]:
    """95 % percentile-bootstrap interval over problems of mean(after − before), paired by problem."""
    from aha.algo.intervals import bootstrap_ci

    common = sorted(set(after) & set(before))
    if not common:
        raise ValueError("paired bootstrap: no problem in common")
    return bootstrap_ci([after[p] - before[p] for p in common], seed=seed)


def split_cost(cost: Mapping | None, base_key: str | None = None) -> tuple[dict, dict]:
    """A stage's ledger without its "pretrain" phase, and {base_key: that phase}: the embedded base
    is built once and shared by every run on it, so `aha paper` counts it once, not per run."""
    if not cost:
        return {"params": 0, "phases": {}}, {}
    phases = dict(cost.get("phases", {}))
    built = phases.pop("pretrain", None)
    bases = {base_key: built} if built is not None and base_key else {}
    return {"params": cost.get("params", 0), "param_kind": cost.get("param_kind", ""), "phases": phases}, bases


def merge_costs(ledgers: list[Mapping]) -> dict:
    """Plain sums of several ledgers' phases (FLOPs were computed per stage, so they add)."""
    from aha.observe.cost import CostLedger

    total = CostLedger()
    for ledger in ledgers:
        if ledger and ledger.get("phases"):
            total = total.merge(CostLedger.from_dict(ledger))
    return total.to_dict()


def eval_cost(report: Mapping, n_params: int) -> dict:
    """A ledger holding one evaluation (`aha eval` reports tokens and seconds, not a ledger)."""
    from aha.observe.cost import CostLedger

    ledger = CostLedger(n_params)
    ledger.add("eval", seconds=float(report.get("seconds", 0.0)), tokens_generated=int(report.get("tokens_generated", 0)))
    return ledger.to_dict()


def base_key(cfg) -> str | None:
    """The embedded base's directory name (its cache key), or None for a user's model."""
    from aha.stages.pretrain import base_model_dir

    return base_model_dir(cfg.model, cfg.pretrain, cfg.task).name if cfg.model.path == "embedded" else None


def first_last(rows: list[dict], key: str, share: float = 0.1) -> tuple[float, float]:
    """Mean of `key` over the first and the last `share` of the logged steps.

    >>> first_last([{"x": v} for v in range(10)], "x")
    (0.0, 9.0)
    """
    values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    if not values:
        raise ValueError(f"no {key!r} logged")
    n = max(1, int(len(values) * share))
    return sum(values[:n]) / n, sum(values[-n:]) / n


def downsample(rows: list[dict], keys: tuple[str, ...], points: int = 200) -> dict[str, list]:
    """{"step": [...], key: [...]} at ≤ `points` evenly spaced steps (for the report's curves)."""
    stride = max(1, -(-len(rows) // points))
    kept = rows[::stride]
    if rows and kept[-1] is not rows[-1]:
        kept.append(rows[-1])
    return {"step": [int(r["step"]) for r in kept], **{k: [r.get(k) for r in kept] for k in keys}}
