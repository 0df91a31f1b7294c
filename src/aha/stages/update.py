"""One GRPO policy update on a batch of rollouts: μ optimizer steps, each over length-sorted
micro-batches whose losses add up to the full-batch loss, each prompt computed once per group and,
for the decoders `aha.stages.unpadded` covers, no linear layer run on a pad."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from aha.algo.losses import agg_loss, clipped_surrogate, kl_k3, token_logprobs_and_entropy
from aha.rollout.base import left_pad, left_pad_positions
from aha.stages import unpadded

# Causal LMs whose logits are exactly lm_head(last_hidden_state): the completion-only head applies.
FAST_HEAD_TYPES = ("qwen2", "llama", "qwen3", "mistral")


@dataclass
class RolloutBatch:
    """Flat lists over the B·G samples of one step."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    old_logprobs: list[list[float]]  # from the rollout engine (the behaviour policy)
    advantages: torch.Tensor  # (B·G,)

    @classmethod
    def from_completions(cls, prompt_ids: list[list[int]], completions, advantages: torch.Tensor) -> "RolloutBatch":
        """From a rollout engine's `Completion`s (each knowing its prompt's index) and their advantages."""
        return cls([prompt_ids[c.prompt_index] for c in completions], [c.ids for c in completions],
                   [c.logprobs for c in completions], advantages)

    @property
    def n_tokens(self) -> int:
        return sum(len(c) for c in self.completion_ids)


def _collate(batch: RolloutBatch, rows: list[int], pad_id: int, device):
    """Right-padded prompt+completion ids and the completion-aligned tensors (N, Tc)."""
    seqs = [batch.prompt_ids[i] + batch.completion_ids[i] for i in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    starts = torch.zeros(len(rows), dtype=torch.long)  # index of the logit that predicts completion token 0
    for r, i in enumerate(rows):
        ids[r, : len(seqs[r])] = torch.tensor(seqs[r])
        attn[r, : len(seqs[r])] = 1
        starts[r] = len(batch.prompt_ids[i]) - 1
    tokens, mask, old = _completion_tensors(batch, rows)
    return ids.to(device), attn.to(device), starts.to(device), tokens.to(device), mask.to(device), old.to(device)


def _completion_tensors(batch: RolloutBatch, rows: list[int]):
    """Right-padded completion tokens, their mask and the rollout's log-probs, (N, Tc) each."""
    comp_width = max(1, max(len(batch.completion_ids[i]) for i in rows))
    tokens = torch.zeros((len(rows), comp_width), dtype=torch.long)
    mask = torch.zeros((len(rows), comp_width))
    old = torch.zeros((len(rows), comp_width))
    for r, i in enumerate(rows):
        n = len(batch.completion_ids[i])
        tokens[r, :n] = torch.tensor(batch.completion_ids[i], dtype=torch.long)
        mask[r, :n] = 1
        old[r, :n] = torch.tensor(batch.old_logprobs[i])
    return tokens, mask, old


@dataclass
class _Micro:
    """One micro-batch, laid out for one of the forwards: `logprobs(model, T)` -> (N, Tc) picks the
    unpadded forward where it applies, else `logits(model)` -> (N, Tc, V)."""

    rows: list[int]  # batch rows, in the order of the tensors below
    tokens: torch.Tensor  # (N, Tc) completion tokens, right-padded
    mask: torch.Tensor  # (N, Tc)
    old: torch.Tensor  # (N, Tc) the rollout's log-probs
    # plain layout: every row is its prompt + completion
    ids: torch.Tensor | None = None
    attn: torch.Tensor | None = None
    starts: torch.Tensor | None = None
    # shared layout: each distinct prompt once (left-padded), and the prompt row of every completion
    prompt_ids: torch.Tensor | None = None  # (Gm, P)
    prompt_mask: torch.Tensor | None = None  # (Gm, P); None when no prompt is padded
    owner: torch.Tensor | None = None  # (N,) index into prompt_ids

    def logprobs(self, model, temperature: float, entropy: bool = False):
        """Log-probs (N, Tc) of the completion tokens and, if asked, their entropies (detached)."""
        if self.prompt_ids is not None and unpadded.supports(model):
            return unpadded.completion_logprobs_unpadded(model, self.prompt_ids, self.prompt_mask, self.owner,
                                                         self.tokens, self.mask, temperature, entropy)
        return token_logprobs_and_entropy(self.logits(model), self.tokens, temperature, entropy)

    def logits(self, model) -> torch.Tensor:
        if self.prompt_ids is not None:
            return completion_logits_shared(model, self.prompt_ids, self.prompt_mask, self.owner, self.tokens)
        return _completion_logits(model, self.ids, self.attn, self.starts, self.tokens.shape[1])

    @property
    def forward_tokens(self) -> int:
        """Tokens this layout runs through the model (prompts once per group when shared)."""
        if self.prompt_ids is not None:
            prompts = int(self.prompt_mask.sum()) if self.prompt_mask is not None else self.prompt_ids.numel()
            return prompts + int(self.mask.sum())
        return int(self.attn.sum())


def _plain_micro(batch: RolloutBatch, rows: list[int], pad_id: int, device) -> _Micro:
    ids, attn, starts, tokens, mask, old = _collate(batch, rows, pad_id, device)
    return _Micro(rows, tokens, mask, old, ids=ids, attn=attn, starts=starts)


def _shared_micro(batch: RolloutBatch, groups: list[list[int]], pad_id: int, device) -> _Micro:
    """Rows of one prompt are adjacent; each prompt is laid out once, left-padded so that every
    completion starts at the same column."""
    rows = [i for group in groups for i in group]
    prompt_ids, prompt_mask = left_pad([batch.prompt_ids[group[0]] for group in groups], pad_id, device)
    owner = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor([len(g) for g in groups])).to(device)
    tokens, mask, old = _completion_tensors(batch, rows)
    padded = bool((prompt_mask == 0).any())
    return _Micro(rows, tokens.to(device), mask.to(device), old.to(device), prompt_ids=prompt_ids,
                  prompt_mask=prompt_mask if padded else None, owner=owner)


def _prompt_groups(batch: RolloutBatch, cap: int) -> list[list[int]]:
    """Rows with identical prompts, in order of first appearance, split into pieces of ≤ cap rows."""
    by_prompt: dict[tuple, list[int]] = {}
    for i, prompt in enumerate(batch.prompt_ids):
        by_prompt.setdefault(tuple(prompt), []).append(i)
    return [rows[k : k + cap] for rows in by_prompt.values() for k in range(0, len(rows), cap)]


def _micro_batches(batch: RolloutBatch, micro_batch_size: int, pad_id: int, device, share_prompts: bool,
                   micro_batch_tokens: int | None = None) -> list[_Micro]:
    """Length-sorted micro-batches of ≤ micro_batch_size rows and (when given) ≤ micro_batch_tokens
    padded tokens — whichever binds first, at least one row or group each — whose losses add up to
    the batch's. With `share_prompts`, whole prompt groups go together and each prompt runs once.
    A token cap keeps long sequences' activations small enough to stay fast: at 64 × (91 + 512)
    tokens, bf16, 1 thread, 16- or 32-row micro-batches update in 12–14 s, one 64-row batch in 17 s."""
    def length(i: int) -> int:
        return len(batch.prompt_ids[i]) + len(batch.completion_ids[i])

    units = ([[i] for i in sorted(range(len(batch.completion_ids)), key=length)] if not share_prompts
             else sorted(_prompt_groups(batch, micro_batch_size), key=lambda g: max(length(i) for i in g)))

    def cost(unit_list: list[list[int]]) -> int:  # padded tokens of a micro-batch
        rows = [i for u in unit_list for i in u]
        comp = max(len(batch.completion_ids[i]) for i in rows)
        if share_prompts:
            return len(rows) * comp + len(unit_list) * max(len(batch.prompt_ids[u[0]]) for u in unit_list)
        return len(rows) * max(length(i) for i in rows)

    packed: list[list[list[int]]] = [[]]
    for unit in units:
        grown = packed[-1] + [unit]
        too_many = sum(map(len, grown)) > micro_batch_size
        too_long = micro_batch_tokens is not None and cost(grown) > micro_batch_tokens
        if packed[-1] and (too_many or too_long):
            packed.append([unit])
        else:
            packed[-1] = grown
    if not share_prompts:
        return [_plain_micro(batch, [i for u in units_ for i in u], pad_id, device) for units_ in packed]
    return [_shared_micro(batch, groups_, pad_id, device) for groups_ in packed]


def completion_logits_plain(model, ids, attn, starts, comp_width: int):
    """Reference path: the full (N, T, V) logits, then the completion rows picked out."""
    logits = model(input_ids=ids, attention_mask=attn).logits  # (N, T, V)
    index = (starts[:, None] + torch.arange(comp_width, device=ids.device)[None, :]).clamp(max=logits.shape[1] - 1)
    return logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))  # (N, Tc, V)


def _completion_logits(model, ids, attn, starts, comp_width: int):
    """Logits only where a completion token is predicted: the decoder's hidden states are gathered
    first (N, Tc, C) and only those go through the LM head, so prompt positions never pay the
    vocabulary projection and no (N, T, V) tensor is built and then gathered. Only for architectures
    whose head is a plain linear on the last hidden state (no logit scaling or soft-capping)."""
    if getattr(model.config, "model_type", None) not in FAST_HEAD_TYPES:
        return completion_logits_plain(model, ids, attn, starts, comp_width)
    # Rows are right-padded, so under causal attention no real token ever sees a pad: the mask is
    # not needed, and without it SDPA takes its causal fast path (-8 % at 140 tokens, -25 % at 520,
    # forward + backward, 1 thread; outputs on real tokens identical).
    hidden = model.model(input_ids=ids).last_hidden_state  # (N, T, C)
    index = (starts[:, None] + torch.arange(comp_width, device=ids.device)[None, :]).clamp(max=hidden.shape[1] - 1)
    picked = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))  # (N, Tc, C)
    return model.lm_head(picked)  # (N, Tc, V)


def completion_logits_shared(model, prompt_ids, prompt_mask, owner, tokens):
    """Completion logits with each prompt run once for its whole group: the prompts' K/V (kept in the
    autograd graph) are indexed out to their completions, which then run on top of them. Exactly the
    per-row forward's math; a group of G samples pays for its prompt once instead of G times (with an
    R1-Zero prompt of ~100 tokens and G = 8, about 40 % of a step's tokens). Gradients from all G
    completions flow back into the one prompt pass."""
    inner = model.model
    comp_width = tokens.shape[1]
    if prompt_mask is None:  # no padded prompt: plain causal attention everywhere, no mask to build
        prompt = inner(input_ids=prompt_ids, use_cache=True)
    else:
        positions = left_pad_positions(prompt_mask)
        prompt = inner(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True)
    first = prompt.last_hidden_state[:, -1][owner]  # (N, C): predicts completion token 0
    if comp_width == 1:
        return model.lm_head(first[:, None])
    cache = prompt.past_key_values
    cache.batch_select_indices(owner)  # differentiable gather: each completion reads its prompt's K/V
    ids = tokens[:, :-1]  # the last completion token predicts nothing we score
    if prompt_mask is None:
        hidden = inner(input_ids=ids, past_key_values=cache, use_cache=True).last_hidden_state
    else:
        attn = torch.cat([prompt_mask[owner], prompt_mask.new_ones(ids.shape)], dim=1)
        positions = prompt_mask.sum(-1)[owner][:, None] + torch.arange(ids.shape[1], device=ids.device)[None, :]
        hidden = inner(input_ids=ids, attention_mask=attn, position_ids=positions, past_key_values=cache,
                       use_cache=True).last_hidden_state
    return model.lm_head(torch.cat([first[:, None], hidden], dim=1))  # (N, Tc, V)


def can_share_prompts(model) -> bool:
    """The shared-prompt forward needs the completion-only head and full attention everywhere: a
    sliding-window cache may drop prompt K/V that the per-row forward would still attend to."""
    cfg = model.config
    return getattr(cfg, "model_type", None) in FAST_HEAD_TYPES and not unpadded.has_sliding_window(cfg)


def prefer_fast_attention(model, bf16: bool) -> None:
    """bf16 on CPU: attention through `aha.models.cpu_attention` instead of SDPA, whose CPU flash
    kernel is slow in bf16 (update of 64 × (91 + 128) tokens on a 3.3 M Qwen2, 1 thread: 2.75 →
    2.25 s). fp32 and GPUs keep their attention."""
    if (bf16 and next(model.parameters()).device.type == "cpu"
            and getattr(model.config, "_attn_implementation", None) == "sdpa"):
        from aha.models import cpu_attention

        model.set_attn_implementation(cpu_attention.register())


def _autocast(device, bf16: bool):
    """bf16 matmuls with fp32 master weights ("bf16-mixed"); a no-op context in fp32."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)


def policy_update(model, optimizer, batch: RolloutBatch, *, pad_id: int, micro_batch_size: int,
                  mu: int, eps_low: float, eps_high: float, beta: float, loss_agg: str, max_len: int,
                  temperature: float, max_grad_norm: float, ref_model=None, timings: dict | None = None,
                  bf16: bool = False, share_prompts: bool | None = None, micro_batch_tokens: int | None = None) -> dict:
    """μ optimizer steps on one batch of rollouts; returns the metrics. `timings`, when given, is
    filled with seconds spent in the reference forward, the loss forward and the backward (+ step).
    `share_prompts` (default: whenever a prompt repeats and the architecture allows) computes each
    prompt once per group; `bf16` runs the forwards and backwards under bf16 autocast."""
    clock = _Clock(timings)
    device = next(model.parameters()).device
    n_seqs, n_tokens = len(batch.completion_ids), batch.n_tokens
    if share_prompts is None:
        # The grouped layout pays when a prompt repeats (it runs once) and, where the unpadded
        # forward applies, even when none does (no matmul on a pad).
        repeats = len({tuple(p) for p in batch.prompt_ids}) < n_seqs
        share_prompts = can_share_prompts(model) and (repeats or unpadded.supports(model))
    # Built once: the reference pass and all μ inner updates read the same tensors.
    micro = _micro_batches(batch, micro_batch_size, pad_id, device, share_prompts, micro_batch_tokens)
    ref = None
    if beta > 0:
        with torch.no_grad(), _autocast(device, bf16):
            ref = [m.logprobs(ref_model, temperature)[0] for m in micro]
    clock.lap("ref")
    model.train()
    stats = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "entropy": 0.0, "grad_norm": 0.0, "rollout_logprob_gap": 0.0,
             "forward_tokens": sum(m.forward_tokens for m in micro)}
    for inner_step in range(mu):
        optimizer.zero_grad(set_to_none=True)
        for m, mb in enumerate(micro):
            with _autocast(device, bf16):
                logp, entropy = mb.logprobs(model, temperature, entropy=True)
            # With one update per batch the policy that sampled is the one being trained: the ratio
            # is exactly 1 (its gradient is A·∇log π), as in TRL. Taking the rollout's own log-probs
            # instead would turn any sampler/trainer numeric gap (bf16, another kernel) into spurious
            # clipping; the gap is logged instead. With μ > 1 the rollout's log-probs are π_old.
            old = logp.detach() if mu == 1 else mb.old
            if inner_step == 0:
                gap = ((logp.detach() - mb.old).abs() * mb.mask).sum()
                stats["rollout_logprob_gap"] += float(gap) / n_tokens
            per_token, clipped = clipped_surrogate(logp, old, batch.advantages[mb.rows].to(device), eps_low, eps_high)
            if beta > 0:
                kl = kl_k3(logp, ref[m])
                per_token = per_token + beta * kl
                stats["kl"] += float((kl.detach() * mb.mask).sum()) / n_tokens / mu
            loss = agg_loss(per_token, mb.mask, loss_agg, n_seqs, n_tokens, max_len)
            clock.lap("forward")
            loss.backward()
            with torch.no_grad():
                stats["loss"] += loss.item() / mu
                stats["clip_frac"] += float((clipped.float() * mb.mask).sum()) / n_tokens / mu
                stats["entropy"] += float((entropy * mb.mask).sum()) / n_tokens / mu
            clock.lap("backward")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        stats["grad_norm"] += float(grad_norm) / mu
        optimizer.step()
        clock.lap("backward")
    return stats


class _Clock:
    """Adds the seconds since the last lap to `laps[name]`; does nothing without a dict."""

    def __init__(self, laps: dict | None):
        self.laps, self.last = laps, time.perf_counter()

    def lap(self, name: str) -> None:
        if self.laps is None:
            return
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now
