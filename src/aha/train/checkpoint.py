"""Trainer checkpoints: the HF model directory plus what resuming needs (optimizer, scheduler,
step, cost ledger; the reference model when there is one). Weights that are not finite are never
written: a diverged run keeps its last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from aha import runs


class DivergedError(RuntimeError):
    """The policy's loss, gradients or weights stopped being finite; the run cannot go on."""


def all_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def save(run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, state: dict, ref_model=None) -> Path:
    if not all_finite(model):
        raise DivergedError(f"step {step}: the weights are not finite; not saving them over "
                            f"{runs.latest_checkpoint(run_dir) or 'nothing'}")
    trainer_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "state": state}
    from aha.models import lora  # a LoRA policy saves merged weights plus its adapter

    path = runs.save_checkpoint(run_dir, step, lora.for_saving(model), tokenizer, trainer_state)
    if ref_model is not None:
        (path / "reference").mkdir(exist_ok=True)
        torch.save(ref_model.state_dict(), path / "reference" / "weights.pt")
    return path


def load(checkpoint: Path, optimizer, scheduler, ref_model=None) -> dict:
    """Restore optimizer, scheduler and reference in place; returns the saved trainer state."""
    saved = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if ref_model is not None and (checkpoint / "reference").exists():
        ref_model.load_state_dict(torch.load(checkpoint / "reference" / "weights.pt", weights_only=True))
    return saved["state"]
