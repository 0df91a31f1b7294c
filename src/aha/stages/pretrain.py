"""Build the embedded *base* model: next-token training on a synthetic corpus of task problems
with traces of mixed style and quality (direct guesses, single passes, occasional self-checks).

The corpus decides what RL can find later: the base must *sometimes* check itself (so GRPO has a
behaviour to amplify) and must usually answer directly with the error-prone first guess (so checking
pays). See `aha.tasks.division` for why its first guess cannot be trained away.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path

import torch

from aha.config import PretrainConfig
from aha.models.tiny import TinyShape, tiny_qwen2
from aha.observe.cost import count_params
from aha.models.tokenizer import train_tokenizer
from aha.tasks.base import Task
from aha.template import build_prompt


def build_corpus(task: Task, documents: int, seed: int, facts_share: float = 0.0,
                 general_share: float = 0.0) -> list[str]:
    """Documents of three kinds: a problem in the R1-Zero template with a trace completion; (a
    `facts_share` of them) plain lines of the facts the traces use; and (a `general_share`) general
    requests in the same template, answered with an empty or one-line thought in a quality mix (half
    rubric-perfect, the rest flawed, as web text is). The last two are the "general knowledge" a
    real base brings from its own pretraining."""
    rng = random.Random(seed)
    n_facts, n_general = round(documents * facts_share), round(documents * general_share)
    problems = task.problems("train", documents - n_facts - n_general, seed)
    corpus = []
    for problem in problems:
        completion = task.corpus_document(problem, rng)
        if completion is None:
            raise ValueError(f"task {task.name!r} has no synthetic traces; pretrain needs a synthetic task")
        corpus.append(build_prompt(problem.question) + completion)
    facts = [task.corpus_facts(rng) for _ in range(n_facts)]
    corpus += [f for f in facts if f]
    if n_general:  # drawn only when asked, so a corpus without them is the one it always was
        from aha.tasks.general import GeneralBilingualTask

        general = GeneralBilingualTask()
        # The train split only: held-out general prompts (the RM's and the comparison's) stay unseen.
        corpus += [build_prompt(p.question) + general.corpus_document(p, rng)
                   for p in general.problems("train", n_general, seed)]
    rng.shuffle(corpus)
    return corpus


# The probe corpus behind a base's fingerprint: big enough that a changed trace style or problem mix
# shows in it, small enough to draw in milliseconds each time a base is looked up.
FINGERPRINT_DOCUMENTS = 256


def corpus_fingerprint(task: Task, cfg: PretrainConfig) -> str:
    """A hash of a small corpus drawn by the same code and seed as the base's. A base's name hashes
    its *settings*, which stay the same when a task's `corpus_document` (or its problems) is edited;
    this changes with what the code writes, so a base built from an older corpus is not reused."""
    probe = build_corpus(task, FINGERPRINT_DOCUMENTS, cfg.seed, cfg.facts_share, cfg.general_share)
    return hashlib.sha256("\x00".join(probe).encode()).hexdigest()[:16]


def built_from(model_dir: Path) -> str | None:
    """The corpus fingerprint a base records in its pretrain.json; None for a base built before
    fingerprints were recorded (or one that is not an embedded base)."""
    stats = model_dir / "pretrain.json"
    return json.loads(stats.read_text()).get("corpus_fingerprint") if stats.exists() else None


def pretrain(cfg: PretrainConfig, task: Task, out_dir: Path, on_step=None, compact_template: bool = True) -> dict:
    """Train the tiny base model and save it (model + tokenizer) as an HF directory in `out_dir`.
    `on_step(step, total, loss)` reports progress; `compact_template` as in `train_tokenizer`. Returns the run's stats (also in pretrain.json)."""
    start = time.time()
    torch.manual_seed(cfg.seed)
    corpus = build_corpus(task, cfg.documents, cfg.seed, cfg.facts_share, cfg.general_share)
    tokenizer = train_tokenizer(corpus[:20_000], cfg.vocab_size, compact_template)
    shape = TinyShape(hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, kv_heads=cfg.kv_heads, mlp=cfg.mlp)
    model = tiny_qwen2(tokenizer, shape, cfg.seed)
    eos = tokenizer.eos_token_id
    docs = [tokenizer(text)["input_ids"] + [eos] for text in corpus]
    total_steps = cfg.epochs * math.ceil(len(docs) / cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(cfg.warmup_steps, total_steps))
    # Summed token loss over a constant: a per-batch token mean re-weights documents by the length of
    # their batch-mates, which skewed the prototype's base toward short (direct) answers.
    norm = cfg.batch_size * 24
    rng = random.Random(cfg.seed)
    model.train()
    step, tokens_trained = 0, 0
    for _ in range(cfg.epochs):
        # Plain shuffled batches. Length-bucketed ones (less padding) group documents of one trace
        # style together, and in our one trial of them the base came out far worse.
        order = list(range(len(docs)))
        rng.shuffle(order)
        for first in range(0, len(order), cfg.batch_size):
            batch = [docs[i] for i in order[first : first + cfg.batch_size]]
            ids, mask, positions, targets = pack_documents(batch, tokenizer.pad_token_id)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100, reduction="sum"
            ) / norm
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            predicted = int((targets != -100).sum())
            tokens_trained += predicted + len(batch)  # every document token passes forward and backward
            if on_step is not None:
                on_step(step, total_steps, loss.item() * norm / max(predicted, 1))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    n_params = count_params(model, exclude_embeddings=False)
    stats = {
        "documents": len(docs), "steps": step, "tokens_trained": tokens_trained, "parameters": n_params,
        "flops": 6 * n_params * tokens_trained, "wall_seconds": time.time() - start,
        "corpus_fingerprint": corpus_fingerprint(task, cfg),
    }
    (out_dir / "pretrain.json").write_text(json.dumps(stats, indent=2))
    return stats


def pack_documents(batch: list[list[int]], pad_id: int, row_tokens: int = 128):
    """Pack whole documents into rows (first fit, longest first) with a block-diagonal causal mask and
    positions restarting at 0 per document: exactly the per-document computation, minus the ~40 %
    of compute that padding each document to the batch's longest one wasted.
    Returns ids (R, C), a 4-D additive mask (R, 1, C, C), position ids (R, C) and targets (R, C)
    with -100 wherever no next token of the same document exists."""
    width = max(row_tokens, max(len(d) for d in batch))
    rows: list[list[list[int]]] = []
    for doc in sorted(batch, key=len, reverse=True):
        row = next((r for r in rows if sum(map(len, r)) + len(doc) <= width), None)
        if row is None:
            rows.append([doc])
        else:
            row.append(doc)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    allowed = torch.zeros((len(rows), width, width), dtype=torch.bool)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    for r, row in enumerate(rows):
        start = 0
        for doc in row:
            end = start + len(doc)
            ids[r, start:end] = torch.tensor(doc)
            positions[r, start:end] = torch.arange(len(doc))
            targets[r, start : end - 1] = ids[r, start + 1 : end]
            allowed[r, start:end, start:end] = causal[: len(doc), : len(doc)]
            start = end
        allowed[r, start:, start:] = causal[: width - start, : width - start]  # padding sees itself only
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))[:, None]
    return ids, mask, positions, targets


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def ensure_base_model(pretrain_cfg: PretrainConfig, task_cfg, events=None, rebuild: bool = False) -> Path:
    """The HF directory of the embedded base for these settings: the user's cache, else the copy
    shipped in the package (default settings only), else built now from its seed (and cached)."""
    import os
    import shutil

    from aha.events import Events
    from aha.models.loading import embedded_base_dir, is_complete_model_dir, shipped_base_dir
    from aha.tasks import get_task
    from aha.tasks.mixture import embedded_base_task

    events = (events or Events()).for_stage("pretrain")
    task_cfg = embedded_base_task(task_cfg)  # a mixture has no corpus of its own: its base part's base
    task = get_task(task_cfg.name, **task_cfg.options)
    target = embedded_base_dir(pretrain_cfg, task_cfg)
    fingerprint = corpus_fingerprint(task, pretrain_cfg)
    if not rebuild and is_complete_model_dir(target):
        if built_from(target) in (fingerprint, None):  # None: cached before fingerprints; trusted as before
            events.info(f"base model: cached at {target}")
            return target
        events.warning(f"base model at {target} was built from another corpus than this aha's task "
                       f"{task_cfg.name!r} writes (its code changed since); rebuilding it")
    shipped = shipped_base_dir(pretrain_cfg, task_cfg)
    if not rebuild and shipped is not None:
        recorded = built_from(shipped)
        if recorded == fingerprint:
            events.info(f"base model: shipped with aha ({shipped.name}); `aha pretrain --rebuild` rebuilds it")
            return shipped
        why = ("records no corpus fingerprint" if recorded is None
               else f"was built from another corpus than this aha's task {task_cfg.name!r} writes")
        events.warning(f"the base shipped with aha ({shipped.name}) {why}; building one from the current corpus instead")
    events.info(f"building the embedded base model (once; cached at {target})")
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    events.phase("pretrain")
    stats = pretrain(pretrain_cfg, task, tmp,
                     on_step=lambda s, total, loss: events.advance(s, total, f"loss {loss:.3f}"))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    events.info(f"base model built: {stats['parameters']:,} parameters, {stats['tokens_trained']:,} tokens, "
                f"{stats['wall_seconds']:.0f} s")
    return target


def base_model_dir(model_cfg, pretrain_cfg: PretrainConfig, task_cfg, events=None) -> Path:
    """Where a stage's starting weights are: the user's directory, or the embedded base."""
    if model_cfg.path != "embedded":
        return Path(model_cfg.path)
    return ensure_base_model(pretrain_cfg, task_cfg, events)
