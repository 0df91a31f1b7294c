"""Rows of a problem file (JSONL, JSONL.gz or parquet) with errors that name file, line and field.

Shared by the benchmark tasks and by users' own training files, so a file in the shape of the
packaged benchmarks, or with open-r1's `problem`/`solution`/`answer` columns, loads as it is.
"""

from __future__ import annotations

import gzip
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

T = TypeVar("T")


class RecordError(ValueError):
    """A problem file is missing, unreadable, or a row lacks what the task needs."""


def packaged(name: str) -> Path:
    """Path of a data file shipped in `aha/data/` (e.g. 'math500/test.jsonl')."""
    return Path(str(resources.files("aha") / "data" / name))


def read_records(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs; line numbers count from 1 (row index + 1 for parquet)."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: file not found")
    if path.suffix == ".parquet":
        return list(enumerate(_read_parquet(path), start=1))
    return list(_read_jsonl(path))


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path}, line {line_no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise RecordError(f"{path}, line {line_no}: expected a JSON object, got {type(row).__name__}")
            yield line_no, row


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RecordError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    return pq.read_table(path).to_pylist()


def field(row: dict, names: Sequence[str], where: str, required: bool = True) -> Any:
    """The first present, non-empty field among `names` (aliases); a clear error when none is."""
    for name in names:
        value = row.get(name)
        if value is not None and value != "":
            return value
    if required:
        alias = " or ".join(repr(n) for n in names)
        raise RecordError(f"{where}: missing field {alias} (row has {', '.join(map(repr, row)) or 'no fields'})")
    return None


def as_text(value: Any, where: str, name: str) -> str:
    """Answers stored as numbers become text; an integral float (`27.0`, AMC) becomes `27`."""
    if isinstance(value, bool):
        raise RecordError(f"{where}: field {name!r} must be text or a number, got a boolean")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float, str)):
        return str(value).strip()
    raise RecordError(f"{where}: field {name!r} must be text or a number, got {type(value).__name__}")


def seeded_sample(items: Sequence[T], n: int, seed: int) -> list[T]:
    """`n` items, the same for the same seed: a seeded shuffle, taken in order; past the end it
    reshuffles (epochs), so a training run may ask for more problems than the file holds.
    `n <= 0` means all items in file order (evaluation)."""
    if n <= 0:
        return list(items)
    if not items:
        raise RecordError("no problems to sample from")
    rng = random.Random(seed)
    out: list[T] = []
    while len(out) < n:
        order = list(items)
        rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out
