"""GRPO over several processes (`aha.train.dist`): how a step's groups are split between ranks and
put back together. Every rank draws the same global prompt list from (seed, step), samples and
scores its contiguous share of the prompts (the row-keyed sampling noise makes each row's sample
what one process would have drawn), and the shares are gathered into the global rollout on every
rank — so group statistics, dynamic sampling's selection, metrics and logged samples are computed
exactly as by one process. The update then trains each rank on its contiguous share of the
(kept) groups; a group never straddles ranks, so its advantages are exact locally."""

from __future__ import annotations

import dataclasses

from aha.rewards.base import RewardBreakdown
from aha.train.dist import Dist
from aha.train.layout import RolloutBatch


def merge(parts: list, offsets: list[int]):
    """One rollout from the ranks' parts (in rank order); `offsets[r]` is part r's first prompt in
    the global list, added to its completions' prompt indices."""
    first = parts[0]
    scored = RewardBreakdown([], {k: [] for k in first.scored.components}, [])
    problems, prompt_ids, completions = [], [], []
    for part, offset in zip(parts, offsets):
        problems += part.problems
        prompt_ids += part.prompt_ids
        completions += [dataclasses.replace(c, prompt_index=c.prompt_index + offset) for c in part.completions]
        scored.total += part.scored.total
        scored.infos += part.scored.infos
        for k in scored.components:
            scored.components[k] += part.scored.components.get(k, [])
    return type(first)(problems, prompt_ids, completions, scored)


def gather_rollout(part, dist: Dist, lo: int):
    """Every rank's part, merged into the global rollout (on every rank)."""
    if not dist.active:
        return part
    parts_and_offsets = dist.gather((part, lo))
    return merge([p for p, _ in parts_and_offsets], [o for _, o in parts_and_offsets])


def rank_share(batch: RolloutBatch, dist: Dist, group_size: int) -> RolloutBatch:
    """This rank's contiguous whole groups of the global batch (rows of a group are adjacent)."""
    if not dist.active:
        return batch
    lo, hi = dist.share(len(batch.completion_ids) // group_size)
    rows = slice(lo * group_size, hi * group_size)
    old = batch.old_logprobs[rows] if batch.old_logprobs is not None else None
    return RolloutBatch(batch.prompt_ids[rows], batch.completion_ids[rows], old, batch.advantages[rows])
