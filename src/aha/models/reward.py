"""Reward models: a transformers `…ForSequenceClassification` with one label, scoring prompt + summary.

One text layout, shared by training (`aha rm`) and scoring (the `reward_model` reward), so the model
is scored on exactly what it learned from: the prompt as the policy sees it, a space, the summary
(`rm_text`) — never the thought (R1 §2.3.4 scores helpfulness on the summary only). The score
is the classification head's logit at the last non-pad token (transformers' pooling), batched with
right padding.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import AutoModelForSequenceClassification

from aha.models.loading import DTYPES, load_tokenizer


def rm_text(prompt: str, summary: str) -> str:
    """The scored text: the prompt, a space, the summary. (Wrapping the summary in an <answer> block,
    as the R1 template writes it, did worse on the bilingual base at lr 1e-3: held-out pairwise
    accuracy 0.63 and Spearman agreement with the rubric 0.12, against 0.66 and 0.35.)"""
    return f"{prompt} {summary}"


def context_length(model, requested: int = 0) -> int:
    """Tokens per scored text: `requested` (0 = no cap of its own), at most the model's positions."""
    limit = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    return min(requested, limit) if requested else limit


def encode(tokenizer, prompt: str, summary: str, max_length: int) -> tuple[list[int], bool]:
    """Token ids of one scored text and whether it was cut. A text too long loses its *beginning*:
    the summary at the end is what is scored, and the pooled token is the last one. (An EOS appended
    as the pooled token did worse on the bilingual base: held-out pairwise accuracy 0.60 and 0.595
    in two runs, against 0.66 and 0.655 without.)"""
    ids = tokenizer(rm_text(prompt, summary))["input_ids"]
    return (ids[-max_length:], True) if len(ids) > max_length else (ids, False)


def score_ids(model, rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """One logit per row (N,), with gradients if enabled. Right padding: positions of the real tokens
    are those of an unpadded forward, and the pooled token is each row's last non-pad token."""
    device = next(model.parameters()).device
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0].float()


@torch.no_grad()
def score_texts(model, tokenizer, prompts: Sequence[str], summaries: Sequence[str], max_length: int,
                batch_size: int = 64) -> list[float]:
    """The model's logit for each prompt + summary, in order (batched by length, no gradients)."""
    was_training = model.training
    model.eval()
    rows = [encode(tokenizer, p, s, max_length)[0] for p, s in zip(prompts, summaries)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths batch together
    out = [math.nan] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, value in zip(chunk, score_ids(model, [rows[i] for i in chunk], tokenizer.pad_token_id).tolist()):
            out[i] = value
    model.train(was_training)
    return out


def prepare(model, tokenizer):
    """A pad token for batching (EOS where the tokenizer has none), known to the model's config
    (transformers' pooling finds each row's last token by it)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:  # checked against config on save
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def init_reward_model(causal_dir: str | Path, dtype: str = "float32"):
    """A fresh one-label head on the body of a causal LM directory (transformers transfers every
    weight but the LM head; the score head starts random)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: score.weight" is the point here, not news
    try:
        model = AutoModelForSequenceClassification.from_pretrained(causal_dir, num_labels=1, dtype=DTYPES[dtype])
    finally:
        hf_logging.set_verbosity(verbosity)
    return prepare(model, load_tokenizer(Path(causal_dir)))


def load_reward_model(path: str | Path, dtype: str = "float32"):
    """A trained reward model directory (`aha rm`'s RUN/model, or any one-label classifier)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=DTYPES[dtype])
    if model.config.num_labels != 1:
        raise ValueError(f"{path}: a reward model has one output (num_labels=1), this one has "
                         f"{model.config.num_labels}")
    return prepare(model.eval(), load_tokenizer(path))


class RewardModelScorer:
    """`score(questions, summaries)`: the reward model's logits squashed by a sigmoid into (0, 1).

    Why a sigmoid: a Bradley–Terry logit has no fixed scale or offset, and summed unbounded with the
    rule rewards (each in [0, 1]) it would drown them; sigmoid(r) is the model's probability that the
    summary beats one scored 0, in the rule rewards' range, so reward weights keep their meaning."""

    def __init__(self, path: str | Path, render: Callable[[str], str], dtype: str = "float32",
                 batch_size: int = 64, device: str | torch.device | None = None):
        self.model, self.tokenizer = load_reward_model(path, dtype)
        if device is not None:
            self.model.to(device)
        self.render, self.batch_size = render, batch_size
        self.max_length = context_length(self.model)

    def logits(self, prompts: Sequence[str], summaries: Sequence[str]) -> list[float]:
        return score_texts(self.model, self.tokenizer, prompts, summaries, self.max_length, self.batch_size)

    def score(self, questions: Sequence[str], summaries: Sequence[str]) -> list[float]:
        logits = self.logits([self.render(q) for q in questions], summaries)
        return [0.5 * (1.0 + math.tanh(x / 2)) for x in logits]  # the sigmoid, without overflow
