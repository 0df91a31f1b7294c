"""R1-Zero: GRPO from a base model with rule rewards only.

Reads top-down: setup → a rollout per step → rewards → group advantages → μ clipped-surrogate updates
→ metrics, samples, checkpoints. Held-out pass@1 (k samples, T=0.6, top-p 0.95) is measured on the
base before the first step and on the policy after the last, with the same protocol.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aha import runs
from aha.algo.advantages import compute_advantages
from aha.config import ZeroConfig, save_config
from aha.models.loading import load_model_dir, stop_token_ids
from aha.observe.cost import CostLedger, count_params
from aha.observe.metrics import behaviour_metrics
from aha.observe.monitors import RunMonitor
from aha.rewards import combine, get_reward
from aha.rollout import SamplingParams, make_engine
from aha.stages.update import RolloutBatch, policy_update, prefer_fast_attention
from aha.tasks import get_task
from aha.template import build_prompt


@dataclass
class Trainer:
    """Everything a step needs, built once by `setup` (and rebuilt identically on resume)."""

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
    state: dict  # step, base accuracy, seconds so far — saved with checkpoints
    ledger: CostLedger  # tokens, FLOPs and seconds per phase; saved with checkpoints
    monitor: RunMonitor


def setup(cfg: ZeroConfig, run_dir: Path, model_dir: Path, resume_from: Path | None = None) -> Trainer:
    torch.set_num_threads(cfg.run.threads or usable_cores())
    torch.manual_seed(cfg.run.seed)
    source = resume_from or model_dir
    model, tokenizer = load_model_dir(source, cfg.model.dtype)
    task = get_task(cfg.task.name, **cfg.task.options)
    engine = make_engine(cfg.rollout.engine, model, tokenizer, max_batch=cfg.rollout.max_batch,
                         bf16=cfg.model.precision == "bf16-mixed")
    g = cfg.grpo
    optimizer = torch.optim.AdamW(model.parameters(), lr=g.lr, weight_decay=g.weight_decay, betas=(0.9, 0.99))
    warmup = max(1, g.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    state = {"step": 0, "base_accuracy": None, "seconds": 0.0}
    ledger = CostLedger(n_params=count_params(model))
    if resume_from is not None:
        saved = torch.load(resume_from / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        ledger = CostLedger.from_dict(state["cost"])
    prefer_fast_attention(model, cfg.model.precision == "bf16-mixed")
    ref_model = _frozen_copy(model) if g.beta > 0 else None  # beta 0 loads no reference
    if ref_model is not None and resume_from is not None and (resume_from / "reference").exists():
        ref_model.load_state_dict(torch.load(resume_from / "reference" / "weights.pt", weights_only=True))
    return Trainer(cfg, run_dir, model, tokenizer, task, engine, optimizer, scheduler, ref_model,
                   stop_token_ids(tokenizer), state, ledger, RunMonitor())


def usable_cores() -> int:
    # The cores this process may run on (a container or taskset may allow fewer than the machine
    # has); macOS has no sched_getaffinity.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _frozen_copy(model):
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def eval_params(t: Trainer, seed: int) -> SamplingParams:
    e = t.cfg.eval
    return SamplingParams(max_new_tokens=t.cfg.rollout.max_new_tokens, temperature=e.temperature, top_p=e.top_p,
                          stop_token_ids=t.stops, seed=seed)


def held_out(t: Trainer, n: int):
    # A fixed set: the same problems for the base and the final policy.
    return t.task.problems("test", n, seed=t.cfg.run.seed + 12345)


def run_step(t: Trainer, step: int) -> tuple[dict, list[dict]]:
    """One GRPO step; returns the metrics row and the logged samples."""
    cfg, g = t.cfg, t.cfg.grpo
    timings = {}
    clock = time.time()
    # Problems and sampling noise depend only on (seed, step): a resumed run draws what the
    # uninterrupted one would have drawn.
    problems = t.task.problems("train", g.prompts_per_step, seed=cfg.run.seed * 1_000_003 + step)
    prompt_ids = [t.tokenizer(build_prompt(p.question))["input_ids"] for p in problems]
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                            top_p=cfg.rollout.top_p, stop_token_ids=t.stops, seed=cfg.run.seed * 7919 + step)
    completions = t.engine.generate(prompt_ids, params, n=g.group_size)
    timings["seconds/rollout"] = time.time() - clock
    lengths = [len(c.ids) for c in completions]
    t.ledger.add("rollout", seconds=timings["seconds/rollout"], tokens_generated=sum(lengths),
                 tokens_forward=sum(len(p) for p in prompt_ids))

    clock = time.time()
    expanded = [problems[c.prompt_index] for c in completions]
    texts = [c.text for c in completions]
    truncated = [c.truncated for c in completions]
    # The prompt's language, for the language-consistency reward and the mixing metric (R1 §2.3.2).
    languages = [p.meta.get("language", "en") for p in expanded]
    scored = combine(cfg.rewards, texts, problems=expanded, task=t.task, truncated=truncated,
                     lengths=lengths, max_new_tokens=cfg.rollout.max_new_tokens,
                     target_language=languages)
    rewards = torch.tensor(scored.total)
    advantages = compute_advantages(g.advantage, rewards, g.group_size)
    timings["seconds/reward"] = time.time() - clock
    t.ledger.add("reward", seconds=timings["seconds/reward"])

    clock = time.time()
    batch = RolloutBatch.from_completions(prompt_ids, completions, advantages)
    update = policy_update(
        t.model, t.optimizer, batch, pad_id=t.tokenizer.pad_token_id, micro_batch_size=g.micro_batch_size,
        mu=g.mu, eps_low=g.eps_low, eps_high=g.eps_high, beta=g.beta, loss_agg=g.loss_agg,
        max_len=cfg.rollout.max_new_tokens, temperature=max(cfg.rollout.temperature, 1e-6),
        max_grad_norm=g.max_grad_norm, ref_model=t.ref_model, bf16=cfg.model.precision == "bf16-mixed",
        micro_batch_tokens=g.micro_batch_tokens,
    )
    t.scheduler.step()
    t.engine.load_weights(t.model.state_dict())  # on-policy sync (the torch engine shares the module: no-op)
    if t.ref_model is not None and g.ref_reset_every and step % g.ref_reset_every == 0:
        t.ref_model.load_state_dict(t.model.state_dict())
    timings["seconds/update"] = time.time() - clock
    # FLOPs follow the tokens the update really ran: prompts once per group, through every forward
    # and backward (6·N each), and through the reference's forward (2·N) when there is one.
    processed = update["forward_tokens"]
    t.ledger.add("update", seconds=timings["seconds/update"], tokens_trained=processed * g.mu,
                 tokens_forward=processed if t.ref_model is not None else 0)

    # Accuracy and format are always logged, weighted or not: a run rewarded on something else
    # (a user reward, format only) is still judged by whether its answers are right.
    context = dict(problems=expanded, task=t.task, truncated=truncated)
    accuracy = scored.components.get("accuracy") or get_reward("accuracy")(texts, **context)
    formats = scored.components.get("format") or get_reward("format")(texts, **context)
    row = {
        "step": step,
        "reward": float(rewards.mean()),
        **{f"reward/{k}": v for k, v in scored.component_means().items()},
        "accuracy": float(np.mean([a or 0.0 for a in accuracy])),
        "format": float(np.mean(formats)),
        **behaviour_metrics(texts, lengths, [bool(a) for a in accuracy], truncated,
                            t.task.reflection_markers, rewards=scored.total, group_size=g.group_size,
                            languages=languages),
        **update,
        "lr": t.scheduler.get_last_lr()[0],
        **timings,
        "tokens_generated": sum(lengths),
        # Completion tokens in the loss (× μ). Not the cost ledger's `tokens_trained`, which counts
        # every token the update ran (prompts once per group): that one is `forward_tokens` × μ here.
        "completion_tokens_trained": batch.n_tokens * g.mu,
    }
    samples = _pick_samples(completions, expanded, scored.total, accuracy, formats, step, cfg.run.samples_per_step,
                            g.group_size)
    return row, samples


def _pick_samples(completions, problems, rewards, accuracy, formats, step, count, group_size) -> list[dict]:
    # One completion from each of the first `count` groups: varied problems, not one group's siblings.
    picked = []
    for i in range(0, len(completions), group_size)[:count]:
        c = completions[i]
        picked.append({
            "step": step, "question": problems[i].question, "reference": problems[i].answer, "completion": c.text,
            "reward": rewards[i], "accuracy": accuracy[i], "format": formats[i],
            "length": len(c.ids), "truncated": c.truncated,
        })
    return picked


def save(t: Trainer) -> Path:
    t.state["cost"] = t.ledger.to_dict()
    trainer_state = {"optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(), "state": t.state}
    path = runs.save_checkpoint(t.run_dir, t.state["step"], t.model, t.tokenizer, trainer_state)
    if t.ref_model is not None:
        (path / "reference").mkdir(exist_ok=True)
        torch.save(t.ref_model.state_dict(), path / "reference" / "weights.pt")
    return path


def start_run(cfg: ZeroConfig, model_dir: Path) -> Trainer:
    run_dir = runs.fresh_run_dir(cfg.run.out_dir, cfg.run.name)
    save_config(cfg, run_dir / "config.yaml")
    t = setup(cfg, run_dir, model_dir)
    built = Path(model_dir) / "pretrain.json"
    if built.exists():  # the embedded base's own cost belongs to the result, cached or not
        stats = json.loads(built.read_text())
        t.ledger.add("pretrain", seconds=stats["wall_seconds"], tokens_trained=stats["tokens_trained"])
    return t


def resume_run(cfg: ZeroConfig, run_dir: Path) -> Trainer:
    checkpoint = runs.latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint-<step> folder to resume from")
    t = setup(cfg, run_dir, checkpoint, resume_from=checkpoint)
    runs.truncate_jsonl(run_dir / "metrics.jsonl", t.state["step"])
    runs.truncate_jsonl(run_dir / "samples.jsonl", t.state["step"])
    for row in runs.read_jsonl(run_dir / "metrics.jsonl"):  # the monitors see the whole run's history
        t.monitor.check(row)
    return t


def n_parameters(t: Trainer) -> int:
    return count_params(t.model, exclude_embeddings=False)
