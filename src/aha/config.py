"""Configuration: one frozen dataclass per stage section, a YAML recipe, dotted overrides.

Resolution order: dataclass defaults < the GRPO preset named by `grpo.preset` < the recipe file <
`key=value` overrides. An unknown key is an error that lists the valid keys; a value of the wrong
type is an error that names the key and the expected type. The resolved config is saved with the run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RunConfig:
    name: str = "zero-tiny"
    out_dir: str = "runs"
    seed: int = 0
    threads: int = 0  # 0 = every core this process may use
    save_every: int = 50  # steps between checkpoints (one is always written at the end)
    samples_per_step: int = 8  # completions logged to samples.jsonl each step
    progress: bool = True


@dataclass(frozen=True)
class ModelConfig:
    path: str = "embedded"  # "embedded" = the built-in tiny base model; else an HF causal-LM directory
    dtype: str = "float32"  # float32 | bfloat16 | float16: how the weights are stored
    # How the matmuls run. "bf16-mixed": fp32 master weights, bf16 rollout, reference and update
    # (autocast) — 2.5× the fp32 matmul rate on CPUs with AVX-512-bf16/AMX, the usual choice on GPUs.
    # "fp32" stays the default: bit-reproducible on any CPU, bf16-less ones included.
    precision: Literal["fp32", "bf16-mixed"] = "fp32"


@dataclass(frozen=True)
class PretrainConfig:
    """How the embedded base model is built (ignored when model.path is an HF directory)."""

    documents: int = 160_000  # corpus size: problems with traces (plus fact lines, if facts_share > 0)
    facts_share: float = 0.0  # share of documents that are plain fact lines (products, comparisons)
    epochs: int = 1
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 50
    vocab_size: int = 640
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    mlp: int = 384
    seed: int = 0


@dataclass(frozen=True)
class TaskConfig:
    name: str = "division"
    options: dict = field(default_factory=dict)  # passed to the task's constructor


@dataclass(frozen=True)
class RolloutConfig:
    engine: str = "torch"  # torch (vllm: planned)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    max_batch: int = 256  # samples decoded at once (speed/memory only)


@dataclass(frozen=True)
class GRPOConfig:
    preset: str = ""  # e.g. "r1": the paper's settings, applied under the recipe's own values
    steps: int = 200
    prompts_per_step: int = 16  # global: changes the algorithm
    group_size: int = 8  # G samples per prompt; global
    # Rows per forward/backward, per device: speed/memory only (accumulation is derived). The token
    # cap below is what bounds memory; one micro-batch for the demo's 16 × 8 rows halves its kernels.
    micro_batch_size: int = 128
    micro_batch_tokens: int = 16384  # and at most this many padded tokens per micro-batch (speed/memory only)
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    beta: float = 0.0  # KL coefficient; 0 loads no reference model
    eps_low: float = 0.2
    eps_high: float = 0.2
    advantage: str = "grpo"  # registered estimator: grpo | dr_grpo | rloo
    loss_agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum-norm
    mu: int = 1  # inner updates on one batch of rollouts
    ref_reset_every: int = 0  # replace the reference by the policy every N steps (0 = never)


@dataclass(frozen=True)
class EvalConfig:
    problems: int = 200  # held-out problems
    k: int = 4  # samples per problem: pass@1 is averaged over them
    temperature: float = 0.6
    top_p: float = 0.95
    every: int = 50  # steps between held-out evaluations during training (0 = start and end only)
    during_problems: int = 100  # smaller held-out set for the periodic evaluations


@dataclass(frozen=True)
class ZeroConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    rewards: dict = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.2})
    eval: EvalConfig = field(default_factory=EvalConfig)


# Named GRPO settings. "r1": DeepSeek-R1 (arXiv 2501.12948) as reported second-hand by peers.
PRESETS: dict[str, dict[str, Any]] = {
    "r1": {"beta": 0.001, "group_size": 16, "prompts_per_step": 32, "eps_low": 0.2, "eps_high": 0.2,
           "ref_reset_every": 400, "advantage": "grpo", "loss_agg": "seq-mean-token-mean"},
    "dr_grpo": {"advantage": "dr_grpo", "loss_agg": "seq-mean-token-sum-norm", "beta": 0.0},
    "dapo": {"eps_low": 0.2, "eps_high": 0.28, "loss_agg": "token-mean", "beta": 0.0},
}


def load_config(cls, recipe: str | Path | None = None, overrides: list[str] = ()):
    """Build `cls` from defaults, an optional YAML recipe and `a.b=c` overrides."""
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
    return from_dict(cls, data, prefix="")


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
    return cls(**values)


def _coerce(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        if isinstance(value, str) and hint is ModelConfig:  # `model=path/to/dir` is short for model.path
            value = {"path": value}
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
