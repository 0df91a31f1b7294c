"""One GRPO step, top-down: problems → rollout → rewards → group advantages → μ clipped-surrogate
updates → the metrics row and the logged samples. With DAPO's dynamic sampling, groups whose
rewards are all equal are dropped and the step is refilled with fresh prompts.

Problems and sampling noise depend only on (seed, step, round): a resumed run draws exactly what
the uninterrupted one would have drawn. With several processes each rank samples and scores its
share of the prompts and trains on its share of the groups (`aha.stages.grpo_shard`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aha.algo.advantages import compute_advantages
from aha.config import ZeroConfig
from aha.observe.cost import CostLedger
from aha.observe.metrics import behaviour_metrics
from aha.observe.monitors import RunMonitor
from aha.rewards import combine, get_reward
from aha.rollout import SamplingParams
from aha.stages import grpo_shard
from aha.template import render_prompt
from aha.train import zero_ds
from aha.train.dist import SINGLE, Dist
from aha.train.layout import RolloutBatch
from aha.train.update import policy_update


@dataclass
class Trainer:
    """Everything a step needs, built once by `grpo.setup` (and rebuilt identically on resume)."""

    cfg: ZeroConfig
    run_dir: Path
    model: torch.nn.Module
    tokenizer: object
    task: object
    engine: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    ref_model: torch.nn.Module | None
    stops: tuple[int, ...]
    state: dict  # step, base evaluation, seconds so far — saved with checkpoints
    ledger: CostLedger  # tokens, FLOPs and seconds per phase; saved with checkpoints
    monitor: RunMonitor
    dist: Dist = SINGLE  # this process's rank among the run's processes
    scorer: object | None = None  # the reward_model reward's reward model or judge (aha.rewards.model)


@dataclass
class Rollout:
    """Groups of one step, flat over their B·G samples (group i's G samples adjacent)."""

    problems: list  # (B,)
    prompt_ids: list[list[int]]  # (B,)
    completions: list  # (B·G,), each knowing its prompt's index into the lists above
    scored: object  # RewardBreakdown over the B·G samples
    generated_groups: int = 0  # groups sampled this step, dropped ones included
    rounds: int = 1


def run_step(t: Trainer, step: int) -> tuple[dict, list[dict]]:
    """One GRPO step; returns the metrics row and the logged samples."""
    cfg, g = t.cfg, t.cfg.grpo
    clock = time.time()
    rollout, reward_seconds = _sample_groups(t, step)
    rollout_seconds = time.time() - clock - reward_seconds
    completions, scored = rollout.completions, rollout.scored
    rewards = torch.tensor(scored.total)
    advantages = compute_advantages(g.advantage, rewards, g.group_size)

    clock = time.time()
    batch = RolloutBatch.from_completions(rollout.prompt_ids, completions, advantages)
    update = policy_update(
        t.model, t.optimizer, grpo_shard.rank_share(batch, t.dist, g.group_size), pad_id=t.tokenizer.pad_token_id, micro_batch_size=g.micro_batch_size,
        mu=g.mu, eps_low=g.eps_low, eps_high=g.eps_high, beta=g.beta, loss_agg=g.loss_agg,
        max_len=cfg.rollout.max_new_tokens, temperature=max(cfg.rollout.temperature, 1e-6),
        max_grad_norm=g.max_grad_norm, ref_model=t.ref_model, bf16=cfg.model.bf16,
        micro_batch_tokens=g.micro_batch_tokens, dist=t.dist,
    )
    t.scheduler.step()
    t.engine.load_weights(t.model.state_dict())  # on-policy sync (the torch engine shares the module: no-op)
    if t.ref_model is not None and g.ref_reset_every and step % g.ref_reset_every == 0:
        with zero_ds.gathered(t.model):  # ZeRO-3: the policy's full weights (collective)
            t.ref_model.load_state_dict(t.model.state_dict())
    update_seconds = time.time() - clock
    # FLOPs follow the tokens the update really ran: prompts once per group, through every forward
    # and backward (6·N each), and through the reference's forward (2·N) when there is one.
    processed = update["forward_tokens"]
    t.ledger.add("update", seconds=update_seconds, tokens_trained=processed * g.mu,
                 tokens_forward=processed if t.ref_model is not None else 0)
    timings = {"seconds/rollout": rollout_seconds, "seconds/reward": reward_seconds, "seconds/update": update_seconds}
    judged = _accuracy_and_format(t, rollout)
    row = _metrics_row(t, step, rollout, judged, rewards, update, timings, batch.n_tokens * g.mu)
    return row, _pick_samples(t, rollout, judged, step)


def _sample_groups(t: Trainer, step: int) -> tuple[Rollout, float]:
    """The step's groups, and the seconds spent scoring them. Without dynamic sampling: one round
    of `prompts_per_step` prompts. With it: rounds of fresh prompts until that many groups have
    unequal rewards, at most `sampling_rounds` rounds; short of that, the step trains on what it has."""
    g = t.cfg.grpo
    kept: list[Rollout] = []
    reward_seconds, generated, have = 0.0, 0, 0
    for round_ in range(g.sampling_rounds if g.dynamic_sampling else 1):
        part, seconds = _generate_and_score(t, step, round_)
        reward_seconds += seconds
        generated += len(part.problems)
        if g.dynamic_sampling:
            part = _informative_groups(part, g.group_size)
        kept.append(part)
        have += len(part.problems)
        if have >= g.prompts_per_step:
            break
    rollout = _concat(kept, g.group_size, limit=g.prompts_per_step) if g.dynamic_sampling else kept[0]
    if not rollout.problems:  # every group was uninformative: train on the last round (zero advantages)
        rollout = part if part.problems else _generate_and_score(t, step, 0)[0]
    rollout.generated_groups, rollout.rounds = generated, round_ + 1
    return rollout, reward_seconds


def _generate_and_score(t: Trainer, step: int, round_: int) -> tuple[Rollout, float]:
    """The round's global prompts; this rank samples and scores its share, and the shares are
    gathered into the global rollout (one process: its share is everything)."""
    cfg, g = t.cfg, t.cfg.grpo
    clock = time.time()
    seed, sampling_seed = cfg.run.seed * 1_000_003 + step, cfg.run.seed * 7919 + step
    if round_:  # refills draw other prompts and other noise; round 0 is the plain step
        seed, sampling_seed = seed + 7_777_777 * round_, sampling_seed + 3_333_333 * round_
    problems = t.task.problems("train", g.prompts_per_step, seed=seed)
    lo, hi = t.dist.share(len(problems))
    problems = problems[lo:hi]
    prompt_ids = [t.tokenizer(render_prompt(p.question, cfg.prompt.template, t.tokenizer))["input_ids"]
                  for p in problems]
    # Row-keyed noise whenever the rows are split (or asked for): 1 and N processes then agree.
    row_noise = t.dist.active or cfg.rollout.noise == "row"
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                            top_p=cfg.rollout.top_p, stop_token_ids=t.stops, seed=sampling_seed,
                            row_offset=lo * g.group_size if row_noise else None)
    # Sharded, generate is collective (the weights are gathered): every rank calls it, prompts or not.
    completions = t.engine.generate(prompt_ids, params, n=g.group_size) if problems or t.dist.collective else []
    rollout_seconds = time.time() - clock

    clock = time.time()
    expanded = [problems[c.prompt_index] for c in completions]
    # The prompt's language, for the language-consistency reward and the mixing metric (R1 §2.3.2).
    scored = combine(cfg.rewards, [c.text for c in completions], problems=expanded, task=t.task,
                     truncated=[c.truncated for c in completions], lengths=[len(c.ids) for c in completions],
                     max_new_tokens=cfg.rollout.max_new_tokens,
                     target_language=[p.meta.get("language", "en") for p in expanded], scorer=t.scorer)
    reward_seconds = time.time() - clock
    part = grpo_shard.gather_rollout(Rollout(problems, prompt_ids, list(completions), scored), t.dist, lo)
    # The ledger counts the global batch's tokens (what every rank holds now) and this rank's seconds.
    t.ledger.add("rollout", seconds=rollout_seconds, tokens_generated=sum(len(c.ids) for c in part.completions),
                 tokens_forward=sum(len(p) for p in part.prompt_ids))
    t.ledger.add("reward", seconds=reward_seconds)
    return part, reward_seconds


def _informative_groups(part: Rollout, group_size: int) -> Rollout:
    """Only the groups whose rewards differ: an all-equal group has zero advantage everywhere."""
    totals = np.asarray(part.scored.total).reshape(-1, group_size)
    keep = [i for i, row in enumerate(totals) if row.max() > row.min()]
    return _select(part, keep, group_size)


def _select(part: Rollout, groups: list[int], group_size: int) -> Rollout:
    from aha.rewards.base import RewardBreakdown

    rows = [i * group_size + j for i in groups for j in range(group_size)]
    new_index = {old: new for new, old in enumerate(groups)}
    completions = []
    for i in rows:
        c = part.completions[i]
        completions.append(type(c)(new_index[c.prompt_index], c.ids, c.logprobs, c.text, c.finish_reason, c.extra))
    s = part.scored
    scored = RewardBreakdown([s.total[i] for i in rows], {k: [v[i] for i in rows] for k, v in s.components.items()},
                             [s.infos[i] for i in rows])
    return Rollout([part.problems[i] for i in groups], [part.prompt_ids[i] for i in groups], completions, scored)


def _concat(parts: list[Rollout], group_size: int, limit: int) -> Rollout:
    """The rounds' groups in order, at most `limit` of them."""
    from aha.rewards.base import RewardBreakdown

    out = Rollout([], [], [], RewardBreakdown([], {k: [] for k in parts[0].scored.components}, []))
    for part in parts:
        take = _select(part, list(range(min(len(part.problems), limit - len(out.problems)))), group_size)
        offset = len(out.problems)
        for c in take.completions:
            c.prompt_index += offset
        out.problems += take.problems
        out.prompt_ids += take.prompt_ids
        out.completions += take.completions
        out.scored.total += take.scored.total
        out.scored.infos += take.scored.infos
        for k, v in take.scored.components.items():
            out.scored.components[k] += v
    return out


def _metrics_row(t: Trainer, step: int, rollout: Rollout, judged: tuple, rewards, update: dict, timings: dict,
                 completion_tokens_trained: int) -> dict:
    g = t.cfg.grpo
    completions, scored = rollout.completions, rollout.scored
    texts, lengths = [c.text for c in completions], [len(c.ids) for c in completions]
    truncated = [c.truncated for c in completions]
    expanded = [rollout.problems[c.prompt_index] for c in completions]
    accuracy, formats = judged
    row = {
        "step": step,
        "reward": float(rewards.mean()),
        **{f"reward/{k}": v for k, v in scored.component_means().items()},
        # Over the samples accuracy applies to (a mixture's general prompts have none).
        "accuracy": _mean_present(accuracy),
        "format": float(np.mean(formats)),
        **behaviour_metrics(texts, lengths, [bool(a) for a in accuracy], truncated,
                            t.task.reflection_markers, rewards=scored.total, group_size=g.group_size,
                            languages=[p.meta.get("language", "en") for p in expanded]),
        **update,
        "lr": t.scheduler.get_last_lr()[0],
        **timings,
        "tokens_generated": sum(lengths),
        # Completion tokens in the loss (× μ). Not the cost ledger's `tokens_trained`, which counts
        # every token the update ran (prompts once per group): that one is `forward_tokens` × μ here.
        "completion_tokens_trained": completion_tokens_trained,
    }
    if g.dynamic_sampling:
        row["dynamic/drop_rate"] = 1.0 - len(rollout.problems) / max(rollout.generated_groups, 1)
        row["dynamic/rounds"] = rollout.rounds
    return row


def _mean_present(values: list) -> float:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else float("nan")


def _accuracy_and_format(t: Trainer, rollout: Rollout) -> tuple[list, list]:
    # Accuracy and format are always logged, weighted or not: a run rewarded on something else
    # (a user reward, format only) is still judged by whether its answers are right.
    completions, scored = rollout.completions, rollout.scored
    texts = [c.text for c in completions]
    context = dict(problems=[rollout.problems[c.prompt_index] for c in completions], task=t.task,
                   truncated=[c.truncated for c in completions])
    accuracy = scored.components.get("accuracy") or get_reward("accuracy")(texts, **context)
    formats = scored.components.get("format") or get_reward("format")(texts, **context)
    return accuracy, formats


def _pick_samples(t: Trainer, rollout: Rollout, judged: tuple, step: int) -> list[dict]:
    # One completion from each of the first `count` groups: varied problems, not one group's siblings.
    group_size, picked = t.cfg.grpo.group_size, []
    accuracy, formats = judged
    for i in range(0, len(rollout.completions), group_size)[: t.cfg.run.samples_per_step]:
        c, problem = rollout.completions[i], rollout.problems[rollout.completions[i].prompt_index]
        picked.append({
            "step": step, "question": problem.question, "reference": problem.answer, "completion": c.text,
            "reward": rollout.scored.total[i], "accuracy": accuracy[i], "format": formats[i],
            "length": len(c.ids), "truncated": c.truncated,
        })
    return picked
