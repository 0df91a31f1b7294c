"""One optimizer update over a batch, shared by GRPO and SFT: micro-batches are laid out once
(`aha.train.layout`), each runs the completion forward and a registered objective
(`aha.algo.objectives`), gradients accumulate over them, and the step is taken only when the loss
and the gradient norm are finite — otherwise weights and optimizer state stay untouched and the
result says so (`skipped`), for the trainer's non-finite guard."""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from aha.algo.objectives import OBJECTIVES
from aha.train import sharding, unpadded, zero_ds
from aha.train.dist import SINGLE, Dist
from aha.train.forward import autocast, can_share_prompts, prefer_fast_attention  # noqa: F401 (re-exported)
from aha.train.layout import MicroBatch, RolloutBatch, micro_batches


def optimizer_step(model, optimizer, micro: list[MicroBatch], loss_of: Callable, *, temperature: float,
                   max_grad_norm: float, bf16: bool, n_tokens: int, clock=None, log_gap: bool = False,
                   entropy: bool = True, dist: Dist = SINGLE) -> dict:
    """Accumulate `loss_of(index, micro_batch, logp) -> (loss, stats)` over the micro-batches and
    take one optimizer step. Returns summed stats plus loss, entropy, grad_norm, `skipped` (1.0 when
    the loss or gradient norm was not finite and no step was taken) and, with `log_gap`, the mean
    |trainer − rollout| log-prob gap. `entropy=False` (SFT, which does not log it) skips the
    per-token entropy and leaves it out of the stats. With several processes (`dist`), `micro` is
    this rank's share and `n_tokens` the global count: gradients and stats are summed over ranks
    before the step, so every rank clips, checks and steps on the same global gradient."""
    clock = clock or _Clock(None)
    device = next(model.parameters()).device
    stats = {"loss": 0.0, "entropy": 0.0} if entropy else {"loss": 0.0}
    if log_gap:
        stats["rollout_logprob_gap"] = 0.0
    fillers = _fillers(micro, dist, device)  # agreed before any pass: the count is a collective itself
    # DeepSpeed's backward (its gradient hooks and reductions), or autograd's.
    backward = optimizer.backward if zero_ds.is_zero(optimizer) else torch.Tensor.backward
    optimizer.zero_grad(set_to_none=True)
    for m, mb in enumerate(micro):
        with autocast(device, bf16):
            logp, ent = mb.logprobs(model, temperature, entropy=entropy)
        if log_gap:
            stats["rollout_logprob_gap"] += float(((logp.detach() - mb.old).abs() * mb.mask).sum()) / n_tokens
        loss, extra = loss_of(m, mb, logp)
        clock.lap("forward")
        backward(loss)
        with torch.no_grad():
            stats["loss"] += loss.item()
            if entropy:
                stats["entropy"] += float((ent * mb.mask).sum()) / n_tokens
            for key, value in extra.items():
                stats[key] = stats.get(key, 0.0) + value
        clock.lap("backward")
    for mb in fillers:  # sharded: as many backwards as the busiest rank, adding nothing
        with autocast(device, bf16):
            logp, _ = mb.logprobs(model, temperature)
        backward(logp.sum() * 0.0)
        clock.lap("backward")
    if dist.active:
        dist.all_reduce_grads(model)  # a no-op when sharded: FSDP / DeepSpeed reduced them
        stats = _summed_over_ranks(stats, dist)
    if zero_ds.is_zero(optimizer):
        _zero_step(optimizer, stats)
        clock.lap("backward")
        return stats
    # Over DTensor gradient shards (sharded) the norm is the global one, computed collectively.
    grad_norm = sharding.full_norm(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
    stats["grad_norm"] = grad_norm
    # A NaN/inf loss or gradient would turn every weight (and Adam's moments) non-finite for good:
    # skip the step, leaving both untouched, and let the trainer decide whether to go on.
    stats["skipped"] = 0.0 if math.isfinite(stats["loss"]) and math.isfinite(grad_norm) else 1.0
    if stats["skipped"]:
        optimizer.zero_grad(set_to_none=True)
    else:
        optimizer.step()
    clock.lap("backward")
    return stats


def _zero_step(optimizer, stats: dict) -> None:
    """DeepSpeed clips to the trainer's max_grad_norm (its config's gradient_clipping) and skips
    the step itself when the global gradient norm is not finite; `skipped` reports what it did. A
    non-finite loss whose gradients stay finite (not seen in practice: a NaN/inf log-prob carries
    into its gradient) would still be stepped here; the guard sees the loss in the row."""
    stats["grad_norm"], applied = optimizer.step()
    stats["skipped"] = 0.0 if applied else 1.0


def _fillers(micro: list[MicroBatch], dist: Dist, device) -> list[MicroBatch]:
    """With a sharded model every forward and backward is a chain of collectives (each layer's
    all-gather, each gradient's reduce-scatter), matched call for call between ranks: a rank with
    fewer micro-batches than the busiest one runs extra passes — its last micro-batch again, or a
    one-token stand-in when it has none — whose loss is multiplied by 0 (no gradient, no stats)."""
    if not dist.collective:
        return []
    most = max(dist.gather(len(micro)))
    if most == len(micro):
        return []
    stand_in = micro[-1] if micro else micro_batches(RolloutBatch([[0]], [[0]], None, None), 1, 0, device,
                                                     share_prompts=True)[0]
    return [stand_in] * (most - len(micro))


def _summed_over_ranks(stats: dict, dist: Dist) -> dict:
    """Stats are sums normalised by global counts: their sum over ranks is the global batch's. A
    rank with no rows this step lacks the objective's keys: the key set is agreed first."""
    keys = sorted(set().union(*dist.gather(sorted(stats))))
    return dict(zip(keys, dist.all_sum([stats.get(k, 0.0) for k in keys])))


def policy_update(model, optimizer, batch: RolloutBatch, *, pad_id: int, micro_batch_size: int,
                  mu: int, eps_low: float, eps_high: float, beta: float, loss_agg: str, max_len: int,
                  temperature: float, max_grad_norm: float, ref_model=None, timings: dict | None = None,
                  bf16: bool = False, share_prompts: bool | None = None, micro_batch_tokens: int | None = None,
                  dist: Dist = SINGLE) -> dict:
    """μ GRPO optimizer steps on one batch of rollouts; returns the metrics (averaged over the μ
    steps; `skipped` counts the steps the non-finite guard refused). `timings`, when given, is
    filled with seconds spent in the reference forward, the loss forward and the backward (+ step).
    `share_prompts` (default: whenever a prompt repeats and the architecture allows) computes each
    prompt once per group; `bf16` runs the forwards and backwards under bf16 autocast. With several
    processes, `batch` is this rank's share of the step's groups: the loss is normalised by the
    global sequence and token counts, so the ranks' gradients add up to the global batch's."""
    clock = _Clock(timings)
    device = next(model.parameters()).device
    n_local = len(batch.completion_ids)
    n_seqs, n_tokens = (int(x) for x in dist.all_sum([n_local, batch.n_tokens]))
    if share_prompts is None:
        # The grouped layout pays when a prompt repeats (it runs once) and, where the unpadded
        # forward applies, even when none does (no matmul on a pad).
        repeats = len({tuple(p) for p in batch.prompt_ids}) < n_seqs
        share_prompts = can_share_prompts(model) and (repeats or unpadded.supports(model))
    # Built once: the reference pass and all μ inner updates read the same tensors.
    micro = micro_batches(batch, micro_batch_size, pad_id, device, share_prompts, micro_batch_tokens) if n_local else []
    ref = None
    if beta > 0:
        fillers = _fillers(micro, dist, device)  # a sharded reference's collectives, matched
        with torch.no_grad(), autocast(device, bf16):
            ref = [m.logprobs(ref_model, temperature)[0] for m in micro]
            for m in fillers:
                m.logprobs(ref_model, temperature)
    clock.lap("ref")
    model.train()
    objective = OBJECTIVES.get_or_raise("grpo")
    totals = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "entropy": 0.0, "grad_norm": 0.0, "skipped": 0.0,
              "forward_tokens": int(dist.all_sum([sum(m.forward_tokens for m in micro)])[0])}
    for inner_step in range(mu):
        def loss_of(m: int, mb: MicroBatch, logp):
            # With one update per batch the policy that sampled is the one being trained: the ratio
            # is exactly 1 (its gradient is A·∇log π), as in TRL. Taking the rollout's own log-probs
            # instead would turn any sampler/trainer numeric gap (bf16, another kernel) into spurious
            # clipping; the gap is logged instead. With μ > 1 the rollout's log-probs are π_old.
            old = logp.detach() if mu == 1 else mb.old
            return objective(logp, mb.mask, old_logp=old, advantages=batch.advantages[mb.rows].to(device),
                             eps_low=eps_low, eps_high=eps_high, loss_agg=loss_agg, n_seqs=n_seqs,
                             n_tokens=n_tokens, max_len=max_len, beta=beta, ref_logp=ref[m] if ref else None)

        step = optimizer_step(model, optimizer, micro, loss_of, temperature=temperature, max_grad_norm=max_grad_norm,
                              bf16=bf16, n_tokens=n_tokens, clock=clock, log_gap=inner_step == 0, dist=dist)
        if inner_step == 0:
            totals["rollout_logprob_gap"] = step.pop("rollout_logprob_gap")
        for key, value in step.items():
            totals[key] += value if key == "skipped" else value / mu
    return totals


class _Clock:
    """Adds the seconds since the last lap to `laps[name]`; does nothing without a dict."""

    def __init__(self, laps: dict | None):
        self.laps, self.last = laps, time.perf_counter()

    def lap(self, name: str) -> None:
        if self.laps is None:
            return
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now
