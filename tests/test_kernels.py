"""The compiled CPU decode kernel against the PyTorch-level decoder it replaces, op by op and step by step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from aha import kernels
from aha.rollout import lean_qwen2
from aha.rollout.lean_qwen2 import LeanDecoder


@pytest.fixture(scope="module")
def ops():
    built = kernels.decode_ops()
    if built is None:
        pytest.skip(f"the CPU decode kernel could not be built: {kernels.disabled_reason() or 'build failed'}")
    return built


def _model(kind: str, heads: int, kv_heads: int, head_dim: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    common = dict(vocab_size=97, hidden_size=heads * head_dim, intermediate_size=72, num_hidden_layers=2,
                  num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=512)
    if kind == "qwen2":  # q/k/v biases
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True))
    else:  # no biases anywhere
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False))
    with torch.no_grad():  # the default init leaves biases at zero: give them values so they count
        for p in model.parameters():
            if p.dim() == 1 and not torch.all(p == 1):
                p.normal_(0, 0.1)
    return model.eval()


def _decode_both(model, dtype, steps: int, drop_at: int | None):
    """Logits of the fused and the plain decoder on the same tokens (the plain one's greedy choice),
    with left-padded prompts of unequal lengths and, at `drop_at`, some rows leaving the batch."""
    torch.manual_seed(1)
    B, P, n = 3, 21, 4
    ids = torch.randint(3, 90, (B, P))
    mask = torch.ones(B, P, dtype=torch.long)
    mask[0, :7] = 0
    mask[2, :1] = 0
    fused, plain = LeanDecoder(model, dtype, fused=True), LeanDecoder(model, dtype, fused=False)
    a, b = fused.prefill(ids, mask, n, steps), plain.prefill(ids, mask, n, steps)
    pairs = []
    for t in range(steps):
        token = b.argmax(-1)
        if t == drop_at:
            keep = torch.tensor([0, 2, 3, 5, 8, 9, 11])
            fused.select(keep)
            plain.select(keep)
            token = token[keep]
        a, b = fused.step(token), plain.step(token)
        pairs.append((a.float(), b.float()))
    return pairs


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (2, 2), (8, 1), (6, 2)])  # g = 2, 1, 8, and 3 (one head at a time)
def test_fused_steps_equal_the_plain_decoder_fp32(ops, kind, heads, kv_heads):
    """fp32: equal within float rounding over 80 steps: past a cache growth (64 columns), after rows left."""
    model = _model(kind, heads, kv_heads)
    for fused, plain in _decode_both(model, None, steps=80, drop_at=30):
        assert torch.allclose(fused, plain, atol=2e-5, rtol=1e-5), (fused - plain).abs().max()


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (8, 1)])
def test_fused_steps_track_the_plain_decoder_bf16(ops, heads, kv_heads):
    """bf16: the kernel rounds once where the plain decoder rounds after every op, so the two differ
    by bf16 rounding only: bounded against the logits' scale, and the same greedy token nearly always."""
    model = _model("qwen2", heads, kv_heads)
    pairs = _decode_both(model, torch.bfloat16, steps=70, drop_at=20)
    worst = max((f - p).abs().max().item() / p.abs().max().item() for f, p in pairs)
    agree = sum((f.argmax(-1) == p.argmax(-1)).float().mean().item() for f, p in pairs) / len(pairs)
    assert worst < 0.03, worst
    assert agree > 0.95, agree


def test_prepacked_bf16_weights_give_the_same_linear(ops):
    if not kernels.can_prepack():
        pytest.skip("this torch has no oneDNN")
    torch.manual_seed(0)
    x, w, b = torch.randn(13, 48).bfloat16(), torch.randn(40, 48).bfloat16(), torch.randn(40).bfloat16()
    assert torch.equal(kernels.linear(x, kernels.prepack(w), b), F.linear(x, w, b))
    assert torch.equal(kernels.linear(x, w, b), F.linear(x, w, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_equals_the_textbook_formula(ops, dtype):
    torch.manual_seed(0)
    x, w = (torch.randn(7, 80) * 3).to(dtype), torch.randn(80).to(dtype)
    xf = x.float()
    expected = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()
    tol = 1e-6 if dtype == torch.float32 else 8e-3  # bf16: one rounding of the result
    got = ops.rms_norm(x, w, 1e-6)
    assert got.dtype == dtype
    assert torch.allclose(got.float(), expected, rtol=tol, atol=tol)


def test_softmax_gives_masked_prompt_columns_no_weight(ops):
    """A prompt that is all pads but one column: attention puts its whole prompt weight there. The
    kernel's exp approximation must give -inf scores exactly zero weight (checked: pad K/V set huge)."""
    model = _model("llama", 4, 2)
    dec = LeanDecoder(model, None, fused=True)
    ids = torch.randint(3, 90, (1, 20))
    mask = torch.zeros(1, 20, dtype=torch.long)
    mask[0, -1] = 1
    logits = dec.prefill(ids, mask, 2, 4)
    for layer in range(len(dec.prompt_k)):  # poison every padded prompt column
        dec.prompt_v[layer][:, :, :19] = 3e38
    out = dec.step(logits.argmax(-1))
    assert torch.isfinite(out).all()
    plain = LeanDecoder(model, None, fused=False)
    expected = plain.step(plain.prefill(ids, mask, 2, 4).argmax(-1))
    assert torch.allclose(out, expected, atol=2e-5)


def test_bad_shapes_are_refused_with_the_reason(ops):
    x = torch.zeros(2, 32)
    w = torch.zeros(64, 32)
    with pytest.raises(RuntimeError, match="aha decode kernel: one cache row per row of x"):
        ops.decode_layer(x, torch.ones(32), w, None, torch.zeros(32, 32), None, torch.ones(32), torch.zeros(16, 32),
                         None, torch.zeros(32, 8), None, torch.zeros(2, 16), torch.zeros(2, 16),
                         torch.zeros(1, 1, 1, 16, 16), torch.zeros(1, 1, 16, 16), torch.zeros(1, 16),
                         torch.zeros(3, 1, 1, 16, 16), torch.zeros(3, 1, 16, 16),  # 3 cache rows for 2 rows of x
                         torch.zeros(2, dtype=torch.long), 0, 2, 1, 1e-6)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("AHA_CPU_KERNELS", "0")
    assert kernels.disabled_reason() == "AHA_CPU_KERNELS=0"
    monkeypatch.setenv("AHA_CPU_KERNELS", "1")
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert "compiler" in kernels.disabled_reason()


def test_decoder_falls_back_without_the_kernel(monkeypatch):
    """No kernel (no compiler, or switched off): the decoder runs its PyTorch-level step."""
    monkeypatch.setattr(kernels, "decode_ops", lambda: None)
    monkeypatch.setattr(lean_qwen2, "FUSED", None)
    dec = LeanDecoder(_model("qwen2", 4, 2), None)
    assert dec.ops is None
    with pytest.raises(RuntimeError, match="fused decoding needs"):
        LeanDecoder(_model("qwen2", 4, 2), None, fused=True)


@pytest.mark.parametrize("pairs", [False, True])
def test_layouts_put_every_element_where_the_kernel_reads_it(pairs):
    """Brute force over every index: the kernel reads key (d, l) of a (…, D, L) tensor and value
    (l, d) of a (…, L, D) one at these flat offsets inside each head's block."""
    D, L = 32, 48
    k_t = torch.arange(3 * D * L, dtype=torch.float32).view(3, D, L)
    v = torch.arange(3 * L * D, dtype=torch.float32).view(3, L, D)
    keys, values = kernels.key_tiles(k_t, pairs), kernels.value_rows(v, pairs)
    assert keys.shape == (3, L // 16, D, 16) and values.shape == v.shape
    flat_k, flat_v = keys.reshape(3, -1), values.reshape(3, -1)
    for d in range(D):
        for col in range(L):
            tile, lane = divmod(col, 16)
            k_at = tile * D * 16 + (((d // 2) * 16 + lane) * 2 + d % 2 if pairs else d * 16 + lane)
            v_at = ((col // 2) * D + d) * 2 + col % 2 if pairs else col * D + d
            assert torch.equal(flat_k[:, k_at], k_t[:, d, col])
            assert torch.equal(flat_v[:, v_at], v[:, col, d])


def test_rows_split_across_threads_give_the_same_steps(ops):
    """The kernel parallelises over rows (at::parallel_for): two threads must compute what one does."""
    model = _model("qwen2", 4, 2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _decode_both(model, None, steps=20, drop_at=None)
        torch.set_num_threads(2)
        two = _decode_both(model, None, steps=20, drop_at=None)
    finally:
        torch.set_num_threads(before)
    for (a, _), (b, _) in zip(one, two):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


@pytest.fixture(scope="module")
def portable_ops(ops):
    """The kernel as CPUs without AVX512-BF16 run it (plain bf16 layouts, conversions to fp32): built
    beside the native one with -mno-avx512bf16, so this machine tests both paths."""
    try:
        built = kernels.build("_portable", ("-mno-avx512bf16",))
    except Exception as error:  # e.g. a compiler that does not know the flag
        pytest.skip(f"could not build the portable variant: {kernels._first_error(error)}")
    assert not built.bf16_pairs()
    return built


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_portable_build_tracks_the_plain_decoder(portable_ops, monkeypatch, dtype):
    monkeypatch.setattr(kernels, "decode_ops", lambda: portable_ops)
    pairs = _decode_both(_model("qwen2", 4, 2), dtype, steps=70, drop_at=20)
    if dtype is None:
        for fused, plain in pairs:
            assert torch.allclose(fused, plain, atol=2e-5, rtol=1e-5), (fused - plain).abs().max()
    else:
        worst = max((f - p).abs().max().item() / p.abs().max().item() for f, p in pairs)
        assert worst < 0.03, worst
