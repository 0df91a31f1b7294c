"""aha's bf16 CPU attention computes what SDPA computes, in both of its branches."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from aha.models import cpu_attention
from aha.models.loading import load_model_dir


class _Layer(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 2


def _qkv(q_len: int, k_len: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(3, 4, q_len, 16, generator=g), torch.randn(3, 2, k_len, 16, generator=g),
            torch.randn(3, 2, k_len, 16, generator=g))


def _reference(q, k, v, mask):  # (B, q, H, D)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True).transpose(1, 2)


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit-matmuls", "sdpa-fp32"])
@pytest.mark.parametrize("masked", [False, True], ids=["causal", "bool-mask"])
def test_matches_sdpa(monkeypatch, explicit, masked):
    monkeypatch.setattr(cpu_attention, "EXPLICIT_MAX_SCORES", 10**9 if explicit else 0)
    if masked:  # 5 queries after 4 cached keys, the first key of row 0 a pad
        q, k, v = _qkv(5, 9)
        mask = torch.ones(5, 9, dtype=torch.bool).tril(diagonal=4)[None, None].repeat(3, 1, 1, 1)
        mask[0, :, :, 0] = False
    else:
        q, k, v = _qkv(7, 7)
        mask = None
    out, weights = cpu_attention.cpu_bf16_attention(_Layer(), q, k, v, mask)
    assert weights is None
    torch.testing.assert_close(out, _reference(q, k, v, mask), atol=1e-5, rtol=1e-5)


def test_fully_masked_query_rows_stay_finite():
    """A left-pad query may attend nothing; it must not produce NaN (which would spread via its K/V)."""
    q, k, v = _qkv(4, 4)
    mask = torch.ones(3, 1, 4, 4, dtype=torch.bool).tril()
    mask[1, :, 0, :] = False
    out, _ = cpu_attention.cpu_bf16_attention(_Layer(), q, k, v, mask)
    assert torch.isfinite(out).all()


def test_model_under_bf16_autocast_tracks_fp32(tiny_model_dir):
    model, _ = load_model_dir(tiny_model_dir)
    ids = torch.randint(2, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fp32 = model(input_ids=ids).logits
        fast = copy.deepcopy(model)
        fast.set_attn_implementation(cpu_attention.register())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = fast(input_ids=ids).logits.float()
    # bf16 keeps ~3 significant digits: logits agree to a few percent of their spread
    assert (bf16 - fp32).abs().mean() < 0.03 * fp32.std()


def test_explicit_bf16_tracks_fp32_sdpa_with_gradients(monkeypatch):
    """The bf16 branch (scale on the query, mask filled in place, softmax kept in bf16) matches fp32
    SDPA on the same inputs — outputs and the gradients of q, k and v — to bf16 precision."""
    monkeypatch.setattr(cpu_attention, "EXPLICIT_MAX_SCORES", 10**9)
    q, k, v = _qkv(6, 10, seed=1)
    mask = torch.ones(6, 10, dtype=torch.bool).tril(diagonal=4)[None, None].repeat(3, 1, 1, 1)
    mask[2, :, :, :2] = False  # two left pads in row 2
    upstream = torch.randn(3, 6, 4, 16, generator=torch.Generator().manual_seed(2))

    def run(fn, dtype):
        leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        out = fn(*leaves)
        (out.float() * upstream).sum().backward()
        return out.float(), [t.grad.float() for t in leaves]

    out16, grads16 = run(lambda *t: cpu_attention.cpu_bf16_attention(_Layer(), *t, mask)[0], torch.bfloat16)
    out32, grads32 = run(lambda *t: _reference(*t, mask), torch.float32)
    assert torch.isfinite(out16).all()
    for got, want in zip([out16, *grads16], [out32, *grads32]):
        # bf16 keeps 8 bits of mantissa: agree to ~2 % of each tensor's scale, not bit for bit
        assert (got - want).abs().max() < 0.03 * want.abs().max(), (got - want).abs().max()
