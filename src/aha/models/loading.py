"""Load the policy and tokenizer: any Hugging Face causal-LM directory, or the embedded base model
(built once by `aha pretrain` and cached under $AHA_HOME, default ~/.cache/aha)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from aha.config import PretrainConfig, TaskConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Bump when the corpus or the tokenizer changes, so stale cached base models are not reused.
EMBEDDED_FORMAT = 2  # 2: packed pretraining
# Pretraining settings added after bases were shipped, with the default that builds what was built
# before: at that default they are left out of a base's name, so the shipped bases stay found.
ADDED_AT_DEFAULT = {"general_share": 0.0}


def embedded_base_dir(pretrain: PretrainConfig, task: TaskConfig) -> Path:
    """Where the embedded base for these settings lives; the name hashes every setting that shapes it."""
    settings = dataclasses.asdict(pretrain)
    for name in ADDED_AT_DEFAULT:  # a setting added later, left at its default, keeps older bases' names
        if settings[name] == ADDED_AT_DEFAULT[name]:
            del settings[name]
    key = json.dumps({"pretrain": settings, "task": dataclasses.asdict(task), "format": EMBEDDED_FORMAT}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    home = Path(os.environ.get("AHA_HOME", Path.home() / ".cache" / "aha"))
    return home / "base" / f"{task.name}-{digest}"


def shipped_base_dir(pretrain: PretrainConfig, task: TaskConfig) -> Path | None:
    """The copy of the default embedded base that ships inside the package (built by `aha pretrain`
    with the default settings), or None when these settings differ from the shipped ones."""
    from importlib import resources

    candidate = Path(str(resources.files("aha") / "models" / "embedded" / embedded_base_dir(pretrain, task).name))
    return candidate if is_complete_model_dir(candidate) else None


def is_complete_model_dir(path: Path) -> bool:
    return (path / "config.json").exists() and any(path.glob("*.safetensors")) and (path / "tokenizer.json").exists()


def load_model_dir(path: str | Path, dtype: str = "float32"):
    """Policy + tokenizer from an HF directory, made ready for left-padded batched sampling."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    tokenizer = load_tokenizer(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:  # many base models ship without one; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    return model, tokenizer


def load_tokenizer(path: Path):
    """The tokenizer exactly as its tokenizer.json defines it.

    transformers 5 maps a directory's model type to a tokenizer class (qwen2 → Qwen2Tokenizer) and
    that class rebuilds the pre-tokenizer with its own regex when tokenizer_config.json names only the
    generic backend — silently changing how a custom tokenizer (the embedded one) splits text, so a
    model would be served other token ids than it was trained on. Generic configs therefore load
    through the generic class; named ones (e.g. a real Qwen2.5 checkpoint) through AutoTokenizer."""
    config_file = path / "tokenizer_config.json"
    declared = json.loads(config_file.read_text()).get("tokenizer_class") if config_file.exists() else None
    if declared in (None, "TokenizersBackend", "PreTrainedTokenizerFast") and (path / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def stop_token_ids(tokenizer) -> tuple[int, ...]:
    """Stop on `</answer>` when the tokenizer has it as one token (the embedded one does). Other
    tokenizers stop on EOS, and text after `</answer>` costs the format reward."""
    ids = tokenizer.encode("</answer>", add_special_tokens=False)
    return tuple(ids) if len(ids) == 1 else ()
