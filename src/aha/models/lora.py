"""LoRA through peft: adapters injected in place (`peft.inject_adapter_in_model`), so the model keeps
its class and `model.model` / `model.lm_head`, and aha's own forwards (`aha.train.forward`,
`aha.train.unpadded`, which call the model's modules) train the adapters with no change. Only the
adapters are trainable; the base weights never move.

Two places need plain weights: the rollout engine (the lean decoder reads weight tensors directly,
so it would miss the adapters) and the saved model directory (which plain transformers must load).
Both get W + (α/r)·B·A, computed fresh: `MergedEngine` refreshes its plain copy before every
generate call, and `for_saving` writes the merged model plus the adapter (peft's format) in
`adapter/`, from which a resumed run continues on the original base.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

ADAPTER_DIR = "adapter"


def _peft():
    try:
        import peft
    except ImportError as err:
        raise ImportError("model.lora.r > 0 needs peft: pip install 'aha-rl[lora]' (or pip install peft)") from err
    return peft


def apply(model, lora_cfg):
    """Inject LoRA adapters (r > 0) into `model` in place and freeze everything else; r = 0: unchanged."""
    if not lora_cfg.r:
        return model
    peft = _peft()
    config = peft.LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                             target_modules=list(lora_cfg.target_modules), bias="none")
    model = peft.inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model.lora.target_modules {list(lora_cfg.target_modules)} matched no layer of this model")
    model.aha_lora_config = config  # kept for saving the adapter in peft's format
    return model


def is_lora(model) -> bool:
    return hasattr(model, "aha_lora_config")


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


@torch.no_grad()
def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The plain model's state dict: every adapted weight replaced by W + (α/r)·B·A, adapter tensors
    dropped, `base_layer.` taken out of the names."""
    out = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if "lora_" not in k}
    for name, layer in _lora_layers(model):
        base = layer.base_layer.weight
        out[f"{name}.weight"] = base + layer.get_delta_weight("default").to(base.dtype)
    return out


def plain_copy(model):
    """A model of the base's class holding the merged weights (no adapters)."""
    state = merged_state_dict(model)
    plain = type(model)(copy.deepcopy(model.config)).to(next(model.parameters()).dtype)
    plain.load_state_dict(state)
    plain.generation_config = copy.deepcopy(model.generation_config)
    return plain.eval().requires_grad_(False)


def adapter_state_dict(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


class _Saveable:
    """What `runs.save_checkpoint` saves for a LoRA policy: the merged model directory (loads in
    plain transformers; `aha eval`, `aha zero model=…` read it) and the adapter in `adapter/`."""

    def __init__(self, model):
        self.model = model

    def save_pretrained(self, path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        plain_copy(self.model).save_pretrained(path)
        (path / ADAPTER_DIR).mkdir(parents=True, exist_ok=True)
        # aha's own key names (the injected model's): what `load_adapter` restores into.
        save_file(adapter_state_dict(self.model), str(path / ADAPTER_DIR / "adapter_model.safetensors"))
        config = self.model.aha_lora_config.to_dict()
        config["target_modules"] = sorted(config["target_modules"])
        (path / ADAPTER_DIR / "adapter_config.json").write_text(json.dumps(config, indent=2, default=str))


def for_saving(model):
    return _Saveable(model) if is_lora(model) else model


def load_adapter(model, checkpoint: Path) -> None:
    """Restore a checkpoint's adapter into a model freshly `apply`-ed on the original base."""
    from safetensors.torch import load_file

    saved = load_file(str(Path(checkpoint) / ADAPTER_DIR / "adapter_model.safetensors"))
    missing = set(adapter_state_dict(model)) - set(saved)
    if missing:
        raise ValueError(f"{checkpoint}: the adapter lacks {sorted(missing)[:3]}… (other model.lora settings?)")
    model.load_state_dict(saved, strict=False)


class MergedEngine:
    """A rollout engine over a plain copy of a LoRA policy, re-merged before every generate call,
    so rollouts and evaluations always sample the current policy (the engine's own fast paths,
    the lean decoder included, see plain weights). The merged weights also go to the inner engine's
    `load_weights`: a no-op for the torch engine (it samples the plain copy), the sync for engines
    that hold their own copy (vLLM)."""

    def __init__(self, model, make):
        self.model = model
        self.plain = plain_copy(model)
        self.inner = make(self.plain)

    def refresh(self) -> None:
        merged = merged_state_dict(self.model)
        self.plain.load_state_dict(merged)
        self.inner.load_weights(merged)

    def generate(self, prompts, params, n: int = 1):
        self.refresh()
        return self.inner.generate(prompts, params, n=n)

    def load_weights(self, state_dict) -> None:  # the next generate re-merges anyway
        pass
