"""The update's forward with no work on padding: completion log-probs for a micro-batch of prompt
groups, every linear layer (q/k/v/o, MLP, LM head) run only on real tokens.

Why: RL completions differ in length — in the demo a group's samples run 10 to 60 tokens — and a
padded (rows × longest) layout spends most of its matmuls on pads (2.5–3× the real tokens in the
demo's steps). Here the tokens of the whole micro-batch are one flat (T, C) sequence for everything
that is per token; only attention goes back to a padded (rows × keys) layout, built per layer by an
index copy, because its keys are per row. Each prompt is computed once for its group, and its K/V
are read by all the group's completions (as `update.completion_logits_shared` does through the
model's cache).

It calls the model's own modules (norms, projections, `q_norm`/`k_norm` where present, rotary
embedding, MLP, head), so weights, biases and RoPE variants are the model's; only the layer's
wiring is restated here, for the decoder families in `SUPPORTED_TYPES`. Tests check log-probs and
gradients against the model's own padded forward.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from aha.algo.losses import token_logprobs_and_entropy
from aha.rollout.base import left_pad_positions
from aha.train import sharding

# Decoders whose layer is exactly: x += o(attn(rope(q(norm1 x)), rope(k(..)), v(..))); x += mlp(norm2 x).
SUPPORTED_TYPES = ("qwen2", "llama", "qwen3", "mistral")
# Attention implementations this forward can call with a boolean (rows, 1, queries, keys) mask.
MASKABLE_ATTENTION = ("sdpa", "eager", "aha_cpu_bf16")


def has_sliding_window(cfg) -> bool:
    """A sliding-window layer may drop prompt K/V that a full forward would still attend to, so
    neither the shared-prompt nor the unpadded layout is exact there."""
    return getattr(cfg, "sliding_window", None) is not None and getattr(cfg, "use_sliding_window", True)


def supports(model) -> bool:
    cfg = model.config
    return (getattr(cfg, "model_type", None) in SUPPORTED_TYPES and not has_sliding_window(cfg)
            and getattr(cfg, "_attn_implementation", None) in MASKABLE_ATTENTION)


def enable_checkpointing(model) -> None:
    """Gradient checkpointing for this forward (the only update forward that honours it: the others
    run the HF module with a prompt cache, which HF's own checkpointing switches off)."""
    if not supports(model):
        raise ValueError("model.gradient_checkpointing needs aha's unpadded update forward: a "
                         f"{'/'.join(SUPPORTED_TYPES)} decoder with sdpa or eager attention and no sliding window")
    model.aha_gradient_checkpointing = True


def _attention_fn(model):
    if model.config._attn_implementation == "aha_cpu_bf16":
        from aha.models.cpu_attention import cpu_bf16_attention

        return cpu_bf16_attention
    # eager's own function wants an additive float mask; SDPA computes the same softmax(qkᵀ)v.
    return sdpa_attention_forward


def completion_logprobs_unpadded(model, prompt_ids: Tensor, prompt_mask: Tensor | None, owner: Tensor,
                                 tokens: Tensor, mask: Tensor, temperature: float = 1.0,
                                 entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """prompt_ids (G, P) left-padded (prompt_mask (G, P), None = no pads), owner (N,) the prompt of
    each completion, tokens/mask (N, Tc) right-padded completions -> log-probs (N, Tc) of the
    completion tokens at `temperature` (0 on pads), and their entropies (N, Tc, detached) if asked.
    A sharded model (`aha.train.sharding`) runs it inside its root unit's FSDP hooks, and each
    layer inside its own."""
    return sharding.through(model, _logprobs, model, prompt_ids, prompt_mask, owner, tokens, mask, temperature,
                            entropy)


def _logprobs(model, prompt_ids, prompt_mask, owner, tokens, mask, temperature, entropy):
    inner, device = model.model, tokens.device
    flat = _flatten(model, prompt_ids, prompt_mask, owner, tokens, mask)
    x = inner.embed_tokens(flat.ids)  # (T, C)
    cos, sin = inner.rotary_emb(x[None], flat.positions[None])
    cos, sin = cos[0], sin[0]  # (T, D)
    # Under autocast the residual stream stays fp32 (as in the model's own forward), but what enters
    # a matmul is cast to bf16 anyway. So each norm's output is cast once, not by each of the 3
    # (q, k, v) or 2 (gate, up) projections reading it, and RoPE runs on bf16 q/k with bf16 cos/sin
    # instead of promoting them to fp32 (as transformers' own forward does for bf16 weights).
    # Only the rounding points move; `test_bf16_tracks_fp32` bounds the difference.
    low = _autocast_dtype(device)
    to_low = (lambda t: t) if low is None else (lambda t: t.to(low))
    cos, sin = to_low(cos), to_low(sin)
    attention = _attention_fn(model)
    # Gradient checkpointing (model.gradient_checkpointing) keeps only each layer's input and reruns
    # the layer in the backward.
    checkpointing = getattr(model, "aha_gradient_checkpointing", False) and torch.is_grad_enabled()
    for layer in inner.layers:
        if checkpointing:
            x = sharding.through(layer, checkpoint, _layer, layer, x, cos, sin, to_low, attention, flat,
                                 use_reentrant=False)
        else:
            x = sharding.through(layer, _layer, layer, x, cos, sin, to_low, attention, flat)
    return _scatter_logprobs(model, inner.norm(x), flat, tokens, mask, temperature, entropy)


@dataclass
class _Flat:
    """The micro-batch as one flat sequence: every prompt's real tokens, then every completion's
    inputs (tokens 0..len-2), then `idle` bucket-rounding slots; and the per-row attention masks."""

    ids: Tensor  # (T,)
    positions: Tensor  # (T,)
    prompts: "_Block"
    comps: "_Block"
    prompt_attn: Tensor  # (G, 1, P, P), True = attend
    comp_attn: Tensor  # (N, 1, Tc-1, P+Tc-1)
    prompt_len: Tensor  # (G,)
    owner: Tensor  # (N,)
    n_real: int  # tokens before the idle slots
    idle: int

    @property
    def n_prompt_tokens(self) -> int:
        return self.prompts.n_tokens


def _flatten(model, prompt_ids, prompt_mask, owner, tokens, mask) -> _Flat:
    device = tokens.device
    n_rows, comp_width = tokens.shape
    prompt_width = prompt_ids.shape[1]
    prompt_real = torch.ones_like(prompt_ids, dtype=torch.bool) if prompt_mask is None else prompt_mask.bool()
    # Inputs: each prompt, then completion tokens 0..len-2 (the last one predicts nothing we score).
    comp_real = mask[:, 1:].bool()  # (N, Tc-1): input slot j holds token j, which predicts token j+1
    prompts, comps = _Block(prompt_real), _Block(comp_real)
    ids = torch.cat([prompts.take(prompt_ids), comps.take(tokens[:, :-1])])
    prompt_len = prompt_real.sum(-1)
    positions = torch.cat([
        prompts.take(left_pad_positions(prompt_real.long())),
        comps.take(prompt_len[owner][:, None] + torch.arange(comp_width - 1, device=device)),
    ])
    # Masks (True = attend). A prompt's left pads attend only to themselves, so no softmax row is
    # empty; their outputs are never read, and no real query attends to them.
    causal_p = torch.ones(prompt_width, prompt_width, dtype=torch.bool, device=device).tril()
    eye_p = torch.eye(prompt_width, dtype=torch.bool, device=device)
    prompt_attn = ((causal_p & prompt_real[:, None, :]) | eye_p)[:, None]  # (G, 1, P, P)
    causal_c = torch.ones(comp_width - 1, comp_width - 1, dtype=torch.bool, device=device).tril()
    comp_attn = torch.cat([prompt_real[owner][:, None, :].expand(-1, comp_width - 1, -1),
                           causal_c.expand(n_rows, -1, -1)], dim=-1)[:, None]  # (N, 1, Tc-1, P+Tc-1)
    n_real = ids.numel()
    idle = -n_real % TOKEN_BUCKET if _reduced_precision_on_cpu(model) else 0
    if idle:
        ids = torch.cat([ids, ids.new_zeros(idle)])
        positions = torch.cat([positions, positions.new_zeros(idle)])
    return _Flat(ids, positions, prompts, comps, prompt_attn, comp_attn, prompt_len, owner, n_real, idle)


def _layer(layer, x: Tensor, cos: Tensor, sin: Tensor, to_low, attention, flat: _Flat) -> Tensor:
    """One decoder layer over the flat sequence; attention per row on the padded (rows × keys) views."""
    attn = layer.self_attn
    rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb
    h = to_low(layer.input_layernorm(x))
    q = attn.q_proj(h).view(h.shape[0], -1, attn.head_dim)  # (T, H, D)
    k = attn.k_proj(h).view(h.shape[0], -1, attn.head_dim)  # (T, Hkv, D)
    v = attn.v_proj(h).view(h.shape[0], -1, attn.head_dim)
    if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = rope(q, k, cos, sin, unsqueeze_dim=1)

    n_prompt_tokens, prompt_width = flat.n_prompt_tokens, flat.prompt_attn.shape[-1]
    pq, pk, pv = (flat.prompts.pad(t[:n_prompt_tokens]) for t in (q, k, v))
    dropout = attn.attention_dropout if attn.training else 0.0
    p_out, _ = attention(attn, pq, pk, pv, flat.prompt_attn, dropout=dropout, scaling=attn.scaling)  # (G, P, H, D)
    outs = [flat.prompts.gather(p_out)]
    if flat.comp_attn.shape[2] > 0:  # completions longer than one token
        cq, ck, cv = (flat.comps.pad(t[n_prompt_tokens:flat.n_real]) for t in (q, k, v))
        keys, values = torch.cat([pk[flat.owner], ck], dim=2), torch.cat([pv[flat.owner], cv], dim=2)
        c_out = _causal_chunks(attention, attn, cq, keys, values, flat.comp_attn, prompt_width,
                               dropout=dropout, scaling=attn.scaling)
        outs.append(flat.comps.gather(c_out))
    if flat.idle:
        outs.append(q.new_zeros(flat.idle, *outs[0].shape[1:]))
    x = x + attn.o_proj(torch.cat(outs).flatten(1))
    return x + layer.mlp(to_low(layer.post_attention_layernorm(x)))


def _scatter_logprobs(model, x: Tensor, flat: _Flat, tokens: Tensor, mask: Tensor, temperature: float,
                      entropy: bool) -> tuple[Tensor, Tensor | None]:
    """Log-probs (and entropies) of the completion tokens, from the final hidden states, in (N, Tc)."""
    device = tokens.device
    n_rows, comp_width = tokens.shape
    n_prompt_tokens, n_prompts = flat.n_prompt_tokens, flat.prompt_len.shape[0]
    prompt_width = flat.prompt_attn.shape[-1]
    # Completion token 0 is predicted by its prompt's last position (left-padded: column P-1);
    # token j+1 by input slot j.
    last_prompt = x[:n_prompt_tokens].view(n_prompts, prompt_width, -1)[:, -1] if flat.prompts.dense else \
        x[flat.prompt_len.cumsum(0) - 1]  # (G, C): prompts come first, each one's tokens in order
    logits = model.lm_head(torch.cat([last_prompt[flat.owner], x[n_prompt_tokens:]]))[
        : n_rows + flat.n_real - n_prompt_tokens]
    targets = torch.cat([tokens[:, 0], flat.comps.take(tokens[:, 1:])])
    comp_slots = flat.comps.slots
    # Where each logit's log-prob goes in the (N, Tc) output: column 0 of every row, then input
    # slot (r, j) of the (N, Tc-1) layout scores column j+1.
    slots = torch.cat([torch.arange(n_rows, device=device) * comp_width,
                       comp_slots + comp_slots // max(comp_width - 1, 1) + 1])
    picked, picked_ent = token_logprobs_and_entropy(logits, targets, temperature, entropy)
    logp = picked.new_zeros(n_rows * comp_width).index_put((slots,), picked).view(n_rows, comp_width) * mask
    ent = None
    if entropy:
        ent = picked_ent.new_zeros(n_rows * comp_width).index_put((slots,), picked_ent).view(n_rows, comp_width) * mask
    return logp, ent


# A block whose real tokens fill at least this share of its slots runs its pads too (harmless: masked
# out of every real query's attention and of the loss), so that moving between the flat and the
# padded layout is a view instead of two copies per tensor per layer.
DENSE_FRACTION = 0.9
# In bf16 on CPU the flat length is rounded up to a multiple of this with idle tokens (no attention,
# never scored): oneDNN builds and caches a primitive per bf16 matmul shape, which costs time on every
# new length and memory for every one kept. 50 bf16 demo steps, 1 → 64 → 256: 35.2 → 31.0 → 28.7 s,
# peak RSS 1.72 → 1.52 → 1.30 GB (1.14 GB with oneDNN's cache off, at 47 s). fp32 has no such cache
# and skips the rounding. (Rounding the completion width to 16 columns as well changed neither.)
TOKEN_BUCKET = 256


# Completions longer than two of these attend in query chunks of this many, each chunk to the keys up
# to its own last query: the CPU attention kernels compute masked-out scores all the same, so a
# causal (rows × queries × keys) block costs as much as a full one unless the later keys are cut.
# bf16 update with reference, 64 × (91 + 512) tokens, 1 thread: 12.1 s unchunked; chunks of 64 /
# 128 / 192 queries: 11.3 / 10.7 / 11.1 s (chunks of 128 with SDPA instead of explicit matmuls: 11.5).
# It costs memory where chunks take the explicit bf16 path: their score matrices are kept for backward.
ATTENTION_CHUNK = 128


def _causal_chunks(attention, module, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, prefix: int, **kwargs) -> Tensor:
    """q (N, H, Tq, D), where query i sees no key at or past prefix + i + 1 -> (N, Tq, H, D)."""
    length = q.shape[2]
    if length <= 2 * ATTENTION_CHUNK:
        return attention(module, q, k, v, mask, **kwargs)[0]
    outs = []
    for start in range(0, length, ATTENTION_CHUNK):
        end = min(start + ATTENTION_CHUNK, length)
        keys = prefix + end
        outs.append(attention(module, q[:, :, start:end], k[:, :, :keys], v[:, :, :keys], mask[:, :, start:end, :keys],
                              **kwargs)[0])
    return torch.cat(outs, dim=1)


def _autocast_dtype(device) -> torch.dtype | None:
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


def _reduced_precision_on_cpu(model) -> bool:
    weight = next(model.parameters())
    return weight.device.type == "cpu" and (torch.is_autocast_enabled("cpu") or weight.dtype != torch.float32)


class _Block:
    """Where the real tokens of a padded (rows, width) block sit in the flat token sequence."""

    def __init__(self, real: Tensor):
        self.rows, self.width = real.shape
        self.dense = bool(real.sum() >= DENSE_FRACTION * real.numel())
        flat = real.flatten()
        self.slots = torch.arange(flat.numel(), device=real.device) if self.dense else flat.nonzero().squeeze(1)
        self.n_tokens = self.slots.numel()

    def take(self, padded: Tensor) -> Tensor:  # (rows, width) -> (n_tokens,)
        return padded.flatten() if self.dense else padded.flatten()[self.slots]

    def pad(self, flat: Tensor) -> Tensor:  # (n_tokens, h, D) -> (rows, h, width, D), as attention takes it
        if not self.dense:
            flat = flat.new_zeros(self.rows * self.width, *flat.shape[1:]).index_copy(0, self.slots, flat)
        return flat.view(self.rows, self.width, *flat.shape[1:]).transpose(1, 2)

    def gather(self, out: Tensor) -> Tensor:  # attention's (rows, width, H, D) -> (n_tokens, H, D)
        out = out.flatten(0, 1)
        return out if self.dense else out.index_select(0, self.slots)
