"""SFT rows → token examples whose loss covers exactly what the model must produce.

Accepted rows (JSONL, JSONL.gz, parquet, or a `datasets` directory saved with `save_to_disk`):
- chat: `messages` (or `conversations`) as {role, content} turns, ShareGPT's {from, value} too.
  Every assistant turn becomes one example: the prompt is the chat template's rendering of the
  turns before it (with the generation prompt), the completion is the turn's content *as written*.
  Chat templates of R1-distill and Qwen3 strip `<think>…</think>` from assistant turns they render
  (DeepSeek-R1#633, TRL #6363): the trained text never goes through the template, so no reasoning
  is eaten.
- prompt/completion: `prompt` + `completion` (or open-r1's `problem`/`question` + `solution`/
  `generation`/`response`/`answer`). Text is used as given: aha's own `aha sample` output already
  holds the rendered prompt.

A row whose completion is cut away entirely by `max_length` is not trained on silently: it is
counted as dropped, with its line, in the summary (TRL PR #6025).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from aha.tasks.records import RecordError, read_records

PROMPT_FIELDS = ("prompt", "problem", "question", "instruction", "input")
COMPLETION_FIELDS = ("completion", "response", "generation", "solution", "output", "answer")
MESSAGE_FIELDS = ("messages", "conversations")
_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant", "bot": "assistant"}


@dataclass(frozen=True)
class Example:
    prompt_ids: list[int]
    completion_ids: list[int]  # the trained tokens (EOS included)
    where: str  # "file, line N" for reports


@dataclass
class Dataset:
    train: list[Example]
    held_out: list[Example]
    dropped: list[str]  # "file, line N: why" for rows that train on nothing


def read_rows(path: str | Path, limit: int = 0) -> list[tuple[str, dict]]:
    """(where, row) pairs from a file or a `datasets` directory."""
    path = Path(path)
    if path.is_dir():
        try:
            from datasets import load_from_disk
        except ImportError:
            raise RecordError(f"{path}: a directory is read as a `datasets` dataset; pip install datasets") from None
        data = load_from_disk(str(path))
        if hasattr(data, "keys") and not hasattr(data, "column_names"):  # a DatasetDict: take "train"
            data = data["train"] if "train" in data else data[next(iter(data.keys()))]
        rows = [(f"{path}, row {i + 1}", dict(row)) for i, row in enumerate(data)]
    else:
        rows = [(f"{path}, line {line}", row) for line, row in read_records(path)]
    if not rows:
        raise RecordError(f"{path}: no rows")
    return rows[:limit] if limit else rows


def detect_format(rows: list[tuple[str, dict]], declared: str) -> str:
    if declared != "auto":
        return declared
    where, first = rows[0]
    if any(k in first for k in MESSAGE_FIELDS):
        return "messages"
    if any(k in first for k in PROMPT_FIELDS) and any(k in first for k in COMPLETION_FIELDS):
        return "prompt_completion"
    raise RecordError(f"{where}: cannot tell the format: expected a 'messages' list, or a prompt field "
                      f"({', '.join(PROMPT_FIELDS)}) and a completion field ({', '.join(COMPLETION_FIELDS)}); "
                      f"got {', '.join(first) or 'no fields'}")


def _text(row: dict, names: tuple, where: str) -> str:
    for name in names:
        if name in row:
            value = row[name]
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                value = value[0]  # open-r1's `generations`-style lists: the first one
            if not isinstance(value, str):
                raise RecordError(f"{where}: field {name!r} must be text, got {type(value).__name__}")
            return value
    raise RecordError(f"{where}: no field among {', '.join(names)}")


def _turns(row: dict, where: str) -> list[dict]:
    name = next(k for k in MESSAGE_FIELDS if k in row)
    turns = row[name]
    if not isinstance(turns, list) or not turns:
        raise RecordError(f"{where}: field {name!r} must be a non-empty list of turns")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError(f"{where}: {name}[{i}] must be an object with role and content")
        role, content = turn.get("role", turn.get("from")), turn.get("content", turn.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            raise RecordError(f"{where}: {name}[{i}] needs text 'role' and 'content' (or 'from' and 'value')")
        out.append({"role": _ROLE_ALIASES.get(role, role), "content": content})
    if not any(t["role"] == "assistant" for t in out):
        raise RecordError(f"{where}: {name} has no assistant turn to train on")
    return out


def pairs(rows: list[tuple[str, dict]], fmt: str, tokenizer) -> list[tuple[str, str, str]]:
    """(where, prompt text, completion text) for every trained turn."""
    out = []
    for where, row in rows:
        if fmt == "prompt_completion":
            out.append((where, _text(row, PROMPT_FIELDS, where), _text(row, COMPLETION_FIELDS, where)))
            continue
        turns = _turns(row, where)
        for i, turn in enumerate(turns):
            if turn["role"] == "assistant":
                prompt = tokenizer.apply_chat_template(turns[:i], tokenize=False, add_generation_prompt=True)
                out.append((f"{where} (turn {i + 1})", prompt, turn["content"]))
    return out


def tokenize(where: str, prompt: str, completion: str, tokenizer, max_length: int) -> Example | str:
    """An Example, or the reason the row trains on nothing. The prompt keeps the tokenizer's own
    special tokens (a BOS where it adds one); the completion gets none but a closing EOS."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and (not completion_ids or completion_ids[-1] != eos):
        completion_ids = completion_ids + [eos]
    if not prompt_ids:
        return f"{where}: the prompt is empty (nothing to condition the completion on)"
    room = max_length - len(prompt_ids)
    if room <= 0:
        return f"{where}: the prompt alone has {len(prompt_ids)} tokens ≥ data.max_length={max_length}"
    return Example(prompt_ids, completion_ids[:room], where)


def load_dataset(data_cfg, tokenizer, seed: int) -> Dataset:
    """Rows → examples, split into train and held-out by a seeded shuffle."""
    rows = read_rows(data_cfg.path, data_cfg.limit)
    fmt = detect_format(rows, data_cfg.format)
    examples, dropped = [], []
    for where, prompt, completion in pairs(rows, fmt, tokenizer):
        made = tokenize(where, prompt, completion, tokenizer, data_cfg.max_length)
        (dropped if isinstance(made, str) else examples).append(made)
    if not examples:
        raise RecordError(f"{data_cfg.path}: no row left to train on ({len(dropped)} dropped; first: {dropped[:1]})")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_held = int(round(len(examples) * data_cfg.held_out)) if data_cfg.held_out > 0 else 0
    n_held = min(max(n_held, 1 if data_cfg.held_out > 0 and len(examples) > 1 else 0), len(examples) - 1)
    held = sorted(order[:n_held])
    train = sorted(order[n_held:])
    return Dataset([examples[i] for i in train], [examples[i] for i in held], dropped)
