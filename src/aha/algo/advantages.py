"""Group-relative advantage estimators. Input and output are flat (B*G,) tensors, grouped:
prompt 0's G samples first, then prompt 1's, …"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is not imported here: a config names an estimator, and checking that
    from torch import Tensor  # name at load time should not cost torch's import (`aha zero` fails in < 2 s)

from aha.algo.registry import Registry

ADVANTAGES = Registry("advantage estimator")


def compute_advantages(name: str, rewards: Tensor, group_size: int) -> Tensor:
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be flat with a multiple of group_size={group_size} entries, got {tuple(rewards.shape)}")
    return ADVANTAGES.get_or_raise(name)(rewards, group_size)


@ADVANTAGES.register("grpo")
def grpo_advantages(rewards: Tensor, group_size: int, eps: float = 1e-4) -> Tensor:  # (B*G,) -> (B*G,)
    """A_i = (r_i − mean(r)) / (std(r) + eps) within each group (DeepSeekMath eq. 3).
    The std is the sample std (n−1), as in the reference implementations; a group whose rewards
    are all equal gets zero advantage — it carries no signal."""
    grouped = rewards.view(-1, group_size).float()
    centred = grouped - grouped.mean(-1, keepdim=True)
    std = grouped.std(-1, keepdim=True, unbiased=True) if group_size > 1 else centred.new_zeros(centred[:, :1].shape)
    return (centred / (std + eps)).view(-1)


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantages(rewards: Tensor, group_size: int) -> Tensor:  # (B*G,) -> (B*G,)
    """Dr. GRPO (Liu et al. 2025): mean-centred only. Dividing by the std up-weights groups that are
    nearly all right or all wrong (low std) — a question-difficulty bias."""
    grouped = rewards.view(-1, group_size).float()
    return (grouped - grouped.mean(-1, keepdim=True)).view(-1)


@ADVANTAGES.register("rloo")
def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:  # (B*G,) -> (B*G,)
    """REINFORCE leave-one-out: r_i minus the mean of the other G−1 rewards of its group."""
    if group_size < 2:
        raise ValueError("rloo needs group_size >= 2")
    grouped = rewards.view(-1, group_size).float()
    others = (grouped.sum(-1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).view(-1)
