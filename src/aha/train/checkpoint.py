"""Trainer checkpoints: the HF model directory plus what resuming needs (optimizer, scheduler,
step, cost ledger; the reference model when there is one). Weights that are not finite are never
written: a diverged run keeps its last good checkpoint.

A sharded model (`aha.train.sharding`) is saved by every rank together: the full weights and the
full optimizer state are gathered to rank 0, which writes the same files as an unsharded run (the
optimizer state keyed by parameter name instead of position), so transformers loads the model and
a run resumes sharded or not.

A DeepSpeed run (`aha.train.zero_ds`) is saved by every rank too: DeepSpeed's partitioned state
(`engine.save_checkpoint`) goes into the checkpoint's `deepspeed/` folder, and rank 0 writes the
same HF files from the policy's weights (gathered first under ZeRO-3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from aha import runs
from aha.train import sharding, zero_ds


class DivergedError(RuntimeError):
    """The policy's loss, gradients or weights stopped being finite; the run cannot go on."""


def all_finite(model) -> bool:
    return sharding.all_finite(model)


def save(run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, state: dict, ref_model=None) -> Path | None:
    """Called by rank 0 alone for a plain model, by every rank for a sharded one (the gathering is
    collective; only rank 0 writes, and only it gets the path back)."""
    if zero_ds.engine_of(model) is not None:
        return _save_zero(run_dir, step, model, tokenizer, scheduler, state, ref_model)
    if not all_finite(model):
        raise DivergedError(f"step {step}: the weights are not finite; not saving them over "
                            f"{runs.latest_checkpoint(run_dir) or 'nothing'}")
    if sharding.is_sharded(model):
        return _save_sharded(run_dir, step, model, tokenizer, optimizer, scheduler, state, ref_model)
    trainer_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "state": state}
    from aha.models import lora  # a LoRA policy saves merged weights plus its adapter

    path = runs.save_checkpoint(run_dir, step, lora.for_saving(model), tokenizer, trainer_state)
    if ref_model is not None:
        (path / "reference").mkdir(exist_ok=True)
        torch.save(ref_model.state_dict(), path / "reference" / "weights.pt")
    return path


def _save_sharded(run_dir, step, model, tokenizer, optimizer, scheduler, state, ref_model) -> Path | None:
    weights = sharding.full_state_dict(model)  # every rank takes part; rank 0 gets the tensors
    optimizer_state = sharding.full_optimizer_state(model, optimizer)
    reference = sharding.full_state_dict(ref_model) if ref_model is not None else None
    if not weights:  # not rank 0
        return None
    trainer_state = {"optimizer": optimizer_state, "scheduler": scheduler.state_dict(), "state": state}
    path = runs.save_checkpoint(run_dir, step, FullWeights(model, weights), tokenizer, trainer_state)
    if reference is not None:
        (path / "reference").mkdir(exist_ok=True)
        torch.save(reference, path / "reference" / "weights.pt")
    return path


def _save_zero(run_dir, step, model, tokenizer, scheduler, state, ref_model) -> Path | None:
    from aha.train import dist

    d = dist.current()
    staged = run_dir / f".tmp-{zero_ds.FOLDER}-{step}"
    with zero_ds.gathered(model):  # ZeRO-3: the full weights on every rank for the block
        # Every rank holds the same (full) weights here: all reach the same verdict, none waits alone.
        if not sharding.all_finite(model):
            raise DivergedError(f"step {step}: the weights are not finite; not saving them over "
                                f"{runs.latest_checkpoint(run_dir) or 'nothing'}")
        if d.is_main:
            shutil.rmtree(staged, ignore_errors=True)
        d.barrier()
        zero_ds.save_state(model, staged)  # each rank its partition of the optimizer state
        d.barrier()
        if not d.is_main:
            return None
        trainer_state = {"optimizer": {zero_ds.FOLDER: zero_ds.TAG}, "scheduler": scheduler.state_dict(), "state": state}
        path = runs.save_checkpoint(run_dir, step, model, tokenizer, trainer_state, move_in={zero_ds.FOLDER: staged})
    if ref_model is not None:
        (path / "reference").mkdir(exist_ok=True)
        torch.save(ref_model.state_dict(), path / "reference" / "weights.pt")
    return path


class FullWeights:
    """A sharded model's `save_pretrained` with its gathered weights (its own state_dict is shards)."""

    def __init__(self, model, weights: dict):
        # Gathered one name at a time, a tied head (lm_head = embed_tokens) arrives as a second
        # tensor that transformers would write twice; it re-ties it at load, from the first.
        first: dict[int, str] = {}
        tied = {name for name, p in model.named_parameters(remove_duplicate=False) if first.setdefault(id(p), name) != name}
        self.model, self.weights = model, {k: v for k, v in weights.items() if k not in tied}

    def save_pretrained(self, path) -> None:
        self.model.save_pretrained(path, state_dict=self.weights)


def load(checkpoint: Path, optimizer, scheduler, ref_model=None, model=None) -> dict:
    """Restore optimizer, scheduler and reference in place; returns the saved trainer state.
    `model` (the optimizer's) is needed when it is sharded or the optimizer state was saved by a
    sharded run (keyed by parameter name)."""
    saved = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
    if zero_ds.is_zero(optimizer):
        zero_ds.load_state(model, checkpoint)
    elif zero_ds.FOLDER in saved["optimizer"]:
        raise zero_ds.ZeroUnsupported(f"{checkpoint} was written by a DeepSpeed run: its optimizer state is "
                                      f"DeepSpeed's ({zero_ds.FOLDER}/); resume it under the same DeepSpeed launch, "
                                      "or start a new run from its weights (model.path=)")
    elif model is not None and (sharding.is_sharded(model) or _keyed_by_name(saved["optimizer"])):
        sharding.load_optimizer_state(model, optimizer, saved["optimizer"])
    else:
        optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if ref_model is not None and (checkpoint / "reference").exists():
        reference = torch.load(checkpoint / "reference" / "weights.pt", weights_only=True)
        if sharding.is_sharded(ref_model):
            sharding.load_full_state(ref_model, reference)
        else:
            ref_model.load_state_dict(reference)
    return saved["state"]


def _keyed_by_name(optimizer_state: dict) -> bool:
    groups = optimizer_state.get("param_groups") or []
    return bool(groups and groups[0]["params"] and isinstance(groups[0]["params"][0], str))
