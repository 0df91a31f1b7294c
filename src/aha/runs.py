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
from pathlib import Path

import torch

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def fresh_run_dir(out_dir: str, name: str) -> Path:
    """A new directory for the run; never reuses one that holds files (nothing is overwritten):
    `name`, then `name-2`, `name-3`, …"""
    root = Path(out_dir)
    candidate, n = root / name, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = root / f"{name}-{n}"
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


def append_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row, default=float) + "\n")
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


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop lines logged after the checkpoint we resume from, so the resumed log equals an
    uninterrupted one."""
    if path.exists():
        kept = [row for row in read_jsonl(path) if row.get("step", 0) <= max_step]
        _write_atomic(path, "".join(json.dumps(r, default=float) + "\n" for r in kept))


def write_json(path: Path, data: dict) -> None:
    _write_atomic(path, json.dumps(data, indent=2, default=float) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, trainer_state: dict, keep: int = 2) -> Path:
    """Write into a temporary folder and rename: a crash mid-save never leaves a half checkpoint
    that resume would pick up. Keeps the newest `keep` checkpoints."""
    final = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(trainer_state, tmp / "trainer_state.pt")
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
