"""A lean sampling-time forward for Qwen2/Llama-style decoders, with a preallocated KV cache.

Why not the module's own forward: at rollout shapes (64 rows × 1 token, hidden 256) a transformers
decoder step is dominated by Python and mask/cache bookkeeping, not by its matmuls. This forward
reads the same weights (q/k/v and gate/up fused into one matmul each, snapshotted per `generate`
call so it always samples from the current policy), keeps K/V in a static (rows, kv_heads, length,
head_dim) buffer written in place, and does per layer: 3 matmuls + attention + a handful of
elementwise ops. Results equal the module's forward within float tolerance; tests check greedy
decoding token for token against naive no-cache generation.

Only plain Qwen2/Llama configs are taken (default RoPE, SiLU MLP, no sliding window); anything else
falls back to the module's own forward in `torch_engine`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

SUPPORTED_TYPES = ("qwen2", "llama")


def supports(model) -> bool:
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in SUPPORTED_TYPES:
        return False
    rope = getattr(cfg, "rope_parameters", None) or {}
    inner = getattr(model, "model", None)
    return (
        rope.get("rope_type", "default") == "default"
        and not getattr(cfg, "use_sliding_window", False)
        and getattr(cfg, "hidden_act", "silu") == "silu"
        and inner is not None
        and hasattr(inner, "rotary_emb")
        and float(getattr(inner.rotary_emb, "attention_scaling", 1.0)) == 1.0
    )


def _bias(*linears) -> Tensor | None:
    if all(lin.bias is None for lin in linears):
        return None
    return torch.cat([lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.out_features) for lin in linears])


@dataclass
class _Layer:
    norm1: Tensor
    w_qkv: Tensor  # (Hq·D + 2·Hkv·D, C): q, k and v projections in one matmul
    b_qkv: Tensor | None
    w_o: Tensor
    b_o: Tensor | None
    norm2: Tensor
    w_gate_up: Tensor  # (2·M, C)
    b_gate_up: Tensor | None
    w_down: Tensor
    b_down: Tensor | None


class LeanDecoder:
    """Weights of one model snapshot and the static KV cache of one `generate` chunk."""

    @torch.no_grad()
    def __init__(self, model):
        cfg, inner = model.config, model.model
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.lm_head, self.lm_bias = model.lm_head.weight, model.lm_head.bias
        self.inv_freq = inner.rotary_emb.inv_freq.float()
        self.layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            self.layers.append(_Layer(
                layer.input_layernorm.weight,
                torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), _bias(a.q_proj, a.k_proj, a.v_proj),
                a.o_proj.weight, a.o_proj.bias, layer.post_attention_layernorm.weight,
                torch.cat([m.gate_proj.weight, m.up_proj.weight]), _bias(m.gate_proj, m.up_proj),
                m.down_proj.weight, m.down_proj.bias,
            ))
        self.k: list[Tensor] = []
        self.v: list[Tensor] = []

    def _rms(self, x: Tensor, weight: Tensor) -> Tensor:
        # Same arithmetic as Qwen2RMSNorm: statistics in fp32, scale in the model dtype.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    def _rope_tables(self, length: int, dtype) -> None:
        freqs = torch.arange(length, device=self.inv_freq.device).float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)  # (L, D)
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)

    @torch.no_grad()
    def prefill(self, ids: Tensor, mask: Tensor, n: int, max_new: int) -> Tensor:  # (B,P),(B,P) -> (B·n, V)
        """Run the prompts once, then repeat their K/V for the n samples of each (rows grouped)."""
        B, P = ids.shape
        length = P + max_new
        self._rope_tables(length, self.embed.dtype)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P): left padding keeps real tokens at 0, 1, …
        causal = torch.ones(P, P, dtype=torch.bool, device=ids.device).tril()
        # Pad queries see themselves only, so no softmax row is empty (an all-masked row gives NaN K/V).
        attend = (causal & mask.bool()[:, None, None, :]) | torch.eye(P, dtype=torch.bool, device=ids.device)
        x = F.embedding(ids, self.embed)  # (B, P, C)
        self.k, self.v = [], []
        for layer in self.layers:
            q, k, v = self._qkv(layer, x, pos)  # (B, H, P, D), (B, Hkv, P, D) ×2
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, enable_gqa=True)
            x = self._after_attention(layer, x, out)
            cache_k = k.new_empty(B * n, self.kv_heads, length, self.head_dim)
            cache_v = torch.empty_like(cache_k)
            cache_k[:, :, :P] = k.repeat_interleave(n, 0)
            cache_v[:, :, :P] = v.repeat_interleave(n, 0)
            self.k.append(cache_k)
            self.v.append(cache_v)
        # Which cache columns each row may attend: its real prompt tokens, then everything generated.
        self.valid = torch.ones(B * n, length, dtype=torch.bool, device=ids.device)
        self.valid[:, :P] = mask.bool().repeat_interleave(n, 0)
        self.bias = torch.zeros(self.valid.shape, dtype=x.dtype, device=ids.device).masked_fill(~self.valid, float("-inf"))
        self.pos = pos[:, -1].repeat_interleave(n) + 1  # (B·n,) position of the next token
        self.filled = P
        return self._logits(x[:, -1]).repeat_interleave(n, 0)

    def _qkv(self, layer: _Layer, x: Tensor, pos: Tensor):  # (A,S,C),(A,S) -> q (A,H,S,D), k/v (A,Hkv,S,D)
        A, S, _ = x.shape
        D, Hq, Hkv = self.head_dim, self.heads, self.kv_heads
        qkv = F.linear(self._rms(x, layer.norm1), layer.w_qkv, layer.b_qkv)  # (A, S, (Hq+2Hkv)·D)
        q, k, v = qkv.split([Hq * D, Hkv * D, Hkv * D], dim=-1)
        cos, sin = self.cos[pos][:, :, None], self.sin[pos][:, :, None]  # (A, S, 1, D)
        q = _rotate(q.view(A, S, Hq, D), cos, sin).transpose(1, 2)
        k = _rotate(k.view(A, S, Hkv, D), cos, sin).transpose(1, 2)
        return q, k, v.view(A, S, Hkv, D).transpose(1, 2)

    def _after_attention(self, layer: _Layer, x: Tensor, out: Tensor) -> Tensor:  # out (A,H,S,D) -> (A,S,C)
        A, _, S, _ = out.shape
        x = x + F.linear(out.transpose(1, 2).reshape(A, S, -1), layer.w_o, layer.b_o)
        gate, up = F.linear(self._rms(x, layer.norm2), layer.w_gate_up, layer.b_gate_up).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, layer.w_down, layer.b_down)

    def _logits(self, x: Tensor) -> Tensor:  # (A, C) -> (A, V)
        return F.linear(self._rms(x, self.norm), self.lm_head, self.lm_bias)

    @torch.no_grad()
    def step(self, token: Tensor) -> Tensor:  # (A,) -> (A, V)
        """Append one token per row; K/V are written in place at the next free column."""
        col = self.filled
        span = col + 1
        x = F.embedding(token[:, None], self.embed)  # (A, 1, C)
        bias = self.bias[:, None, None, :span]  # (A, 1, 1, L): 0 where attended, -inf where not
        for layer, cache_k, cache_v in zip(self.layers, self.k, self.v):
            q, k, v = self._qkv(layer, x, self.pos[:, None])
            cache_k[:, :, col] = k[:, :, 0]
            cache_v[:, :, col] = v[:, :, 0]
            out = self._attend_one(q, cache_k[:, :, :span], cache_v[:, :, :span], bias)
            x = self._after_attention(layer, x, out)
        self.filled = span
        self.pos = self.pos + 1
        return self._logits(x[:, 0])

    def _attend_one(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        """One query per row against the cache, grouped-query heads as a batch dimension: two small
        batched matmuls beat the CPU flash kernel at q_len 1 (≈ 0.39 vs 0.47 ms, 64 rows × 100 cols)."""
        A, Hq, _, D = q.shape
        q = q.reshape(A, self.kv_heads, Hq // self.kv_heads, D)  # (A, Hkv, g, D)
        scores = torch.matmul(q, k.transpose(-1, -2)) * D**-0.5 + bias  # (A, Hkv, g, L)
        return torch.matmul(torch.softmax(scores.float(), -1).to(v.dtype), v).reshape(A, Hq, 1, D)

    def select(self, keep: Tensor) -> None:
        """Drop finished rows: one copy of the cache, paid only when enough rows have finished."""
        self.k = [c[keep] for c in self.k]
        self.v = [c[keep] for c in self.v]
        self.valid, self.bias, self.pos = self.valid[keep], self.bias[keep], self.pos[keep]


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
