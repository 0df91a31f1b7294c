"""Supervised fine-tuning (R1's cold start and rejection-sampling SFT; distillation's student):
`run(cfg, run_dir, events) -> summary`.

Reads top-down: data (`aha.train.sft_data`: completion/assistant tokens only, rows that would
train on nothing reported) → model, optimizer, schedule (fresh, or from the run directory's
latest checkpoint) → held-out loss → epochs of seeded batches of `sft.batch_rows` rows, each one
optimizer step over token-budgeted micro-batches in the unpadded layout (packing without
cross-document attention: every linear layer runs on real tokens only) → held-out loss → the final
HF model directory in `run_dir/model`, which `transformers` loads and `aha zero model=…` continues.
Under `torchrun`/`accelerate launch` each rank trains on its share of every batch's rows (loss over
the global token count, gradients summed: `aha.train.dist`; the model replicated, sharded with
FSDP2: `aha.train.sharding`, or held by DeepSpeed's ZeRO engine: `aha.train.zero_ds`); rank 0 alone
writes the run directory.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch

from aha import runs
from aha.algo.objectives import OBJECTIVES
from aha.config import SFTConfig, save_config
from aha.events import Events
from aha.models import lora
from aha.models.loading import load_model_dir
from aha.observe.cost import CostLedger, count_params
from aha.stages.pretrain import base_model_dir
from aha.train import checkpoint, dist, guard, optim, session, sharding, unpadded, zero_ds
from aha.train.forward import autocast, prefer_fast_attention
from aha.train.layout import RolloutBatch, sft_micro_batches
from aha.train.sft_data import Example, load_dataset
from aha.train.signals import StopRequested, graceful_stop
from aha.train.update import optimizer_step


def run(cfg: SFTConfig, run_dir: Path, events: Events | None = None) -> dict:
    """Train for `sft.epochs`, continuing from the latest checkpoint in `run_dir` if there is one."""
    d = dist.init()
    events = (events if d.is_main and events else Events()).for_stage("sft")  # one console, one logger set
    session.seed_and_threads(cfg.run)
    latest = d.broadcast(runs.latest_checkpoint(run_dir))
    model, tokenizer = _load_policy(cfg, latest, events, d)
    data = load_dataset(cfg.data, tokenizer, cfg.run.seed)
    for reason in data.dropped[:5]:
        events.warning(f"not trained on: {reason}")
    s = cfg.sft
    steps_per_epoch = math.ceil(len(data.train) / s.batch_rows)
    total_steps = s.epochs * steps_per_epoch
    optimizer, scheduler = _prepare(cfg, model, total_steps, d)
    state = {"step": 0, "seconds": 0.0, "bad_steps": 0, "held_out_loss_start": None}
    ledger = CostLedger(n_params=count_params(model))
    if latest is not None:
        state = checkpoint.load(latest, optimizer, scheduler, model=model)
        ledger = CostLedger.from_dict(state["cost"])
        if d.is_main:
            session.rewind_logs(run_dir, state["step"], events, names=("metrics.jsonl",))
        events.info(f"resuming {run_dir} from step {state['step']}")
    elif d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    if d.is_main:
        events = session.with_loggers(events, cfg.run, run_dir, cfg)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    trainer = _Trainer(cfg, run_dir, model, tokenizer, optimizer, scheduler, state, ledger, pad_id)

    if state["held_out_loss_start"] is None:
        state["held_out_loss_start"] = trainer.held_out_loss(data.held_out)
    clock, seconds_before = time.time(), state["seconds"]
    with graceful_stop() as stop:
        events.phase("SFT", total=total_steps, completed=state["step"])
        for step in range(state["step"] + 1, total_steps + 1):
            epoch, index = divmod(step - 1, steps_per_epoch)
            row = trainer.train_step(step, epoch, _batch(data.train, epoch, index, s.batch_rows, cfg.run.seed))
            if (s.eval_every and step % s.eval_every == 0) or (not s.eval_every and index == steps_per_epoch - 1):
                row["held_out_loss"] = trainer.held_out_loss(data.held_out)
            diverged = guard.check_update(row, state, cfg.run.max_bad_steps, events, runs.latest_checkpoint(run_dir))
            state["step"], state["seconds"] = step, seconds_before + time.time() - clock
            if d.is_main:
                runs.append_jsonl(run_dir / "metrics.jsonl", [row])
            events.metrics(step, row)
            if diverged:
                raise diverged
            if step % cfg.run.save_every == 0:
                trainer.save()
            events.advance(step, total_steps, f"loss {row['loss']:.4f}  lr {row['lr']:.2e}")
            if (d.all_sum([float(stop.requested)])[0] > 0) if d.active else stop.requested:  # all ranks stop together
                raise StopRequested(stop.signum or 15, step, trainer.save())
    return _finish(trainer, data, events)


def _prepare(cfg: SFTConfig, model, total_steps: int, d: dist.Dist):
    """The policy made ready to train (attention, checkpointing, FSDP shards), then its AdamW and
    schedule — under DeepSpeed, the engine over both (the schedule stays on the torch AdamW)."""
    s = cfg.sft
    prefer_fast_attention(model, cfg.model.bf16)
    if cfg.model.gradient_checkpointing:
        unpadded.enable_checkpointing(model)
    if d.sharded:  # before the optimizer: sharding replaces the parameters with their shards
        sharding.check_supported(model, cfg.model, "torch")
        sharding.shard(model)
    if d.zero:
        zero_ds.check_supported(model, cfg.model, "torch")
    optimizer = optim.adamw(model, s.lr, s.weight_decay)
    scheduler = optim.schedule(optimizer, round(s.warmup_ratio * total_steps), total_steps, s.schedule)
    if d.zero:
        optimizer = zero_ds.initialize(model, optimizer, s.max_grad_norm, d.world)
    return optimizer, scheduler


def _load_policy(cfg: SFTConfig, latest: Path | None, events: Events, d: dist.Dist):
    """The policy to train: the base (fresh), or the latest checkpoint — which for a LoRA run is
    the original base plus the checkpoint's adapter (the checkpoint's model files hold the merged
    weights). Rank 0 builds a missing embedded base first; every rank then holds rank 0's weights."""
    with d.main_first():
        base = None if latest and not cfg.model.lora.r else base_model_dir(cfg.model, cfg.pretrain, cfg.task, events)
    model, tokenizer = load_model_dir(base or latest, cfg.model.dtype)
    model = lora.apply(model, cfg.model.lora)
    if latest is not None and lora.is_lora(model):
        lora.load_adapter(model, latest)
    d.broadcast_params(model)
    return model, tokenizer


def _batch(train: list[Example], epoch: int, index: int, rows: int, seed: int) -> list[Example]:
    """The `index`-th batch of `epoch`: a seeded shuffle per epoch, so a resumed run (which
    recomputes the order) trains on exactly the batches the uninterrupted one would have."""
    order = list(range(len(train)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [train[i] for i in order[index * rows : (index + 1) * rows]]


class _Trainer:
    def __init__(self, cfg, run_dir, model, tokenizer, optimizer, scheduler, state, ledger, pad_id):
        self.cfg, self.run_dir, self.model, self.tokenizer = cfg, run_dir, model, tokenizer
        self.optimizer, self.scheduler, self.state, self.ledger, self.pad_id = optimizer, scheduler, state, ledger, pad_id
        self.device = next(model.parameters()).device
        self.dist = dist.current()

    def _micro(self, examples: list[Example]):
        batch = RolloutBatch([e.prompt_ids for e in examples], [e.completion_ids for e in examples], None, None)
        # The unpadded layout packs rows into one flat sequence per micro-batch with attention kept
        # inside each row; a prefix all rows share (the prompt template) runs once per micro-batch.
        return batch, sft_micro_batches(batch, self.pad_id, self.device, self.cfg.sft.micro_batch_tokens,
                                        share_prefix=self.cfg.sft.share_prefix)

    def train_step(self, step: int, epoch: int, examples: list[Example]) -> dict:
        clock = time.time()
        lo, hi = self.dist.share(len(examples))  # this rank's rows; the loss is over the global tokens
        batch, micro = self._micro(examples[lo:hi]) if hi > lo else (None, [])
        n_tokens = int(self.dist.all_sum([batch.n_tokens if batch else 0])[0])
        nll = OBJECTIVES.get_or_raise("nll")
        self.model.train()
        stats = optimizer_step(self.model, self.optimizer, micro,
                               lambda m, mb, logp: nll(logp, mb.loss_mask, n_tokens=n_tokens),
                               temperature=1.0, max_grad_norm=self.cfg.sft.max_grad_norm, bf16=self.cfg.model.bf16,
                               n_tokens=n_tokens, entropy=False, dist=self.dist)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        seconds = time.time() - clock
        # The rows' own tokens (prompt + completion, what the data holds) and what ran through the
        # model: fewer where a shared prefix ran once per micro-batch.
        row_tokens = sum(len(e.prompt_ids) + len(e.completion_ids) for e in examples)
        forward_tokens = int(self.dist.all_sum([sum(m.forward_tokens for m in micro)])[0])
        self.ledger.add("update", seconds=seconds, tokens_trained=forward_tokens)
        return {"step": step, "epoch": epoch, "loss": stats["loss"], "grad_norm": stats["grad_norm"],
                "skipped": stats["skipped"], "lr": lr, "rows": len(examples),
                "tokens_trained": n_tokens, "row_tokens": row_tokens, "forward_tokens": forward_tokens,
                "seconds/update": seconds, "tokens_per_second": row_tokens / max(seconds, 1e-9)}

    @torch.no_grad()
    def held_out_loss(self, examples: list[Example]) -> float:
        """Mean NLL per completion token on the held-out rows (NaN when none are held out)."""
        if not examples:
            return math.nan
        self.model.eval()
        batch, micro = self._micro(examples)
        total = 0.0
        with autocast(self.device, self.cfg.model.bf16):
            for mb in micro:
                logp, _ = mb.logprobs(self.model, 1.0)
                total += float(-(logp.float() * mb.loss_mask).sum())
        return total / max(batch.n_tokens, 1)

    def save(self) -> Path:
        """Rank 0 writes (every rank holds the same weights and optimizer state, or, sharded, every
        rank gathers them to rank 0); the others wait."""
        self.state["cost"] = self.ledger.to_dict()
        path = None
        if self.dist.is_main or self.dist.collective:
            path = checkpoint.save(self.run_dir, self.state["step"], self.model, self.tokenizer, self.optimizer,
                                   self.scheduler, self.state)
        return self.dist.broadcast(path)


def _finish(t: _Trainer, data, events: Events) -> dict:
    end_loss = t.held_out_loss(data.held_out)
    latest = t.dist.broadcast(runs.latest_checkpoint(t.run_dir))  # save() is collective: one decision
    if latest is None or latest.name != f"checkpoint-{t.state['step']}":
        t.save()
    model_dir = t.run_dir / "model"
    # Sharded: the full weights gathered to rank 0 (every rank takes part); merged with a LoRA policy (+ adapter/).
    saving = checkpoint.FullWeights(t.model, sharding.full_state_dict(t.model)) if t.dist.sharded else lora.for_saving(t.model)
    with zero_ds.gathered(t.model):  # ZeRO-3: the full weights on every rank (collective)
        if t.dist.is_main:
            saving.save_pretrained(model_dir)
            t.tokenizer.save_pretrained(model_dir)
    phases = t.ledger.phases
    summary = {
        "stage": "sft", "held_out_loss_start": t.state["held_out_loss_start"], "held_out_loss_end": end_loss,
        "rows_train": len(data.train), "rows_held_out": len(data.held_out), "rows_dropped": len(data.dropped),
        "dropped": data.dropped[:100], "steps": t.state["step"], "wall_seconds": t.state["seconds"],
        "tokens_trained": phases["update"].tokens_trained if "update" in phases else 0,
        "model_dir": str(model_dir), "cost": t.ledger.to_dict(),
    }
    if t.dist.is_main:
        runs.write_json(t.run_dir / "summary.json", summary)
    events.done(summary)
    return summary
