"""DeepSpeed ZeRO for aha's trainers: DeepSpeed's own engine (`deepspeed.initialize`) partitions
AdamW's state (stage 1), the gradients too (stage 2) or the parameters as well (stage 3) over the
run's processes, and takes the optimizer step (gradient clipping included).

Asked for by `accelerate launch` with a DeepSpeed config (ACCELERATE_USE_DEEPSPEED=true,
`recipes/accelerate/deepspeed-zero2.yaml`) or, under torchrun, by AHA_SHARDING=deepspeed. The ZeRO
settings (stage, offload devices) are read the way accelerate reads them — its `DeepSpeedPlugin`,
from the ACCELERATE_DEEPSPEED_* variables or ACCELERATE_DEEPSPEED_CONFIG_FILE — and aha fills in
what is its own: the gradient clipping (the trainer's `max_grad_norm`), one optimizer step per
`engine.step()` whatever the number of micro-batches (`managed_gradient_accumulation: false`: aha's
micro-batches are token-budgeted and their count varies), and gradients SUMMED over ranks (aha's
losses are normalised by the global token/sequence counts, so the sum is the global batch's
gradient; stage 3 only averages, so there the loss is multiplied by the world size instead).

aha's update forward (`aha.train.unpadded`) calls the decoder's submodules, not `model(...)`: its
root call enters through the engine (`through`, as FSDP's does through the root unit), so the
engine's backward bookkeeping runs; ZeRO-3's per-module hooks fetch each layer's weights.
Rollouts and evaluation read weights directly: under ZeRO-3 they run inside DeepSpeed's
`unwrap_model_for_generation` (all weights gathered once, its hooks lifted), since ranks decode
different numbers of steps and per-module gathers would not match up between them.

Checkpoints: rank 0 writes the usual full HF directory (under ZeRO-3 from the gathered weights),
and every rank writes DeepSpeed's own partitioned optimizer state into the checkpoint's
`deepspeed/` folder (`engine.save_checkpoint`); a DeepSpeed run resumes from it with the same
number of processes (`engine.load_checkpoint`). The reference model (GRPO's KL) is replicated.

Not covered, refused with the setting named: LoRA, rollout engines other than torch, DeepSpeed's
own fp16/bf16 (aha's precision is `model.precision`), and gradient checkpointing under ZeRO-3.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from aha.train import sharding

FOLDER = "deepspeed"  # a checkpoint's DeepSpeed state, next to the HF files
TAG = "state"


class ZeroUnsupported(sharding.ShardingUnsupported):
    """A DeepSpeed run asked for something aha's ZeRO path does not cover."""


def requested() -> bool:
    """A DeepSpeed launch: accelerate's DeepSpeed config, or AHA_SHARDING=deepspeed (torchrun)."""
    return (os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")
            or os.environ.get("AHA_SHARDING", "").lower() == "deepspeed")


def _import():
    try:
        import deepspeed
    except ImportError as err:
        raise ZeroUnsupported("a DeepSpeed launch (ACCELERATE_USE_DEEPSPEED / AHA_SHARDING=deepspeed) needs the "
                              "deepspeed package: pip install 'aha-rl[deepspeed]'") from err
    return deepspeed


def stage() -> int:
    return int(_plugin().zero_stage)


def _plugin():
    from accelerate.utils import DeepSpeedPlugin

    return DeepSpeedPlugin()  # reads accelerate's ACCELERATE_DEEPSPEED_* variables, or its config file


def ds_config(max_grad_norm: float, world: int) -> dict:
    """accelerate's DeepSpeed config with aha's own settings filled in; a conflicting one refused."""
    cfg = dict(_plugin().deepspeed_config)
    for key in ("fp16", "bf16"):
        if (cfg.get(key) or {}).get("enabled") not in (None, False, "auto"):
            raise ZeroUnsupported(f"the DeepSpeed config enables {key}: aha sets precision itself "
                                  "(model.precision); drop it from the DeepSpeed config")
    clip = cfg.get("gradient_clipping", "auto")
    if clip not in ("auto", None) and float(clip) != float(max_grad_norm):
        raise ZeroUnsupported(f"the DeepSpeed config's gradient_clipping={clip} differs from the trainer's "
                              f"max_grad_norm={max_grad_norm}; set it once, in aha's config")
    gas = cfg.get("gradient_accumulation_steps", "auto")
    if gas not in ("auto", 1, None):
        raise ZeroUnsupported(f"gradient_accumulation_steps={gas}: aha takes one optimizer step per batch; set "
                              "micro-batching with the trainer's micro_batch_size / micro_batch_tokens")
    zero = dict(cfg.get("zero_optimization") or {})
    cfg.update({
        # Bookkeeping only here: aha's micro-batches are token-budgeted, not counted in rows.
        "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "train_batch_size": world,
        "gradient_clipping": float(max_grad_norm), "managed_gradient_accumulation": False,
        "zero_allow_untested_optimizer": True, "steps_per_print": 2**62, "wall_clock_breakdown": False,
        "zero_optimization": zero,
    })
    if int(zero.get("stage", 0)) < 3:
        cfg["gradient_allreduce_op"] = "sum"  # stage 3 refuses it: `ZeroOptimizer` scales its loss instead
    return cfg


def check_supported(model, cfg_model, engine: str) -> None:
    """Before initialising: what this path covers, with the setting to change named."""
    sharding.check_supported(model, cfg_model, engine, kind="DeepSpeed ZeRO")
    if getattr(model, "aha_gradient_checkpointing", False) and stage() >= 3:
        raise ZeroUnsupported("model.gradient_checkpointing with ZeRO stage 3 is not implemented; use stage 1/2 "
                              "(deepspeed-zero2.yaml) or FSDP (fsdp.yaml)")


class _Entry(torch.nn.Module):
    """The engine's module: the policy as its child, and a forward that runs the function it is
    given, so aha's own forward (which calls the decoder's submodules) enters through the engine."""

    def __init__(self, model):
        super().__init__()
        self.policy = model

    def forward(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


class ZeroOptimizer:
    """aha's optimizer slot under DeepSpeed: backwards and the step go through the engine. The
    learning-rate schedule stays aha's, on the wrapped torch AdamW, whose param_groups DeepSpeed
    steps with."""

    def __init__(self, engine, base, world: int):
        self.engine, self.base = engine, base
        self.stage = engine.zero_optimization_stage()
        # Stage 3 averages gradients over ranks; aha needs their sum (see the module docstring).
        self.loss_factor = float(world) if self.stage >= 3 else 1.0

    @property
    def param_groups(self):
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to clear: every `engine.step()` consumes the accumulated gradients."""

    def backward(self, loss) -> None:
        self.engine.backward(loss * self.loss_factor, scale_wrt_gas=False)

    def step(self) -> tuple[float, bool]:
        """DeepSpeed's step (reduce, clip to `gradient_clipping`, AdamW); returns the global
        gradient norm before clipping and whether the step was applied — DeepSpeed itself skips
        it, gradients discarded, when that norm is not finite."""
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        norm = float("nan") if norm is None else float(norm)
        return norm, bool(self.engine.was_step_applied())


def initialize(model, optimizer, max_grad_norm: float, world: int) -> ZeroOptimizer:
    """`deepspeed.initialize` over the policy and aha's AdamW (collective). Under ZeRO-3 the
    policy's parameters become partitions; `model` stays the HF module aha calls."""
    deepspeed = _import()
    engine, _, _, _ = deepspeed.initialize(model=_Entry(model), optimizer=optimizer,
                                           config=ds_config(max_grad_norm, world), dist_init_required=False)
    # In __dict__, not as a module attribute: the engine must not become the policy's submodule.
    model.__dict__[sharding.ENTRY] = engine
    model.__dict__[ENGINE] = engine
    return ZeroOptimizer(engine, optimizer, world)


ENGINE = "aha_deepspeed_engine"


def engine_of(model):
    return model.__dict__.get(ENGINE)


def is_zero(optimizer) -> bool:
    return isinstance(optimizer, ZeroOptimizer)


def partitioned(model) -> bool:
    """ZeRO-3: the policy's own tensors are placeholders outside `gathered`."""
    engine = engine_of(model)
    return engine is not None and engine.zero_optimization_stage() >= 3


@contextlib.contextmanager
def gathered(model):
    """Under ZeRO-3, every weight of the policy on every rank for the block (collective), with
    DeepSpeed's per-module hooks lifted (`unwrap_model_for_generation`); a no-op otherwise."""
    if not partitioned(model):
        yield
        return
    from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

    with unwrap_model_for_generation(engine_of(model)):
        yield


def save_state(model, folder: Path) -> None:
    """DeepSpeed's partitioned optimizer state (each rank its part) into `folder`. Collective."""
    engine_of(model).save_checkpoint(str(folder), tag=TAG)


def load_state(model, checkpoint: Path) -> None:
    """A checkpoint's DeepSpeed state back into the engine (optimizer partitions included)."""
    folder = checkpoint / FOLDER
    if not (folder / TAG).is_dir():
        raise ZeroUnsupported(f"{checkpoint}: no DeepSpeed state ({FOLDER}/{TAG}); a DeepSpeed run resumes only from "
                              "a checkpoint a DeepSpeed run wrote (start a new run from its weights with model.path=)")
    path, _ = engine_of(model).load_checkpoint(str(folder), tag=TAG, load_optimizer_states=True,
                                               load_lr_scheduler_states=False)
    if path is None:
        raise ZeroUnsupported(f"{folder}: DeepSpeed could not load its state (another number of processes or ZeRO stage?)")
