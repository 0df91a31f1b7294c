"""Batched sampling on any torch device, through the model's own forward and KV cache.

Each prompt is prefilled once; its cache is then repeated for its n samples. Finished sequences
leave the batch, so late steps only pay for the samples still running.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from aha.rollout.base import Completion, RolloutEngine, SamplingParams


class TorchEngine(RolloutEngine):
    def __init__(self, model, tokenizer, max_batch: int = 256):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch  # samples decoded together; bounds memory

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> list[Completion]:
        per_chunk = max(1, self.max_batch // n)
        generator = torch.Generator(device="cpu").manual_seed(params.seed)
        out: list[Completion] = []
        for start in range(0, len(prompts), per_chunk):
            out += self._generate_chunk(prompts[start : start + per_chunk], params, n, start, generator)
        return out

    def _generate_chunk(self, prompts, params: SamplingParams, n: int, offset: int, generator) -> list[Completion]:
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        ids, mask = _left_pad(prompts, self.tokenizer.pad_token_id, device)  # (B, P)
        cache = DynamicCache()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
        ).logits[:, -1]  # (B, V)
        # Share each prompt's prefill across its n samples.
        cache.batch_repeat_interleave(n)
        logits, mask = logits.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)  # (B*n, ·)
        next_pos = positions[:, -1].repeat_interleave(n) + 1  # (B*n,)
        total = logits.shape[0]
        alive = torch.arange(total, device=device)  # rows of the full batch still decoding
        tokens = torch.full((total, params.max_new_tokens), -1, dtype=torch.long)
        logps = torch.zeros((total, params.max_new_tokens))
        finished = torch.zeros(total, dtype=torch.bool)
        stops = torch.tensor([self.tokenizer.eos_token_id, *params.stop_token_ids], device=device)
        for t in range(params.max_new_tokens):
            token, logp = _sample(logits, params, generator)  # (A,), (A,)
            tokens[alive.cpu(), t] = token.cpu()
            logps[alive.cpu(), t] = logp.float().cpu()
            done = torch.isin(token, stops)
            finished[alive[done].cpu()] = True
            if t == params.max_new_tokens - 1 or bool(done.all()):
                break
            keep = (~done).nonzero().squeeze(-1)
            if len(keep) < len(alive):  # finished samples leave the batch
                cache.batch_select_indices(keep)
                alive, token, mask, next_pos = alive[keep], token[keep], mask[keep], next_pos[keep]
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
            logits = self.model(
                input_ids=token[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                past_key_values=cache, use_cache=True,
            ).logits[:, -1]
            next_pos = next_pos + 1
        self.model.train(was_training)
        return [self._completion(i, tokens[i], logps[i], bool(finished[i]), n, offset) for i in range(total)]

    def _completion(self, row: int, tokens, logps, finished: bool, n: int, offset: int) -> Completion:
        length = int((tokens >= 0).sum())
        ids = tokens[:length].tolist()
        # Decode without the final EOS, but keep a stop token like </answer> in the text.
        text_ids = ids[:-1] if finished and ids and ids[-1] == self.tokenizer.eos_token_id else ids
        return Completion(
            prompt_index=offset + row // n,
            ids=ids,
            logprobs=logps[:length].tolist(),
            text=self.tokenizer.decode(text_ids, skip_special_tokens=False),
            finish_reason="stop" if finished else "length",
        )


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def _sample(logits: torch.Tensor, params: SamplingParams, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Token and its log-prob under softmax(logits / T) — the distribution the trainer scores.
    Top-p only narrows which tokens may be drawn; the log-prob stays the tempered one, as in TRL/verl."""
    logits = logits.float()
    if params.temperature == 0:
        token = logits.argmax(-1)
        return token, torch.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1)
    logp_all = torch.log_softmax(logits / params.temperature, -1)  # (A, V)
    probs = logp_all.exp()
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_p.cumsum(-1) - sorted_p >= params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
    return token, logp_all.gather(-1, token[:, None]).squeeze(-1)
