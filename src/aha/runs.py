"""Run-directory layout, append-only logs, atomic checkpoints and resume.

runs/<name>/
  config.yaml          the resolved config
  metrics.jsonl        one line per step
  samples.jsonl        some completions per step
  summary.json         headline numbers and the cost ledger
  checkpoint-<step>/   HF model dir + tokenizer + trainer_state.pt (optimizer, scheduler, step, …)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def fresh_run_dir(out_dir: str, name: str, force: bool = False) -> Path:
    """A new directory for the run; never reuses one that holds files (nothing is overwritten):
    `name`, then `name-2`, `name-3`, … With `force`, an existing `name` is emptied and reused."""
    root = Path(out_dir)
    candidate, n = root / name, 1
    if force and candidate.is_dir():
        shutil.rmtree(candidate)
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = root / f"{name}-{n}"
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


def has_progress(run_dir: Path) -> bool:
    """Whether a run directory holds anything worth keeping: a checkpoint, a logged step, sampled
    records, a finished summary — or, for a pipeline, a stage directory that holds any of these."""
    if not run_dir.is_dir():
        return False
    if latest_checkpoint(run_dir) is not None or (run_dir / "summary.json").exists():
        return True
    if any((run_dir / name).exists() and (run_dir / name).stat().st_size > 0
           for name in ("metrics.jsonl", "records.jsonl")):
        return True
    return any(has_progress(child) for child in run_dir.iterdir() if child.is_dir() and not _CKPT.match(child.name))


@contextmanager
def removed_if_failed(run_dir: Path):
    """A start that fails before any progress (a bad model, a full disk, Ctrl-C during loading)
    leaves no orphan directory behind; one with a checkpoint or a logged step is kept for resume."""
    try:
        yield run_dir
    except BaseException:
        if run_dir.is_dir() and not has_progress(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _plain(value):
    """JSON for what json cannot write itself: numpy/torch scalars as numbers, anything else as text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def json_line(row: dict) -> str:
    return json.dumps(row, default=_plain) + "\n"


def append_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("a") as f:
        f.write("".join(json_line(row) for row in rows))
        f.flush()


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err
    return rows


def repair_jsonl(path: Path) -> bool:
    """Drop a last line that is not valid JSON (a write cut short by a kill); True if one was dropped.
    Any other bad line is an error: that is corruption, not a torn write."""
    if not path.exists():
        return False
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not lines:
        return False
    try:
        json.loads(lines[-1])
        return False
    except json.JSONDecodeError:
        _write_atomic(path, "".join(lines[:-1]))
        return True


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop lines logged after the checkpoint we resume from, so the resumed log equals an
    uninterrupted one."""
    if path.exists():
        kept = [row for row in read_jsonl(path) if row.get("step", 0) <= max_step]
        _write_atomic(path, "".join(json_line(r) for r in kept))


def write_json(path: Path, data: dict) -> None:
    _write_atomic(path, json.dumps(data, indent=2, default=float) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, trainer_state: dict, keep: int = 2,
                    move_in: dict[str, Path] | None = None) -> Path:
    """Write into a temporary folder and rename: a crash mid-save never leaves a half checkpoint
    that resume would pick up. Keeps the newest `keep` checkpoints. `move_in` ({name: folder}):
    folders written beforehand (DeepSpeed's state) that become part of the checkpoint."""
    final = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f".tmp-checkpoint-{step}"
    import torch

    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(trainer_state, tmp / "trainer_state.pt")
    for name, folder in (move_in or {}).items():
        os.replace(folder, tmp / name)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    found = [p for p in run_dir.iterdir() if p.is_dir() and _CKPT.match(p.name)] if run_dir.exists() else []
    return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def model_dir_of(path: Path) -> Path:
    """A model directory, or what a run directory produced: an SFT run's `model/`, else its
    latest checkpoint."""
    if (path / "config.json").is_file():
        return path
    if (path / "model" / "config.json").is_file():
        return path / "model"
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path}: neither a model directory (config.json) nor a run directory with a "
                                "model/ or checkpoint-<step>/ folder")
    return latest
