"""GRPO (R1-Zero's RL, and R1's reasoning RL): `run(cfg, run_dir, events) -> summary`.

Reads top-down: setup (fresh or from the run directory's latest checkpoint) → held-out pass@1 of
the starting policy (k samples, T 0.6, top-p 0.95) → a flat loop of `grpo_step.run_step` with
periodic evaluation, monitors, the non-finite guard, logs and checkpoints → the same held-out
evaluation of the final policy → summary.json. The stage knows no terminal: progress, warnings
and metrics go out as events. SIGTERM or Ctrl-C finish the step, save, and raise `StopRequested`.

Under `torchrun`/`accelerate launch` every rank runs this same loop (`aha.train.dist`); only rank 0
emits events and writes the run directory (config, logs, samples, checkpoints, summary), and every
rank resumes from its checkpoints. Sharded (FSDP2, `aha.train.sharding`), the policy and reference
hold 1/N of their weights per rank; rollouts run on the gathered weights. Under DeepSpeed ZeRO
(`aha.train.zero_ds`) its engine holds the policy and AdamW; the reference is replicated.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from aha import runs
from aha.config import ZeroConfig, save_config
from aha.events import Events
from aha.models import lora
from aha.models.loading import load_model_dir, stop_token_ids
from aha.observe.cost import CostLedger, count_params
from aha.observe.monitors import RunMonitor
from aha.rewards.model import scorer_for
from aha.rollout import SamplingParams, make_engine
from aha.stages.evaluate import evaluate
from aha.stages.grpo_step import Trainer, run_step
from aha.stages.pretrain import base_model_dir
from aha.tasks import get_task
from aha.train import checkpoint, dist, guard, optim, session, sharding, unpadded, zero_ds
from aha.train.forward import prefer_fast_attention
from aha.train.signals import StopRequested, graceful_stop


def run(cfg: ZeroConfig, run_dir: Path, events: Events | None = None) -> dict:
    """Train to `grpo.steps`, continuing from the latest checkpoint in `run_dir` if there is one."""
    d = dist.init()
    # Other ranks stay silent: one console, one set of loggers.
    events = (events if d.is_main and events else Events()).for_stage("grpo")
    latest = d.broadcast(runs.latest_checkpoint(run_dir))  # rank 0's view: one decision for all
    t = resume(cfg, run_dir, events, latest) if latest else start(cfg, run_dir, events)
    if d.is_main:
        events = session.with_loggers(events, cfg.run, run_dir, cfg)
    session_start, seconds_before = time.time(), t.state["seconds"]
    if t.state["base_accuracy"] is None:
        e = cfg.eval
        events.info(f"evaluating the starting policy: {e.problems} held-out problems × {e.k} samples "
                    f"(T={e.temperature}, top-p {e.top_p})")
        base = held_out_eval(t, e.problems, e.k, seed=1)
        t.state["base_accuracy"], t.state["base_eval"] = base.pass_at_1, base.to_json()
        events.info(f"starting pass@1 {base.pass_at_1:.3f}  (format {base.format_rate:.2f}, "
                    f"{base.response_length_mean:.1f} tokens)")
    with graceful_stop() as stop:
        events.phase("GRPO", total=cfg.grpo.steps, completed=t.state["step"])
        for step in range(t.state["step"] + 1, cfg.grpo.steps + 1):
            row, samples = run_step(t, step)
            if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.grpo.steps:
                during = held_out_eval(t, cfg.eval.during_problems, 1, seed=2)
                row["eval/accuracy"] = during.pass_at_1
                if during.language_mixing is not None:
                    row["eval/language_mixing_rate"] = during.language_mixing["all"]
                for name, value in (during.general or {}).items():  # a mixture's general prompts
                    if name != "problems":
                        row[f"eval/{name}"] = value
            diverged = _guard_and_monitor(t, row, events)
            t.state["step"] = step
            t.state["seconds"] = seconds_before + time.time() - session_start
            if d.is_main:
                runs.append_jsonl(run_dir / "metrics.jsonl", [row])
                runs.append_jsonl(run_dir / "samples.jsonl", samples)
            events.metrics(step, row)
            if diverged:
                raise diverged
            if step % cfg.run.save_every == 0:
                save(t)
            events.advance(step, cfg.grpo.steps, _progress_info(row))
            if _any_rank(d, stop.requested):  # a signal that reached one rank stops them all, together
                raise StopRequested(stop.signum or 15, step, save(t))
    return finish(t, events, seconds_before, session_start)


def _any_rank(d: dist.Dist, flag: bool) -> bool:
    return bool(d.all_sum([float(flag)])[0]) if d.active else flag


def start(cfg: ZeroConfig, run_dir: Path, events: Events) -> Trainer:
    d = dist.current()
    with d.main_first():  # rank 0 builds (or finds) the embedded base; the others then find it cached
        model_dir = base_model_dir(cfg.model, cfg.pretrain, cfg.task, events)
    t = setup(cfg, run_dir, model_dir)
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    built = Path(model_dir) / "pretrain.json"
    if built.exists():  # the embedded base's own cost belongs to the result, cached or not
        stats = json.loads(built.read_text())
        t.ledger.add("pretrain", seconds=stats["wall_seconds"], tokens_trained=stats["tokens_trained"])
    return t


def resume(cfg: ZeroConfig, run_dir: Path, events: Events, latest: Path) -> Trainer:
    # A LoRA run continues on its original base plus the checkpoint's adapter (the checkpoint's
    # model files hold the merged weights, for plain transformers).
    model_dir = base_model_dir(cfg.model, cfg.pretrain, cfg.task, events) if cfg.model.lora.r else latest
    t = setup(cfg, run_dir, model_dir, resume_from=latest)
    with t.dist.main_first():  # the logs are rewound before any rank reads them
        if t.dist.is_main:
            session.rewind_logs(run_dir, t.state["step"], events)
    for row in runs.read_jsonl(run_dir / "metrics.jsonl"):  # the monitors see the whole run's history
        t.monitor.check(row)
    events.info(f"resuming {run_dir} from step {t.state['step']}")
    return t


def setup(cfg: ZeroConfig, run_dir: Path, model_dir: Path, resume_from: Path | None = None) -> Trainer:
    session.seed_and_threads(cfg.run)
    d = dist.current()
    model, tokenizer = load_model_dir(model_dir, cfg.model.dtype)
    model = lora.apply(model, cfg.model.lora)
    if resume_from is not None and lora.is_lora(model):
        lora.load_adapter(model, resume_from)
    d.broadcast_params(model)
    task = get_task(cfg.task.name, **cfg.task.options)

    def make(policy):
        return make_engine(cfg.rollout.engine, policy, tokenizer, max_batch=cfg.rollout.max_batch, bf16=cfg.model.bf16,
                           **cfg.rollout.options)

    g = cfg.grpo
    prefer_fast_attention(model, cfg.model.bf16)
    if cfg.model.gradient_checkpointing:
        unpadded.enable_checkpointing(model)
    ref_model = _frozen_copy(model) if g.beta > 0 else None  # beta 0 loads no reference
    if d.sharded:  # before the optimizer: sharding replaces the parameters with their shards
        sharding.check_supported(model, cfg.model, cfg.rollout.engine)
        for m in (model, ref_model):
            if m is not None:
                sharding.shard(m)
    if d.zero:
        zero_ds.check_supported(model, cfg.model, cfg.rollout.engine)
    engine = lora.MergedEngine(model, make) if lora.is_lora(model) else make(model)
    if d.sharded:
        engine = sharding.GatheredEngine(model, engine)
    optimizer = optim.adamw(model, g.lr, g.weight_decay)
    scheduler = optim.schedule(optimizer, g.warmup_steps)  # on the torch AdamW, which DeepSpeed steps
    state = {"step": 0, "base_accuracy": None, "seconds": 0.0, "bad_steps": 0}
    ledger = CostLedger(n_params=count_params(model))
    if d.zero:
        optimizer = zero_ds.initialize(model, optimizer, g.max_grad_norm, d.world)
        engine = sharding.GatheredEngine(model, engine, zero_ds.gathered)
    if resume_from is not None:
        state = {"bad_steps": 0, **checkpoint.load(resume_from, optimizer, scheduler, ref_model, model)}
        ledger = CostLedger.from_dict(state["cost"])
        # An engine with its own copy of the policy (colocated vLLM) was built from the weights on
        # disk: without this, the first resumed step would sample those, not the checkpoint's.
        engine.load_weights(model.state_dict())
    scorer = scorer_for(cfg, tokenizer, device=next(model.parameters()).device)  # None without reward_model
    return Trainer(cfg, run_dir, model, tokenizer, task, engine, optimizer, scheduler, ref_model,
                   stop_token_ids(tokenizer), state, ledger, RunMonitor(), d, scorer)


def _frozen_copy(model):
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _guard_and_monitor(t: Trainer, row: dict, events: Events):
    """Monitors' warnings and flags, then the non-finite guard (`aha.train.guard`)."""
    verdict = t.monitor.check(row)
    row.update(verdict.flags)
    for warning in verdict.warnings:
        events.warning(warning)
    return guard.check_update(row, t.state, t.cfg.run.max_bad_steps, events, runs.latest_checkpoint(t.run_dir))


def _progress_info(row: dict) -> str:
    seconds = row["seconds/rollout"] + row["seconds/reward"] + row["seconds/update"]
    return (f"reward {row['reward']:.2f}  acc {row['accuracy']:.2f}  len {row['response_length_mean']:.1f}  "
            f"reflect {row['reflection_rate']:.2f}  {row['tokens_generated'] / max(seconds, 1e-9):,.0f} tok/s")


def eval_params(t: Trainer, seed: int) -> SamplingParams:
    e = t.cfg.eval
    return SamplingParams(max_new_tokens=t.cfg.rollout.max_new_tokens, temperature=e.temperature, top_p=e.top_p,
                          stop_token_ids=t.stops, seed=seed)


def held_out(t: Trainer, n: int):
    # A fixed set: the same problems for the starting and the final policy.
    return t.task.problems("test", n, seed=t.cfg.run.seed + 12345)


def held_out_eval(t: Trainer, problems: int, k: int, seed: int):
    """Held-out pass@1 with the paper's sampling; its cost goes to the ledger's "eval" phase."""
    result = evaluate(t.engine, t.tokenizer, t.task, held_out(t, problems), k, eval_params(t, seed),
                      template=t.cfg.prompt.template, scorer=t.scorer)
    t.ledger.add("eval", seconds=result.seconds, tokens_generated=result.tokens_generated)
    return result


def save(t: Trainer) -> Path:
    """Rank 0 writes the checkpoint (the ranks' weights and optimizer states are identical, or,
    sharded, gathered to it by every rank); the others wait for it, so none runs ahead of a
    checkpoint it might have to resume from."""
    t.state["cost"] = t.ledger.to_dict()
    path = None
    if t.dist.is_main or t.dist.collective:
        path = checkpoint.save(t.run_dir, t.state["step"], t.model, t.tokenizer, t.optimizer, t.scheduler,
                               t.state, t.ref_model)
    return t.dist.broadcast(path)


def finish(t: Trainer, events: Events, seconds_before: float, session_start: float) -> dict:
    final = held_out_eval(t, t.cfg.eval.problems, t.cfg.eval.k, seed=1)
    latest = t.dist.broadcast(runs.latest_checkpoint(t.run_dir))  # save() is collective: one decision
    if latest is None or latest.name != f"checkpoint-{t.state['step']}":
        save(t)
    t.state["seconds"] = seconds_before + time.time() - session_start
    ledger = t.ledger.phases
    summary = {
        "stage": "grpo",
        "base_accuracy": t.state["base_accuracy"],
        "final_accuracy": final.pass_at_1,
        "base_eval": t.state["base_eval"],
        "final_eval": final.to_json(),
        "steps": t.state["step"],
        "wall_seconds": t.state["seconds"],
        # Training tokens only (evaluation and the base's pretraining are in the cost ledger).
        "tokens_generated": ledger["rollout"].tokens_generated if "rollout" in ledger else 0,
        "tokens_trained": ledger["update"].tokens_trained if "update" in ledger else 0,
        "parameters": count_params(t.model, exclude_embeddings=False),
        "cost": t.ledger.to_dict(),
    }
    if t.dist.is_main:
        runs.write_json(t.run_dir / "summary.json", summary)
    events.done(summary)
    return summary

