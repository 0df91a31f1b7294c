"""FSDP2 sharding of the policy (and the reference model) over the run's processes: each rank
holds 1/N of every parameter, of its gradient and of AdamW's moments; a layer's full weights exist
only while it runs.

Asked for by `accelerate launch` with an FSDP config (ACCELERATE_USE_FSDP=true, what
`recipes/accelerate/fsdp.yaml` sets) or, under torchrun, by AHA_SHARDING=fsdp. torch's
`fully_shard` is applied to every decoder layer and then to the root (the embedding, final norm and
LM head — one unit, so a head tied to the embedding stays one parameter).

aha's update forward (`aha.train.unpadded`) calls the layers' submodules directly, never
`layer(...)`, so FSDP's forward hooks — all-gather before, reshard after, and the backward hooks
that reduce-scatter the gradients — would not fire. `through(module, fn, ...)` runs `fn` inside a
method registered with `register_fsdp_forward_method` on the unit, which brings the hooks with it.
Every forward must enter through the root unit first (FSDP picks its root at the first forward).

Gradients are reduce-scattered as a SUM, not FSDP's default average: aha's losses are normalised by
the global token/sequence counts, so the sum over ranks is the global batch's gradient — exactly
what the replicated path's `all_reduce_grads` computes.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as torch_dist

ENTRY = "aha_fsdp_entry"  # the hook-wrapped method `through` calls on a sharded unit


class ShardingUnsupported(ValueError):
    """A sharded run asked for something this module does not shard (yet)."""


def requested() -> bool:
    """An FSDP launch: accelerate's FSDP config, or AHA_SHARDING=fsdp (torchrun)."""
    return (os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
            or os.environ.get("AHA_SHARDING", "").lower() == "fsdp")


def check_supported(model, cfg_model, engine: str, kind: str = "FSDP sharding") -> None:
    """Before sharding: what the sharded path covers, with the setting to change named. `kind`
    names the path in the messages (DeepSpeed ZeRO covers the same, `aha.train.zero_ds`)."""
    from aha.models import lora
    from aha.train import unpadded

    if lora.is_lora(model) or getattr(cfg_model.lora, "r", 0):
        raise ShardingUnsupported(f"model.lora.r: LoRA with {kind} is not implemented; train LoRA "
                                  "replicated (the ddp/ddp-cpu accelerate configs, no AHA_SHARDING)")
    if not unpadded.supports(model):
        raise ShardingUnsupported(
            f"{kind} runs aha's unpadded update forward only ({'/'.join(unpadded.SUPPORTED_TYPES)} "
            f"decoders with sdpa or eager attention, no sliding window); got model_type "
            f"{getattr(model.config, 'model_type', None)!r}")
    if engine != "torch":
        raise ShardingUnsupported(f"rollout.engine={engine!r} with {kind} is not implemented "
                                  "(the engine would need the gathered weights after every update); use rollout.engine=torch")


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def shard(model) -> None:
    """`fully_shard` each decoder layer, then the root, in place, over all of the run's ranks.
    Parameters become DTensor shards: build the optimizer after this."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    # The mesh on the model's own device: FSDP would otherwise move a CPU model onto a visible GPU.
    mesh = init_device_mesh(next(model.parameters()).device.type, (torch_dist.get_world_size(),))
    units = [*model.model.layers, model]  # children first: the root unit keeps what no layer took
    for unit in units:
        setattr(unit, ENTRY, _call)
        fully_shard(unit, mesh=mesh)
        register_fsdp_forward_method(unit, ENTRY)
        # A SUM over ranks (see the module docstring); forced as SUM + post-scale 1, which gloo has
        # (FSDP's default AVG / PREMUL_SUM are NCCL ops).
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def through(module, fn, *args, **kwargs):
    """`fn(*args, **kwargs)` with `module`'s FSDP hooks around it when it is a sharded unit (its
    parameters gathered for the call and, in the backward, its gradients reduce-scattered); a plain
    call otherwise."""
    entry = module.__dict__.get(ENTRY)
    return entry(fn, *args, **kwargs) if entry is not None else fn(*args, **kwargs)


def _units(model) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def gathered(model):
    """Every unit's full weights on every rank for the block (collective: all ranks enter
    together), then back to shards. For sampling: the rollout engines read weights directly, and
    ranks decode different numbers of steps, so per-layer all-gathers inside the decode loop would
    not match up between ranks. The price: during rollout each rank holds the whole model (as the
    replicated path always does) — gradients and optimizer state stay sharded, which is most of
    the training memory (AdamW: two fp32 moments plus the gradient per weight)."""
    if not is_sharded(model):
        yield
        return
    units = _units(model)
    layers = [u for u in units if u is not model]
    for unit in layers:  # a module-forward engine must not free a layer after running it
        unit.set_reshard_after_forward(False, recurse=False)
    for unit in units:
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
        for unit in layers:  # `fully_shard`'s default, which `shard` used
            unit.set_reshard_after_forward(True, recurse=False)


class GatheredEngine:
    """A rollout engine over a sharded policy: each generate call runs on the gathered weights
    (`gather`: this module's `gathered`, or `aha.train.zero_ds.gathered` under DeepSpeed)."""

    def __init__(self, model, inner, gather=None):
        self.model, self.inner, self.gather = model, inner, gather or gathered

    def generate(self, prompts, params, n: int = 1):
        with self.gather(self.model):
            return self.inner.generate(prompts, params, n=n)

    def load_weights(self, state_dict) -> None:
        """The torch engine samples the training module itself (`check_supported` allows no other)."""


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Full (unsharded) tensors, gathered to rank 0's CPU memory only: the others get empty dicts.
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state_dict(model) -> dict:
    """The model's full weights on rank 0 (CPU), {} on the others. Collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options())


def full_optimizer_state(model, optimizer) -> dict:
    """AdamW's full state, keyed by parameter name, on rank 0 (CPU); {} on the others. Collective.
    Gathering all of it to one rank is fine at the sizes aha trains; a model whose optimizer state
    does not fit one host's memory would need torch.distributed.checkpoint's sharded files."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options())


def load_full_state(model, weights: dict) -> None:
    """Every rank passes the same full state dict; each keeps its shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))


def load_optimizer_state(model, optimizer, saved: dict) -> None:
    """A name-keyed full optimizer state (`full_optimizer_state`) into a sharded or plain model's
    optimizer, or a plain `optimizer.state_dict()` (keyed by position) into a sharded one's."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if saved["param_groups"] and saved["param_groups"][0]["params"] and isinstance(saved["param_groups"][0]["params"][0], int):
        saved = _keyed_by_name(model, saved)
    set_optimizer_state_dict(model, optimizer, saved, options=StateDictOptions(full_state_dict=True))


def _keyed_by_name(model, saved: dict) -> dict:
    # `aha.train.optim.adamw` takes the trainable parameters in `named_parameters` order, which
    # sharding keeps: position i is the i-th trainable name.
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in saved["param_groups"]]
    return {"state": {names[i]: s for i, s in saved["state"].items()}, "param_groups": groups}


def all_finite(model) -> bool:
    """Every rank's shards finite, on every rank (collective for a sharded model)."""
    if not is_sharded(model):
        return all(bool(torch.isfinite(p).all()) for p in model.parameters())
    from aha.train import dist

    # A shard per rank; or the whole tensor where its unit is unsharded at the moment (the root
    # stays gathered after a forward without backward, an evaluation's).
    bad = sum(int(not torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()) for p in model.parameters())
    return dist.current().all_sum([float(bad)])[0] == 0


def full_norm(norm) -> float:
    """`clip_grad_norm_`'s result as a float: over DTensor gradients it is a (replicated) DTensor."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
