"""Load-time checks shared by the stage configs: ranges, registered names, model directories and
output folders. Each raises `ConfigError` naming the field and what was expected, and none loads a
model or writes a file — a bad config fails in about a second, before anything is spent."""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

from aha.config.base import ConfigError


def at_least(key: str, value, low, why: str = "") -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
        raise ConfigError(f"{key}: expected a number ≥ {low}{' (' + why + ')' if why else ''}, got {value!r}")


def positive(key: str, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{key}: expected a finite number > 0, got {value!r}")


def within(key: str, value, low: float, high: float, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        raise ConfigError(f"{key}: expected a number in {'(' if low_open else '['}{low}, {high}], got {value!r}")


def registered(key: str, name: str, registry) -> None:
    if name not in registry:
        raise ConfigError(f"{key}: unknown name {name!r}; valid: {', '.join(sorted(registry))}")


def task_options(key: str, name: str, options: dict) -> None:
    """The task exists and its constructor takes these options (checked by signature, and by the task's
    own `check_options` where it has one: nothing is read, no task is built)."""
    from aha.tasks import TASKS

    registered(key + ".name", name, TASKS)
    try:
        inspect.signature(TASKS[name]).bind(**options)
    except TypeError as err:
        params = [p for p in inspect.signature(TASKS[name]).parameters]
        raise ConfigError(f"{key}.options: {err} (task {name!r} takes: {', '.join(params) or 'no options'})") from None
    check = getattr(TASKS[name], "check_options", None)  # a task whose options nest (mixture) checks their shape
    if check is not None:
        try:
            check(**options)
        except ValueError as err:
            raise ConfigError(f"{key}.options.{err}") from None


def rewards(key: str, weights: dict) -> None:
    """Every reward resolves (user rewards are imported now, so a typo fails before any model loads)
    and every weight is a finite number."""
    from aha.rewards import get_reward

    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"{key}.{name}: weight must be a finite number, got {weight!r}")
        try:
            get_reward(str(name))
        except (KeyError, ValueError, ImportError, FileNotFoundError, AttributeError, TypeError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)  # KeyError's str() adds quotes
            raise ConfigError(f"{key}: {message}") from None
    if not any(w != 0 for w in weights.values()):
        raise ConfigError(f"{key}: at least one reward needs a non-zero weight, got {weights!r}")


_WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def model_dir(key: str, path: str, need_chat_template: bool = False) -> None:
    """An HF causal-LM directory with a config, weights and a tokenizer (and a chat template when
    the prompts need one) — said up front instead of a tensor-shape error deep inside transformers."""
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"{key}: {path}: not a directory (expected 'embedded' or a Hugging Face model directory)")
    if not (root / "config.json").is_file():
        raise ConfigError(f"{key}: {path}: not a Hugging Face model directory (no config.json)")
    if not any(any(root.glob(pattern)) for pattern in _WEIGHTS):
        raise ConfigError(f"{key}: {path}: no weights (expected model.safetensors, *.safetensors shards or "
                          "pytorch_model.bin)")
    if not any((root / name).is_file() for name in _TOKENIZER):
        raise ConfigError(f"{key}: {path}: no tokenizer (expected tokenizer.json or tokenizer.model beside config.json)")
    if need_chat_template and not _has_chat_template(root):
        raise ConfigError(f"{key}: {path}: prompt.template is 'chat' but the tokenizer has no chat template "
                          "(add chat_template.jinja, or use prompt.template=r1-zero)")


def _has_chat_template(root: Path) -> bool:
    import json

    if (root / "chat_template.jinja").is_file() or (root / "chat_template.json").is_file():
        return True
    config = root / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def writable_dir(key: str, path: str) -> None:
    """The folder exists and is writable, or can be created under a writable ancestor."""
    target = Path(path).absolute()
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}: {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {path}: {probe} is not writable")


def run_name(key: str, name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"{key}: expected a plain folder name (no '/'), got {name!r}")
