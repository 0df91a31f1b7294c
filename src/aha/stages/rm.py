"""Reward model (for R1's all-scenario RL, §2.3.4): `run(cfg, run_dir, events) -> summary`.

Reads top-down: preference pairs (a JSONL file of {prompt, chosen, rejected}, or synthetic pairs of
the general_bilingual task whose order comes from its hidden rubric) → a one-label sequence
classifier on a causal LM's body with a fresh score head (or the run directory's latest checkpoint)
→ held-out pairwise accuracy → epochs of seeded batches of `rm.batch_pairs` pairs, each one AdamW
step on the Bradley–Terry loss (`aha.algo.objectives`) → held-out pairwise accuracy and, for synthetic
pairs, the agreement of the model's ranking of held-out candidate summaries with the rubric →
`run_dir/model`, which `AutoModelForSequenceClassification` loads and `reward_model.path` names.

Every score reads the prompt and the **summary** only (`aha.models.reward`): exactly the text the
`reward_model` reward will score, so the thought can neither help nor hurt. One process; checkpoints
every `run.save_every` steps and at each epoch's end, and `--resume` continues exactly.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from aha import runs
from aha.algo.objectives import OBJECTIVES
from aha.config import RMConfig, save_config
from aha.events import Events
from aha.models.reward import context_length, encode, init_reward_model, load_reward_model, score_ids, score_texts
from aha.observe.stats import spearman
from aha.stages.pretrain import base_model_dir
from aha.tasks.records import RecordError, read_records
from aha.template import render_prompt, summary_text
from aha.train import checkpoint, dist, guard, optim, session
from aha.train.signals import StopRequested, graceful_stop


@dataclass(frozen=True)
class Pair:
    chosen: list[int]  # prompt + chosen summary, token ids
    rejected: list[int]
    where: str  # "file, line N" or "synthetic pair N", for reports


@dataclass
class Pairs:
    train: list[Pair]
    held_out: list[Pair]
    dropped: list[str]  # "where: why" for rows that cannot train
    truncated: int  # texts whose beginning was cut to fit the context
    source: str


def run(cfg: RMConfig, run_dir: Path, events: Events | None = None) -> dict:
    """Train for `rm.epochs`, continuing from the latest checkpoint in `run_dir` if there is one."""
    events = (events or Events()).for_stage("rm")
    t = _setup(cfg, run_dir, events)
    events = session.with_loggers(events, cfg.run, run_dir, cfg)
    if t.state["held_out_start"] is None:
        t.state["held_out_start"], t.state["agreement_start"] = t.held_out(), t.agreement()
        events.info(f"held-out pairwise accuracy at the start: {t.state['held_out_start']['accuracy']:.3f} "
                    f"({len(t.data.held_out)} pairs)")
    r = cfg.rm
    steps_per_epoch = math.ceil(len(t.data.train) / r.batch_pairs)
    total_steps = r.epochs * steps_per_epoch
    clock, seconds_before = time.time(), t.state["seconds"]
    with graceful_stop() as stop:
        events.phase("RM", total=total_steps, completed=t.state["step"])
        for step in range(t.state["step"] + 1, total_steps + 1):
            epoch, index = divmod(step - 1, steps_per_epoch)
            batch = _batch(t.data.train, epoch, index, r.batch_pairs, cfg.run.seed)
            row = {"step": step, "epoch": epoch, **train_step(t.model, t.optimizer, t.scheduler, batch, cfg, t.pad_id)}
            epoch_end = index == steps_per_epoch - 1
            if epoch_end:
                row.update({f"held_out_{k}": v for k, v in t.held_out().items()})
            diverged = guard.check_update(row, t.state, cfg.run.max_bad_steps, events, runs.latest_checkpoint(run_dir))
            t.state["step"], t.state["seconds"] = step, seconds_before + time.time() - clock
            runs.append_jsonl(run_dir / "metrics.jsonl", [row])
            events.metrics(step, row)
            if diverged:
                raise diverged
            if epoch_end or step % cfg.run.save_every == 0:
                t.save()
            events.advance(step, total_steps, f"loss {row['loss']:.4f}  acc {row['accuracy']:.2f}")
            if stop.requested:
                raise StopRequested(stop.signum or 15, step, t.save())
    return _finish(t, events)


@dataclass
class _Trainer:
    cfg: RMConfig
    run_dir: Path
    model: torch.nn.Module
    tokenizer: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    state: dict  # step, seconds, start metrics — saved with checkpoints
    data: Pairs
    max_length: int  # tokens per scored text

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def held_out(self) -> dict:
        return held_out_metrics(self.model, self.data.held_out, self.pad_id, self.cfg.rm.micro_batch_pairs)

    def agreement(self) -> dict | None:
        return rubric_agreement(self.model, self.tokenizer, self.cfg, self.max_length)

    def save(self) -> Path:
        return checkpoint.save(self.run_dir, self.state["step"], self.model, self.tokenizer, self.optimizer,
                               self.scheduler, self.state)


def _setup(cfg: RMConfig, run_dir: Path, events: Events) -> _Trainer:
    """Model (a fresh head on the body, or the latest checkpoint), pairs, optimizer and schedule, state."""
    if dist.current().active:  # every rank would train alone and write the same directory
        raise ValueError("aha rm runs in one process: launch it without torchrun / accelerate launch")
    session.seed_and_threads(cfg.run)
    latest = runs.latest_checkpoint(run_dir)
    if latest is None and ((run_dir / "summary.json").exists() or (run_dir / "model").exists()):
        raise FileExistsError(f"{run_dir}: holds a finished run and no checkpoint; aha never overwrites a run "
                              "(choose another run.name, or --force)")
    model, tokenizer = load_reward_model(latest) if latest else init_reward_model(
        base_model_dir(cfg.model, cfg.pretrain, cfg.task, events), cfg.model.dtype)
    max_length = context_length(model, cfg.data.max_length)
    data = load_pairs(cfg, tokenizer, max_length)
    for reason in data.dropped[:5]:
        events.warning(f"not trained on: {reason}")
    r = cfg.rm
    total_steps = r.epochs * math.ceil(len(data.train) / r.batch_pairs)
    optimizer = optim.adamw(model, r.lr, r.weight_decay)
    scheduler = optim.schedule(optimizer, round(r.warmup_ratio * total_steps), total_steps, r.schedule)
    state = {"step": 0, "seconds": 0.0, "bad_steps": 0, "held_out_start": None, "agreement_start": None}
    if latest is not None:
        state = checkpoint.load(latest, optimizer, scheduler)
        session.rewind_logs(run_dir, state["step"], events, names=("metrics.jsonl",))
        events.info(f"resuming {run_dir} from step {state['step']}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        session.rewind_logs(run_dir, 0, events, names=("metrics.jsonl",))  # a start killed before any checkpoint
        save_config(cfg, run_dir / "config.yaml")
    return _Trainer(cfg, run_dir, model, tokenizer, optimizer, scheduler, state, data, max_length)


def load_pairs(cfg: RMConfig, tokenizer, max_length: int) -> Pairs:
    """Tokenized pairs: the file's rows (a seeded `data.held_out` share held out), or synthetic
    general_bilingual pairs (train split; held-out pairs from the test split)."""
    if cfg.data.path:
        made, dropped, truncated = _file_pairs(cfg.data, tokenizer, max_length)
        if not made:
            raise RecordError(f"{cfg.data.path}: no pair left to train on ({len(dropped)} dropped; "
                              f"first: {dropped[:1]})")
        order = list(range(len(made)))
        random.Random(cfg.run.seed).shuffle(order)
        n_held = min(max(round(len(made) * cfg.data.held_out), 1 if cfg.data.held_out > 0 else 0), len(made) - 1)
        held = set(order[:n_held])
        return Pairs([p for i, p in enumerate(made) if i not in held], [p for i, p in enumerate(made) if i in held],
                     dropped, truncated, cfg.data.path)
    from aha.tasks.general import preference_pairs

    r, template = cfg.rm, cfg.prompt.template
    out = Pairs([], [], [], 0, f"synthetic: general_bilingual preference pairs (seed {cfg.run.seed})")
    for split, n, target in (("train", r.pairs, out.train), ("test", r.held_out_pairs, out.held_out)):
        for i, row in enumerate(preference_pairs(n, cfg.run.seed, split=split, **r.pairs_options)):
            prompt = row["prompt"] if template == "r1-zero" else render_prompt(row["question"], template, tokenizer)
            made = _pair(f"synthetic {split} pair {i + 1}", prompt, row["chosen"], row["rejected"], tokenizer,
                         max_length)
            if isinstance(made, str):
                out.dropped.append(made)
            else:
                target.append(made[0])
                out.truncated += made[1]
    return out


def _file_pairs(data_cfg, tokenizer, max_length: int) -> tuple[list[Pair], list[str], int]:
    rows = read_records(data_cfg.path)
    rows = rows[: data_cfg.limit] if data_cfg.limit else rows
    if not rows:
        raise RecordError(f"{data_cfg.path}: no rows")
    made, dropped, truncated = [], [], 0
    for line, row in rows:
        where = f"{data_cfg.path}, line {line}"
        texts = []
        for name in ("prompt", "chosen", "rejected"):
            if name not in row:
                raise RecordError(f"{where}: missing field {name!r} (row has {', '.join(map(repr, row)) or 'no fields'}; "
                                  "expected prompt, chosen, rejected)")
            if not isinstance(row[name], str):
                raise RecordError(f"{where}: field {name!r} must be text, got {type(row[name]).__name__}")
            texts.append(row[name])
        pair = _pair(where, *texts, tokenizer, max_length)
        if isinstance(pair, str):
            dropped.append(pair)
        else:
            made.append(pair[0])
            truncated += pair[1]
    return made, dropped, truncated


def _pair(where: str, prompt: str, chosen: str, rejected: str, tokenizer, max_length: int) -> tuple[Pair, int] | str:
    """A pair and how many of its two texts were cut; or why the row cannot train. A completion with
    tags is scored on its summary; a bare response is its own summary."""
    summaries = [summary_text(text, untagged="whole") for text in (chosen, rejected)]
    for name, summary in zip(("chosen", "rejected"), summaries):
        if summary is None:
            return f"{where}: field {name!r} has no summary (no <answer> block, nothing after </think>)"
    if summaries[0] == summaries[1]:
        return f"{where}: chosen and rejected have the same summary (nothing to tell apart)"
    (c, cut_c), (r, cut_r) = (encode(tokenizer, prompt, s, max_length) for s in summaries)
    return Pair(c, r, where), int(cut_c) + int(cut_r)


def _batch(train: list[Pair], epoch: int, index: int, size: int, seed: int) -> list[Pair]:
    """The `index`-th batch of `epoch` in a seeded per-epoch order (a resumed run recomputes it)."""
    order = list(range(len(train)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [train[i] for i in order[index * size : (index + 1) * size]]


def train_step(model, optimizer, scheduler, batch: list[Pair], cfg: RMConfig, pad_id: int) -> dict:
    """One AdamW step on the batch's Bradley–Terry loss, accumulated over micro-batches of pairs; a
    non-finite loss or gradient leaves weights and optimizer untouched (`skipped`)."""
    clock = time.time()
    bradley_terry = OBJECTIVES.get_or_raise("bradley_terry")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    stats = {"loss": 0.0, "accuracy": 0.0, "margin": 0.0}
    for start in range(0, len(batch), cfg.rm.micro_batch_pairs):
        chunk = batch[start : start + cfg.rm.micro_batch_pairs]
        scores = score_ids(model, [p.chosen for p in chunk] + [p.rejected for p in chunk], pad_id)
        loss, extra = bradley_terry(scores[: len(chunk)], scores[len(chunk) :], n_pairs=len(batch))
        loss.backward()
        stats["loss"] += loss.item()
        for key, value in extra.items():
            stats[key] += value
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.rm.max_grad_norm))
    skipped = not (math.isfinite(stats["loss"]) and math.isfinite(grad_norm))
    lr = scheduler.get_last_lr()[0]
    if skipped:
        optimizer.zero_grad(set_to_none=True)
    else:
        optimizer.step()
    scheduler.step()
    return {**stats, "grad_norm": grad_norm, "skipped": float(skipped), "lr": lr, "pairs": len(batch),
            "seconds/update": time.time() - clock}


@torch.no_grad()
def held_out_metrics(model, pairs: list[Pair], pad_id: int, micro: int) -> dict:
    """Pairwise accuracy (chosen scored above rejected) and mean Bradley–Terry loss; NaN when none."""
    if not pairs:
        return {"accuracy": math.nan, "loss": math.nan}
    was_training = model.training
    model.eval()
    right, loss = 0.0, 0.0
    for start in range(0, len(pairs), micro):
        chunk = pairs[start : start + micro]
        scores = score_ids(model, [p.chosen for p in chunk] + [p.rejected for p in chunk], pad_id)
        value, stats = OBJECTIVES["bradley_terry"](scores[: len(chunk)], scores[len(chunk) :], n_pairs=len(pairs))
        loss += float(value)
        right += stats["accuracy"]
    model.train(was_training)
    return {"accuracy": right, "loss": loss}


def rubric_agreement(model, tokenizer, cfg: RMConfig, max_length: int) -> dict | None:
    """For synthetic pairs: how well the model ranks every candidate summary of held-out (test split)
    prompts the way the hidden rubric does — Spearman's ρ over all of them, and the share of same-prompt
    pairs with different rubric scores that it orders like the rubric. None for a pairs file."""
    if cfg.data.path or not cfg.rm.agreement_problems:
        return None
    from aha.tasks.general import GeneralBilingualTask, candidate_summaries, helpfulness

    task = GeneralBilingualTask(**cfg.rm.pairs_options)
    rng = random.Random(f"agreement-{cfg.run.seed}")
    groups = [(p, candidate_summaries(p, rng)) for p in task.problems("test", cfg.rm.agreement_problems, cfg.run.seed + 1)]
    prompts, summaries, rubric, owner = [], [], [], []
    for index, (problem, candidates) in enumerate(groups):
        prompt = render_prompt(problem.question, cfg.prompt.template, tokenizer)
        for _, summary in candidates:
            prompts.append(prompt)
            summaries.append(summary)
            rubric.append(helpfulness(summary, problem))
            owner.append(index)
    scores = score_texts(model, tokenizer, prompts, summaries, max_length, 2 * cfg.rm.micro_batch_pairs)
    ordered = agree = 0
    for i in range(len(scores)):
        for j in range(i + 1, len(scores)):
            if owner[i] == owner[j] and rubric[i] != rubric[j]:
                ordered += 1
                agree += (scores[i] - scores[j]) * (rubric[i] - rubric[j]) > 0
    return {"spearman": spearman(scores, rubric), "pairwise": agree / ordered if ordered else math.nan,
            "summaries": len(scores), "prompts": len(groups)}


def _finish(t: _Trainer, events: Events) -> dict:
    end, agreement = t.held_out(), t.agreement()
    latest = runs.latest_checkpoint(t.run_dir)
    if latest is None or latest.name != f"checkpoint-{t.state['step']}":
        t.save()
    model_dir = t.run_dir / "model"
    t.model.save_pretrained(model_dir)
    t.tokenizer.save_pretrained(model_dir)
    data, state = t.data, t.state
    summary = {
        "stage": "rm", "source": data.source,
        "held_out_accuracy_start": state["held_out_start"]["accuracy"], "held_out_accuracy_end": end["accuracy"],
        "held_out_loss_start": state["held_out_start"]["loss"], "held_out_loss_end": end["loss"],
        "rubric_agreement_start": state["agreement_start"], "rubric_agreement_end": agreement,
        "pairs_train": len(data.train), "pairs_held_out": len(data.held_out), "pairs_dropped": len(data.dropped),
        "dropped": data.dropped[:100], "texts_truncated": data.truncated, "max_length": t.max_length,
        "steps": state["step"], "epochs": t.cfg.rm.epochs, "wall_seconds": state["seconds"],
        "model_dir": str(model_dir),
    }
    runs.write_json(t.run_dir / "summary.json", summary)
    events.done(summary)
    return summary
