"""Attention for bf16 training on CPU, registered with transformers as `aha_cpu_bf16`.

PyTorch's CPU flash kernel (what `sdpa` runs) is slow in bf16, its backward above all. Measured per
layer, forward + backward, 4 query / 2 KV heads of 64, 1 thread:

| shape (rows × queries × keys) | SDPA bf16 | SDPA fp32 | explicit matmuls bf16 |
| --- | --- | --- | --- |
| 64 × 127 × 218 (R1-Zero prompt + 128 new tokens) | 0.152 s | 0.107 s | **0.092 s** |
| 24 × 511 × 602 (+ 512 new tokens) | 0.563 s | **0.404 s** | 0.684 s |

(Since the explicit branch lost its fp32 softmax round trip, side by side in one run: 0.102 vs
SDPA fp32 0.137 s at 64 × 127 × 218, 0.117 vs 0.149 s at 24 × 255 × 346, 0.295 vs 0.240 s at
24 × 383 × 474 — the threshold below still falls between them. The update's long completions
attend in query chunks of 128, so they take the explicit branch.)

So short sequences get explicit bf16 matmuls (the score matrix is small), long ones the flash kernel
in fp32 (no score matrix at all). Both compute the same attention; only rounding differs.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "aha_cpu_bf16"
# Queries × keys per head up to which the explicit matmuls win (between the two measured shapes).
EXPLICIT_MAX_SCORES = 96 * 1024


def cpu_bf16_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention signature: q (B, H, q, D), k/v (B, Hkv, k, D), `attention_mask` a bool
    (B, 1, q, k) mask (True = attend) or None for plain causal; returns ((B, q, H, D), None)."""
    if query.shape[2] * key.shape[2] <= EXPLICIT_MAX_SCORES:
        return _explicit(query, key, value, attention_mask, scaling), None
    with torch.autocast(query.device.type, enabled=False):  # autocast would cast SDPA back to bf16
        out, _ = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                        dropout=dropout, scaling=scaling, **kwargs)
    return out.to(query.dtype), None


def _explicit(query, key, value, mask, scaling):
    B, H, q, D = query.shape
    Hkv, k = key.shape[1], key.shape[2]
    g = H // Hkv
    scale = D**-0.5 if scaling is None else scaling
    # Every elementwise pass over the (q × k) scores costs as much as a matmul here, so there are as
    # few as possible: the scale goes on the query (k/D times smaller), the mask is filled in place
    # (the matmul's backward does not read its output), and the softmax stays in bf16 (its kernel
    # accumulates in fp32; a softmax to fp32 and a cast back to bf16 were two more full passes,
    # forward and backward). Per layer fwd+bwd, 1 thread: 64 × 127 × 218 0.14 → 0.09 s, 24 × 127
    # × 602 0.14 → 0.09 s; outputs differ from the fp32 softmax by one bf16 rounding.
    # Grouped-query heads as extra query rows of their KV head (head h reads KV head h // g), so
    # K/V are never repeated in memory.
    scores = torch.matmul((query * scale).reshape(B, Hkv, g * q, D), key.transpose(-1, -2))  # (B, Hkv, g·q, k)
    if mask is None:  # causal, the q queries being the last q of the k positions
        mask = torch.ones(q, k, dtype=torch.bool, device=query.device).tril(diagonal=k - q)
    # The mask is repeated to the g·q query rows (bytes, not scores) so that the fill lands on the
    # matmul's own output: filling a view of it makes autograd copy the whole score matrix around.
    # The dtype's lowest value, not -inf: a row with nothing to attend (a left-pad query) then gets
    # uniform weights instead of NaN, which would spread through the pad's K/V.
    # (Query rows are ordered head-in-group major: row j·q + i is query i of the group's head j.)
    hidden = ~mask.expand(*mask.shape[:-2], q, k).repeat(*(1,) * (mask.dim() - 2), g, 1) if g > 1 else ~mask
    probs = torch.softmax(scores.masked_fill_(hidden, torch.finfo(scores.dtype).min), dim=-1).to(value.dtype)
    out = torch.matmul(probs, value).view(B, H, q, D)
    return out.transpose(1, 2).contiguous()


def register() -> str:
    """Make `model.set_attn_implementation(NAME)` available; idempotent."""
    AttentionInterface.register(NAME, cpu_bf16_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


