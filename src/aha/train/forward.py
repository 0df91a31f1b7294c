"""The completion forward every trainer shares: logits of the completion tokens only, with the
prompt run once per group where the architecture allows, plus the CPU bf16 attention choice and
the autocast context of "bf16-mixed"."""

from __future__ import annotations

import torch

from aha.rollout.base import left_pad_positions
from aha.train import unpadded

# Causal LMs whose logits are exactly lm_head(last_hidden_state): the completion-only head applies.
FAST_HEAD_TYPES = ("qwen2", "llama", "qwen3", "mistral")


def completion_logits_plain(model, ids, attn, starts, comp_width: int):
    """Reference path: the full (N, T, V) logits, then the completion rows picked out."""
    logits = model(input_ids=ids, attention_mask=attn).logits  # (N, T, V)
    index = (starts[:, None] + torch.arange(comp_width, device=ids.device)[None, :]).clamp(max=logits.shape[1] - 1)
    return logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))  # (N, Tc, V)


def completion_logits_plain_rows(model, ids, attn, starts, comp_width: int):
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


def autocast(device, bf16: bool):
    """bf16 matmuls with fp32 master weights ("bf16-mixed"); a no-op context in fp32."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)


