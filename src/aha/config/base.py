"""Loading configs: a YAML recipe and `key=value` overrides into frozen dataclasses.

Resolution order: dataclass defaults < the GRPO preset named by `grpo.preset` < the recipe file <
`key=value` overrides. An unknown key is an error that lists the valid keys; a value of the wrong
type is an error that names the key and the expected type; then the stage config's `validate()`
checks ranges, registered names and cross-field rules — all before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

# Named GRPO settings, applied under the recipe's own `grpo` values; filled by `aha.config.sections`.
PRESETS: dict[str, dict[str, Any]] = {}


class ConfigError(ValueError):
    pass


def load_config(cls, recipe: str | Path | None = None, overrides: list[str] = (), validate: bool = True):
    """Build `cls` from defaults, an optional YAML recipe and `a.b=c` overrides, then (unless told
    not to) run its `validate()`: ranges, registered names, model directories, output folder."""
    data: dict[str, Any] = {}
    if recipe is not None:
        data = _read_yaml(Path(recipe))
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(data, key, value)
    preset = (data.get("grpo") or {}).get("preset") if isinstance(data.get("grpo"), dict) else None
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"grpo.preset: unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        data["grpo"] = {**PRESETS[preset], **data["grpo"]}
    config = from_dict(cls, data, prefix="")
    if validate and hasattr(config, "validate"):
        config.validate()
    return config


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. grpo.beta=0.001")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[parts[-1]] = value


def from_dict(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; valid keys in {prefix.rstrip('.') or 'the top level'}: "
            + ", ".join(fields)
        )
    values = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    for name, value in values.items():
        default = fields[name].default_factory
        if dataclasses.is_dataclass(value) and default is not dataclasses.MISSING:
            # A section given in part keeps this stage's own defaults for the rest (the SFT stage's
            # run.name is "sft" even when only run.out_dir is set).
            raw = data[name]
            keys = raw if isinstance(raw, dict) else [getattr(type(value), "SHORTHAND")]
            values[name] = dataclasses.replace(default(), **{k: getattr(value, k) for k in keys})
    return cls(**values)


def _coerce(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        shorthand = getattr(hint, "SHORTHAND", None)  # `model=path/to/dir` is short for model.path
        if isinstance(value, str) and shorthand:
            value = {shorthand: value}
        return from_dict(hint, value, key + ".")
    origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads "1e-3" (no dot) as a string; accept any spelling float() accepts.
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got str {value!r}") from None
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {hint}, got {value!r}")
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if not isinstance(value, hint) or (isinstance(value, bool) and hint is not bool):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def save_config(config, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
