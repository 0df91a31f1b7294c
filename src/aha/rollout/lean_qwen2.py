"""A lean sampling-time forward for Qwen2/Llama-style decoders, with a preallocated KV cache.

Why not the module's own forward: at rollout shapes (64 rows × 1 token, hidden 256) a transformers
decoder step is dominated by Python and mask/cache bookkeeping, not by its matmuls. This forward
reads the same weights (q/k/v and gate/up fused into one matmul each, snapshotted per `generate`
call so it always samples from the current policy, in bf16 when asked), keeps each prompt's K/V
once for all its samples (short prompts: copied into each sample's cache) and the generated K/V in
buffers grown a chunk at a time and written in place, and does per layer: 4 matmuls + attention +
a handful of elementwise ops. Results equal the module's forward within float tolerance; tests
check greedy decoding token for token against naive no-cache generation.

On CPU each step's layer runs as one call of aha's compiled kernel (`aha.kernels`: norms, RoPE,
the cache write, attention over the written columns and SiLU around oneDNN's matmuls; K/V in the
kernel's own layouts) where it could be built; the PyTorch-level step below is the fallback, and
the tests hold the two to float tolerance.

Only plain Qwen2/Llama configs are taken (default RoPE, SiLU MLP, no sliding window); anything else
falls back to the module's own forward in `torch_engine`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from aha import kernels
from aha.kernels.threads import shared_budget
from aha.rollout.base import left_pad_positions

SUPPORTED_TYPES = ("qwen2", "llama")
# The cache grows by this many columns at a time (see `_attend_one` for why it is not sliced).
CACHE_CHUNK = 64
# Prompts shorter than this are copied into every sample's own cache instead of read through cascade
# attention: for a short prompt the cascade's extra reshapes cost more than the reads they save.
# 1 thread, bf16, a decode step: the demo (8-token prompts, 128 rows, hidden 128) 6.1–7.8 ms with
# cascade, 5.2–6.2 ms per row; the 3 M bench model (64 rows) at 32- and 91-token prompts is faster
# with cascade (7.5 vs 8.3–9.8 ms, 9.5 vs 10.2 ms).
CASCADE_MIN_PROMPT = 16
# Decode steps through aha's compiled CPU kernel (`aha.kernels`): None = wherever it applies and could
# be built; False = the PyTorch-level step below (also `AHA_CPU_KERNELS=0`); True = required.
FUSED: bool | None = None


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


@dataclass
class _Linear:
    """Just what `_bias` reads of an nn.Linear (for the q projection with its bias rescaled)."""

    out_features: int
    bias: Tensor | None
    weight: Tensor


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


_MATMULS = ("w_qkv", "w_o", "w_gate_up", "w_down")


class LeanDecoder:
    """Weights of one model snapshot and the static KV cache of one `generate` chunk."""

    @torch.no_grad()
    def __init__(self, model, dtype: torch.dtype | None = None, fused: bool | None = None):
        """`dtype`: compute in this dtype (e.g. bf16 copies of fp32 weights); None = the model's own.
        `fused`: decode steps through aha's compiled CPU layer kernel (`aha.kernels`); None = `FUSED`."""
        cfg, inner = model.config, model.model
        cast = (lambda t: t if t is None or dtype is None else t.to(dtype))
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        self.embed = cast(inner.embed_tokens.weight)
        self.norm = cast(inner.norm.weight)
        self.lm_head, self.lm_bias = cast(model.lm_head.weight), cast(model.lm_head.bias)
        self.inv_freq = inner.rotary_emb.inv_freq.float()
        self.layers = []
        # The softmax scale 1/√D is folded into the q projection (RoPE is linear, so it commutes):
        # one multiply per layer and step less.
        scale = self.head_dim**-0.5
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            q_bias = a.q_proj.bias * scale if a.q_proj.bias is not None else None
            self.layers.append(_Layer(*map(cast, (
                layer.input_layernorm.weight,
                torch.cat([a.q_proj.weight * scale, a.k_proj.weight, a.v_proj.weight]),
                _bias(_Linear(a.q_proj.out_features, q_bias, a.q_proj.weight), a.k_proj, a.v_proj),
                a.o_proj.weight, a.o_proj.bias, layer.post_attention_layernorm.weight,
                torch.cat([m.gate_proj.weight, m.up_proj.weight]), _bias(m.gate_proj, m.up_proj),
                m.down_proj.weight, m.down_proj.bias,
            ))))
        compute = self.embed.dtype
        usable = (self.embed.device.type == "cpu" and compute in (torch.float32, torch.bfloat16)
                  and self.head_dim % kernels.BLOCK == 0)
        fused = FUSED if fused is None else fused
        self.ops = kernels.decode_ops() if (fused or fused is None) and usable else None
        if fused and self.ops is None:
            raise RuntimeError("fused decoding needs CPU fp32/bf16 tensors and a built kernel (see aha.kernels)")
        # The fused steps' weights: bf16 ones pre-laid-out for oneDNN (same results, ≈ 12 % less matmul
        # time at 64 rows); fp32 ones as they are (oneDNN's fp32 kernel sums in another order).
        self.step_layers, self.step_lm_head = self.layers, self.lm_head
        if self.ops is not None and compute == torch.bfloat16 and kernels.can_prepack():
            self.step_layers = [replace(layer, **{name: kernels.prepack(getattr(layer, name)) for name in _MATMULS})
                                for layer in self.layers]
            self.step_lm_head = kernels.prepack(self.lm_head)
        # Generated K/V per layer. PyTorch step: keys (rows, kv_heads, head_dim, columns), transposed;
        # values (rows, kv_heads, columns, head_dim). Fused step: `kernels.key_tiles` / `value_rows`.
        self.k: list[Tensor] = []
        self.v: list[Tensor] = []
        # CPU steps are many short parallel regions: their thread count follows the free cores
        # (`aha.kernels.threads`), so a busy neighbour does not stall every barrier.
        self.budget = shared_budget() if self.embed.device.type == "cpu" else None

    def _threads(self):
        return self.budget.applied() if self.budget is not None else contextlib.nullcontext()

    def _rms(self, x: Tensor, weight: Tensor) -> Tensor:
        # torch's fused RMSNorm (statistics in fp32 as in Qwen2RMSNorm): one op instead of seven.
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def _rope_tables(self, length: int, dtype) -> tuple[Tensor, Tensor]:
        """Sets cos/sin (L, D) in `dtype` for the PyTorch-level forward; returns the fp32 ones."""
        freqs = torch.arange(length, device=self.inv_freq.device).float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)  # (L, D)
        cos, sin = emb.cos(), emb.sin()
        self.cos, self.sin = cos.to(dtype), sin.to(dtype)
        return cos, sin

    @torch.no_grad()
    def prefill(self, ids: Tensor, mask: Tensor, n: int, max_new: int) -> Tensor:  # (B,P),(B,P) -> (B·n, V)
        """Run the prompts once and keep their K/V once: the n samples of a prompt share them."""
        with self._threads():
            return self._prefill(ids, mask, n, max_new)

    def _prefill(self, ids: Tensor, mask: Tensor, n: int, max_new: int) -> Tensor:
        B, P = ids.shape
        self.prompts, self.n = B, n
        rope_fp32 = self._rope_tables(P + max_new, self.embed.dtype)
        pos = left_pad_positions(mask)  # (B, P)
        causal = torch.ones(P, P, dtype=torch.bool, device=ids.device).tril()
        # Pad queries see themselves only, so no softmax row is empty (an all-masked row gives NaN K/V).
        attend = (causal & mask.bool()[:, None, None, :]) | torch.eye(P, dtype=torch.bool, device=ids.device)
        x = F.embedding(ids, self.embed)  # (B, P, C)
        cos, sin = self.cos[pos][:, :, None], self.sin[pos][:, :, None]  # (B, P, 1, D)
        self.prompt_k, self.prompt_v = [], []  # per layer (B, Hkv, D, P) keys transposed, (B, Hkv, P, D)
        for layer in self.layers:
            q, k, v = self._qkv(layer, x, cos, sin)  # (B, H, P, D), (B, Hkv, P, D) ×2
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, enable_gqa=True, scale=1.0)
            x = self._after_attention(layer, x, out)
            self.prompt_k.append(k.transpose(-1, -2).contiguous())
            self.prompt_v.append(v.contiguous())
        rows = B * n
        self.slot = torch.arange(rows, device=ids.device)  # each live row's place in the (B·n) grid
        # Generated K/V, per row; grown CACHE_CHUNK columns at a time.
        self.max_new = max_new
        capacity = min(max_new, CACHE_CHUNK)
        Hkv = self.kv_heads
        # The fused kernel always reads each prompt's K/V in place (no per-row copies, no mask rows).
        self.cascade = self.ops is not None or P >= CASCADE_MIN_PROMPT
        if self.ops is not None:
            # The kernel reads K/V in blocks of 16 columns: prompts are padded to a multiple (pad
            # columns zero, at -inf bias) and the caches grow by CACHE_CHUNK (a multiple).
            pad = -P % kernels.BLOCK
            pairs = x.dtype == torch.bfloat16 and self.ops.bf16_pairs()
            self.prompt_k = [kernels.key_tiles(F.pad(k, (0, pad)), pairs) for k in self.prompt_k]
            self.prompt_v = [kernels.value_rows(F.pad(v, (0, 0, 0, pad)), pairs) for v in self.prompt_v]
            self.prompt_bias = F.pad(torch.zeros(B, P).masked_fill_(~mask.bool(), float("-inf")), (0, pad), value=float("-inf"))
            tiles = CACHE_CHUNK // kernels.BLOCK
            self.k = [x.new_zeros(rows, Hkv, tiles, self.head_dim, kernels.BLOCK) for _ in self.layers]
            self.v = [x.new_zeros(rows, Hkv, CACHE_CHUNK, self.head_dim) for _ in self.layers]
            self.prompt_of_row = self.slot // n
            self.cos, self.sin = rope_fp32  # the kernel rotates in fp32
        elif self.cascade:
            self.k = [x.new_zeros(rows, Hkv, self.head_dim, capacity) for _ in self.layers]
            self.v = [x.new_zeros(rows, Hkv, capacity, self.head_dim) for _ in self.layers]
        else:  # each row's cache starts with its prompt's K/V
            self.k = [torch.cat([k.repeat_interleave(n, 0), k.new_zeros(rows, Hkv, self.head_dim, capacity)], dim=-1)
                      for k in self.prompt_k]
            self.v = [torch.cat([v.repeat_interleave(n, 0), v.new_zeros(rows, Hkv, capacity, self.head_dim)], dim=2)
                      for v in self.prompt_v]
            self.prompt_k = self.prompt_v = [None] * len(self.layers)  # read from the rows' caches from now on
        self.offset = 0 if self.cascade else P  # cache column of generated token 0
        # Per row, over the prompt's columns then the generated ones: 0 where the row attends, -inf on
        # prompt pads and on generated columns not written yet (the kernel reads written ones only).
        self.bias = None
        if self.ops is None:
            self.bias = torch.full((rows, P + capacity), float("-inf"), dtype=x.dtype, device=ids.device)
            self.bias[:, :P].masked_fill_(mask.bool().repeat_interleave(n, 0), 0.0)
        self.prompt_len = P
        self.pos = pos[:, -1].repeat_interleave(n) + 1  # (B·n,) position of the next token
        self.filled = 0  # generated columns written
        return self._logits(x[:, -1]).repeat_interleave(n, 0)

    def _grow(self) -> None:
        """Room for CACHE_CHUNK more columns: one copy of the cache every CACHE_CHUNK steps."""
        if self.ops is not None:  # K in tiles of kernels.BLOCK columns (see `kernels.key_tiles`)
            more = CACHE_CHUNK
            self.k = [torch.cat([c, c.new_zeros(c.shape[0], c.shape[1], more // kernels.BLOCK, *c.shape[3:])], dim=2)
                      for c in self.k]
        else:
            more = min(CACHE_CHUNK, self.max_new + self.offset - self.k[0].shape[-1])
            self.k = [torch.cat([c, c.new_zeros(*c.shape[:-1], more)], dim=-1) for c in self.k]
        self.v = [torch.cat([c, c.new_zeros(c.shape[0], c.shape[1], more, c.shape[3])], dim=2) for c in self.v]
        if self.bias is not None:
            self.bias = torch.cat([self.bias, self.bias.new_full((self.bias.shape[0], more), float("-inf"))], dim=1)

    def _qkv(self, layer: _Layer, x: Tensor, cos: Tensor, sin: Tensor):  # (A,S,C) -> q (A,H,S,D), k/v (A,Hkv,S,D)
        A, S, _ = x.shape
        D, Hq, Hkv = self.head_dim, self.heads, self.kv_heads
        qkv = F.linear(self._rms(x, layer.norm1), layer.w_qkv, layer.b_qkv)  # (A, S, (Hq+2Hkv)·D)
        qk, v = qkv.split([(Hq + Hkv) * D, Hkv * D], dim=-1)
        qk = _rotate(qk.view(A, S, Hq + Hkv, D), cos, sin)  # q and k rotated together: half the ops
        q, k = qk.split([Hq, Hkv], dim=2)
        return q.transpose(1, 2), k.transpose(1, 2), v.view(A, S, Hkv, D).transpose(1, 2)

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
        with self._threads():
            return self._step(token)

    def _step(self, token: Tensor) -> Tensor:
        col = self.offset + self.filled
        if col == self.v[0].shape[2]:
            self._grow()
        if self.ops is not None:
            return self._fused_step(token, col)
        self.bias[:, self.prompt_len + self.filled] = 0.0
        x = F.embedding(token[:, None], self.embed)  # (A, 1, C)
        cos, sin = self.cos[self.pos][:, None, None], self.sin[self.pos][:, None, None]  # (A, 1, 1, D)
        bias = self.bias[:, None, None, :]  # (A, 1, 1, P + capacity)
        for layer, prompt_k, prompt_v, cache_k, cache_v in zip(self.layers, self.prompt_k, self.prompt_v, self.k, self.v):
            q, k, v = self._qkv(layer, x, cos, sin)
            cache_k[..., col] = k[:, :, 0]
            cache_v[:, :, col] = v[:, :, 0]
            if self.cascade:
                out = self._attend_one(q, prompt_k, prompt_v, cache_k, cache_v, bias)
            else:
                out = self._attend_rows(q, cache_k, cache_v, bias)
            x = self._after_attention(layer, x, out)
        self.filled += 1
        self.pos = self.pos + 1
        return self._logits(x[:, 0])

    def _fused_step(self, token: Tensor, col: int) -> Tensor:
        """The same step, each layer one call of the compiled kernel (fp32 cos/sin at each row's position)."""
        x = F.embedding(token, self.embed)  # (A, C)
        cos, sin = self.cos[self.pos], self.sin[self.pos]  # (A, D)
        for layer, prompt_k, prompt_v, cache_k, cache_v in zip(self.step_layers, self.prompt_k, self.prompt_v, self.k, self.v):
            x = self.ops.decode_layer(
                x, layer.norm1, layer.w_qkv, layer.b_qkv, layer.w_o, layer.b_o, layer.norm2, layer.w_gate_up,
                layer.b_gate_up, layer.w_down, layer.b_down, cos, sin, prompt_k, prompt_v, self.prompt_bias,
                cache_k, cache_v, self.prompt_of_row, col, self.heads, self.kv_heads, self.eps,
            )
        self.filled += 1
        self.pos = self.pos + 1
        return kernels.linear(self.ops.rms_norm(x, self.norm, self.eps), self.step_lm_head, self.lm_bias)

    def _attend_one(self, q: Tensor, prompt_k: Tensor, prompt_v: Tensor, k_t: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        """One query per row against its prompt's K/V and its own generated K/V, softmaxed together.

        Prompt part ("cascade" attention): the n samples of a prompt query its K/V as one matmul,
        (n·g × D)·(D × P), so the shared prompt is read once per group instead of once per row. At
        rollout shapes the per-row attention is bound by reading the cache, not by FLOPs.
        Generated part: two small batched matmuls per row (they beat the CPU flash kernel at q_len 1,
        ≈ 0.39 vs 0.47 ms, 64 rows × 100 columns). Keys are stored transposed, (D, L), and buffers
        are read whole (unfilled columns carry a -inf bias): a transposed view or a column slice is
        not contiguous, and bf16 matmuls then copy the cache every step (q·Kᵀ at 520 columns, 64
        rows, 1 thread: 0.47 ms on a whole buffer, 1.4 ms on a slice of a longer one, 5.3 ms on a
        transposed view)."""
        A, Hq, _, D = q.shape
        B, Hkv, P, n = self.prompts, self.kv_heads, prompt_k.shape[-1], self.n
        g = Hq // Hkv
        q = q.reshape(A, Hkv, g, D)  # already scaled by 1/√D (folded into the weights)
        full = A == B * n  # no row has left yet: rows are the (B·n) grid itself
        grid = q if full else q.new_zeros(B * n, Hkv, g, D).index_put_((self.slot,), q)
        grouped = grid.view(B, n, Hkv, g, D).transpose(1, 2).reshape(B, Hkv, n * g, D)
        prompt_scores = torch.matmul(grouped, prompt_k).view(B, Hkv, n, g, P).transpose(1, 2).reshape(B * n, Hkv, g, P)
        if not full:
            prompt_scores = prompt_scores[self.slot]
        scores = torch.cat([prompt_scores, torch.matmul(q, k_t)], dim=-1) + bias  # (A, Hkv, g, P + L)
        probs = torch.softmax(scores, -1)  # bf16 in, fp32 accumulation inside the kernel
        prompt_probs, own_probs = probs.split([P, probs.shape[-1] - P], dim=-1)
        out = torch.matmul(own_probs, v)  # (A, Hkv, g, D)
        grid = prompt_probs if full else prompt_probs.new_zeros(B * n, Hkv, g, P).index_put_((self.slot,), prompt_probs)
        grouped = grid.view(B, n, Hkv, g, P).transpose(1, 2).reshape(B, Hkv, n * g, P)
        prompt_out = torch.matmul(grouped, prompt_v).view(B, Hkv, n, g, D).transpose(1, 2).reshape(B * n, Hkv, g, D)
        out = out + (prompt_out if full else prompt_out[self.slot])
        return out.reshape(A, Hq, 1, D)

    def _attend_rows(self, q: Tensor, k_t: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        """One query per row against its own cache, prompt columns included: two batched matmuls."""
        A, Hq, _, D = q.shape
        q = q.reshape(A, self.kv_heads, Hq // self.kv_heads, D)
        probs = torch.softmax(torch.matmul(q, k_t) + bias, -1)
        return torch.matmul(probs, v).reshape(A, Hq, 1, D)

    def select(self, keep: Tensor) -> None:
        """Drop finished rows: one copy of the generated cache, paid only when enough rows have
        finished. Prompt K/V stay: the remaining samples of a prompt still read them."""
        self.k = [c[keep] for c in self.k]
        self.v = [c[keep] for c in self.v]
        self.pos = self.pos[keep]
        if self.bias is not None:
            self.bias = self.bias[keep]
        self.slot = self.slot[keep]
        if self.ops is not None:
            self.prompt_of_row = self.slot // self.n


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
