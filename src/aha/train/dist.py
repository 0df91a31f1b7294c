"""Several processes, one training run: the few collective operations aha's trainers need, and a
single-process stand-in whose operations are no-ops, so a stage's code reads the same either way.

Launched by `torchrun --nproc_per_node N -m aha …` or `accelerate launch --num_processes N -m aha …`
(both set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT). Two ways to hold the model:

- Replicated (the default): every rank holds the whole model; each samples, scores and trains on
  its own share of the step's groups; gradients are summed across ranks after the backward
  (`all_reduce_grads`), so every rank takes the same optimizer step and the weights stay identical
  without a DDP wrapper — aha's forwards call `model.model` / `model.lm_head` directly, which a DDP
  wrapper's hooks would not see.
- Sharded (`sharded`: accelerate's FSDP config, or AHA_SHARDING=fsdp under torchrun; `aha.train.
  sharding`): FSDP2 splits parameters, gradients and optimizer state between the ranks; the same
  shares of the batch, but FSDP reduce-scatters the gradients and `all_reduce_grads` is skipped.

- ZeRO (`zero`: accelerate's DeepSpeed config, or AHA_SHARDING=deepspeed under torchrun;
  `aha.train.zero_ds`): DeepSpeed's engine partitions optimizer state, gradients (stage 2) and
  parameters (stage 3); the same shares of the batch, and DeepSpeed reduces the gradients.

`collective`: either of the last two, where every forward/backward, rollout and checkpoint is a
collective that all ranks enter together.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from aha.train import sharding, zero_ds


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    sharded: bool = False  # FSDP2 (`aha.train.sharding`): each rank holds 1/world of the model
    zero: bool = False  # DeepSpeed ZeRO (`aha.train.zero_ds`): the engine partitions and reduces

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def collective(self) -> bool:
        """FSDP or ZeRO: the model's passes, rollouts and saves are entered by all ranks together."""
        return self.sharded or self.zero

    def share(self, n: int) -> tuple[int, int]:
        """This rank's contiguous slice [lo, hi) of n items: sizes differ by at most one, lower ranks
        take the extra ones (so the concatenation over ranks is the original order)."""
        base, extra = divmod(n, self.world)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (self.rank < extra)

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks, in float64 (token counts stay exact up to 2**53)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=_device())
        torch_dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj) -> list:
        """Every rank's `obj` (picklable), in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_grads(self, model) -> None:
        """Sum every trainable parameter's gradient over ranks. Losses are normalised by the global
        token/sequence counts, so the sum is the gradient of the global batch's loss. Parameters
        without a gradient on this rank (no rows this step) contribute zeros. Flattened into one
        buffer per dtype: one collective instead of one per tensor."""
        if not self.active or self.collective:  # FSDP / DeepSpeed have reduced them themselves
            return
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        by_dtype: dict[torch.dtype, list] = {}
        for p in params:
            by_dtype.setdefault(p.grad.dtype, []).append(p)
        for group in by_dtype.values():
            flat = torch.cat([p.grad.reshape(-1) for p in group])
            torch_dist.all_reduce(flat)
            offset = 0
            for p in group:
                n = p.grad.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n

    def broadcast_params(self, model) -> None:
        """Rank 0's weights everywhere: ranks load the same files, but a stray random init (a new
        head, a LoRA adapter) must not differ between them."""
        if not self.active:
            return
        for tensor in [*model.parameters(), *model.buffers()]:
            torch_dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first (builds a cache, creates a directory), then the others."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


SINGLE = Dist()


def _device() -> torch.device:
    # NCCL reduces GPU tensors only; gloo CPU ones.
    return torch.device("cuda", torch.cuda.current_device()) if _backend() == "nccl" else torch.device("cpu")


def _backend() -> str:
    return torch_dist.get_backend() if torch_dist.is_initialized() else "gloo"


def init() -> Dist:
    """The process group from the launcher's environment (idempotent); the single-process stand-in
    when no launcher set WORLD_SIZE > 1. Gloo by default: aha's trainers keep the model where
    `from_pretrained` put it (the CPU), and NCCL reduces GPU tensors only; AHA_DIST_BACKEND=nccl
    is for a build that places the model on the rank's GPU (unverified here: no GPU)."""
    _refuse_two_sharders()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    if not torch_dist.is_initialized():
        backend = os.environ.get("AHA_DIST_BACKEND", "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch_dist.init_process_group(backend)
        atexit.register(_destroy)
    return _view()


# How long the exit hook leaves the GIL free for gloo's worker threads (see `_destroy`).
_GLOO_DRAIN_S = 0.1


def _destroy() -> None:
    """Run at exit, while Python is still whole. A gloo worker thread drops its finished work (and
    the Python-owned tensors that work holds, e.g. `broadcast_object_list`'s buffer) only after the
    caller's wait has returned; that drop needs the GIL. Were the process already finalizing, the
    thread could not take it, Python would end the thread mid-destructor, and libstdc++ would abort
    the rank ("terminate called without an active exception", SIGABRT; gdb: ~AsyncBroadcastWork in
    ProcessGroupGloo::runLoop → take_gil → pthread_exit). It hit about one 2-process run in eight,
    with or without destroying the group, since modules that hold the model (FSDP's mesh) keep it
    alive. Sleeping releases the GIL, so a thread in that window finishes now (0.1 s is far more
    than it needs on a busy 2-core machine, though no guarantee; `bench/multiproc_exit.py` counts
    the aborts). No rank waits on another, so a rank leaving on an error cannot hang here."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
    time.sleep(_GLOO_DRAIN_S)


def _view() -> Dist:
    world = torch_dist.get_world_size()
    # Sharding one process would only add hooks: a single rank keeps the plain model.
    return Dist(torch_dist.get_rank(), world, sharded=world > 1 and sharding.requested(),
                zero=world > 1 and zero_ds.requested())


def _refuse_two_sharders() -> None:
    if sharding.requested() and zero_ds.requested():
        raise sharding.ShardingUnsupported(
            "both FSDP (ACCELERATE_USE_FSDP / AHA_SHARDING=fsdp) and DeepSpeed (ACCELERATE_USE_DEEPSPEED / "
            "AHA_SHARDING=deepspeed) were asked for; launch with one accelerate config")


def current() -> Dist:
    """The initialised group's view of this process, or the single-process stand-in."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return _view()
    return SINGLE
