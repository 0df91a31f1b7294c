"""Training objectives as pure, registered functions: per-token log-probs in, a scalar loss and
summed statistics out. They never see a model, an optimizer or a config — `aha.train.update` runs
them over micro-batches, so every normalisation is over the *whole* batch (`n_seqs`, `n_tokens`)
and the micro-batch losses add up to the full-batch loss.

Shapes: N sequences × Tc completion tokens; `mask` (N, Tc) is 1 on real completion tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

from aha.algo.losses import agg_loss, clipped_surrogate, kl_k3
from aha.algo.registry import Registry

OBJECTIVES = Registry("objective")


@OBJECTIVES.register("grpo")
def grpo_objective(logp: Tensor, mask: Tensor, *, old_logp: Tensor, advantages: Tensor, eps_low: float,
                   eps_high: float, loss_agg: str, n_seqs: int, n_tokens: int, max_len: int,
                   beta: float = 0.0, ref_logp: Tensor | None = None) -> tuple[Tensor, dict]:
    """GRPO/PPO/DAPO: the clipped surrogate plus β·k3-KL to the reference, aggregated by `loss_agg`.
    Returns the loss and the batch-normalised sums `clip_frac` and (β > 0) `kl` of this micro-batch,
    so summing over micro-batches gives the batch's means."""
    per_token, clipped = clipped_surrogate(logp, old_logp, advantages, eps_low, eps_high)
    stats = {"clip_frac": float((clipped.float() * mask).sum()) / n_tokens}
    if beta > 0:
        kl = kl_k3(logp, ref_logp)
        per_token = per_token + beta * kl
        stats["kl"] = float((kl.detach() * mask).sum()) / n_tokens
    return agg_loss(per_token, mask, loss_agg, n_seqs, n_tokens, max_len), stats


@OBJECTIVES.register("nll")
def nll_objective(logp: Tensor, mask: Tensor, *, n_tokens: int, **_) -> tuple[Tensor, dict]:
    """Supervised fine-tuning: the mean negative log-likelihood of the completion tokens over the
    whole batch (every trained token weighs the same, whatever its row's length — TRL's default)."""
    nll = -(logp * mask).sum() / max(n_tokens, 1)
    return nll, {"nll": float(nll.detach())}


@OBJECTIVES.register("bradley_terry")
def bradley_terry_objective(chosen: Tensor, rejected: Tensor, *, n_pairs: int, **_) -> tuple[Tensor, dict]:
    """Reward-model training (Bradley–Terry, as in InstructGPT and R1's reward models): the mean over
    the whole batch's `n_pairs` pairs of −log σ(r_chosen − r_rejected), summed over this
    micro-batch's pairs (chosen, rejected: (P,) scores). Stats: the share of pairs ordered right
    and the mean score gap, also as batch-normalised sums."""
    import torch.nn.functional as F

    gap = chosen.float() - rejected.float()
    loss = -F.logsigmoid(gap).sum() / n_pairs
    detached = gap.detach()
    return loss, {"accuracy": float((detached > 0).sum()) / n_pairs, "margin": float(detached.sum()) / n_pairs}
