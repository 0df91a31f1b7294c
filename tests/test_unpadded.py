"""The unpadded update forward gives the model's own padded forward's log-probs, entropies and
gradients, for every decoder family it takes, with and without padding in either block."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

from aha.train import forward, layout, unpadded, update
from aha.train.layout import RolloutBatch

VOCAB = 64


def _model(family: str, attention: str = "sdpa"):
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, attn_implementation=attention)
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=False)).eval()
    if family == "qwen3":  # q_norm / k_norm on every head, explicit head_dim
        return Qwen3ForCausalLM(Qwen3Config(**common, head_dim=16, use_sliding_window=False)).eval()
    if family == "mistral":  # taken only without its sliding window
        return MistralForCausalLM(MistralConfig(**common, sliding_window=None)).eval()
    return LlamaForCausalLM(LlamaConfig(**common, attention_bias=True)).eval()  # biases on q/k/v/o


def _batch(prompt_lengths, completion_lengths, group: int = 3, seed: int = 0) -> RolloutBatch:
    g = torch.Generator().manual_seed(seed)
    prompts, comps = [], []
    for k, length in enumerate(prompt_lengths):
        prompt = torch.randint(1, VOCAB, (length,), generator=g).tolist()
        for j in range(group):
            prompts.append(prompt)
            comps.append(torch.randint(1, VOCAB, (completion_lengths[(k * group + j) % len(completion_lengths)],),
                                       generator=g).tolist())
    olds = [[-1.0] * len(c) for c in comps]
    return RolloutBatch(prompts, comps, olds, torch.randn(len(prompts), generator=g))


def _padded_reference(model, batch: RolloutBatch, rows: list[int], temperature: float):
    """The model's own forward over right-padded prompt+completion rows."""
    plain = layout._plain_micro(batch, rows, 0, "cpu")
    logits = forward.completion_logits_plain(model, plain.ids, plain.attn, plain.starts, plain.tokens.shape[1])
    logp_all = torch.log_softmax(logits / temperature, -1)  # the textbook formulas, in fp32
    logp = logp_all.gather(-1, plain.tokens[..., None]).squeeze(-1)
    return logp * plain.mask, -(logp_all.exp() * logp_all).sum(-1), plain.mask


def _compare(model, batch: RolloutBatch, temperature: float = 0.8):
    micro = layout.micro_batches(batch, 64, 0, "cpu", share_prompts=True)
    assert len(micro) == 1
    m = micro[0]
    got, ent = unpadded.completion_logprobs_unpadded(model, m.prompt_ids, m.prompt_mask, m.owner, m.tokens, m.mask,
                                                      temperature, entropy=True)
    want, want_ent, mask = _padded_reference(model, batch, m.rows, temperature)
    width = got.shape[1]
    assert want.shape[1] == width
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(ent, want_ent * mask, atol=2e-5, rtol=1e-5)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
    g_got = torch.autograd.grad((got * weights).sum(), list(model.parameters()), allow_unused=True)
    g_want = torch.autograd.grad((want * weights).sum(), list(model.parameters()), allow_unused=True)
    for a, b in zip(g_got, g_want):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    assert any(b is not None and b.abs().sum() > 0 for b in g_want)


@pytest.mark.parametrize("dense", [False, True], ids=["pads-dropped", "pads-run"])
@pytest.mark.parametrize("prompt_lengths", [(5, 5, 5), (4, 9, 6)], ids=["equal-prompts", "padded-prompts"])
@pytest.mark.parametrize("family", ["qwen2", "llama", "qwen3", "mistral"])
def test_unpadded_equals_padded_forward(family, prompt_lengths, dense, monkeypatch):
    monkeypatch.setattr(unpadded, "DENSE_FRACTION", 0.0 if dense else 2.0)
    _compare(_model(family), _batch(prompt_lengths, (1, 7, 3, 11, 5, 2)))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_unpadded_under_each_attention(attention):
    model = _model("qwen2", attention)
    assert unpadded.supports(model)
    _compare(model, _batch((3, 8), (6, 2, 9)))


def test_single_token_completions():
    """Every completion one token long: only the prompts' last positions are scored."""
    _compare(_model("qwen2"), _batch((4, 7), (1,)))


def test_one_prompt_per_row():
    """Distinct prompts (G = 1) still take the unpadded layout."""
    _compare(_model("llama"), _batch((3, 6, 4, 8), (5, 1, 9, 2), group=1))


def test_bf16_tracks_fp32():
    """Under autocast (bf16 CPU attention, norms cast once, bf16 RoPE) log-probs and gradients stay
    within bf16 rounding of the fp32 forward."""
    from aha.models import cpu_attention

    model = _model("qwen2")
    batch = _batch((4, 9), (3, 10, 6))
    m = layout.micro_batches(batch, 64, 0, "cpu", share_prompts=True)[0]
    args = (m.prompt_ids, m.prompt_mask, m.owner, m.tokens, m.mask)
    fp32, _ = unpadded.completion_logprobs_unpadded(model, *args)
    fast = copy.deepcopy(model)
    fast.set_attn_implementation(cpu_attention.register())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16, _ = unpadded.completion_logprobs_unpadded(fast, *args)
    assert torch.isfinite(bf16).all()
    assert (bf16 - fp32).abs().max() < 0.1
    assert (bf16 - fp32).abs().mean() < 0.02
    weights = torch.randn(fp32.shape, generator=torch.Generator().manual_seed(0))
    g32 = torch.autograd.grad((fp32 * weights).sum(), list(model.parameters()))
    g16 = torch.autograd.grad((bf16 * weights).sum(), list(fast.parameters()))
    for (name, _), a, b in zip(model.named_parameters(), g16, g32):
        assert (a - b).norm() <= 0.05 * b.norm() + 1e-6, name


def test_supports_only_what_it_restates():
    assert unpadded.supports(_model("qwen2"))
    windowed = _model("qwen2")
    windowed.config.use_sliding_window, windowed.config.sliding_window = True, 16
    assert not unpadded.supports(windowed)
    flash = _model("qwen2")
    flash.config._attn_implementation = "flash_attention_2"  # wants varlen arguments, not a mask
    assert not unpadded.supports(flash)


def test_policy_update_takes_the_unpadded_layout_without_repeated_prompts(monkeypatch):
    """With one sample per prompt there is nothing to share, but the unpadded forward still pays."""
    model = _model("qwen2")
    calls = []
    real = unpadded.completion_logprobs_unpadded
    monkeypatch.setattr(unpadded, "completion_logprobs_unpadded", lambda *a, **k: calls.append(1) or real(*a, **k))
    batch = _batch((3, 6, 4), (5, 2, 8), group=1)
    update.policy_update(model, torch.optim.SGD(model.parameters(), lr=0.0), batch, pad_id=0, micro_batch_size=64, mu=1,
                         eps_low=0.2, eps_high=0.2, beta=0.0, loss_agg="token-mean", max_len=16, temperature=1.0,
                         max_grad_norm=1.0)
    assert calls


def test_idle_tokens_change_nothing(monkeypatch):
    """bf16 on CPU rounds the flat length up with idle tokens; they must not touch any real one."""
    model = _model("qwen2")
    batch = _batch((4, 9), (3, 10, 6))
    m = layout.micro_batches(batch, 64, 0, "cpu", share_prompts=True)[0]
    args = (model, m.prompt_ids, m.prompt_mask, m.owner, m.tokens, m.mask, 0.7)
    plain, _ = unpadded.completion_logprobs_unpadded(*args)
    monkeypatch.setattr(unpadded, "_reduced_precision_on_cpu", lambda model: True)
    monkeypatch.setattr(unpadded, "TOKEN_BUCKET", 64)
    rounded, _ = unpadded.completion_logprobs_unpadded(*args)
    torch.testing.assert_close(rounded, plain, atol=1e-6, rtol=1e-6)
    g_plain = torch.autograd.grad(plain.sum(), list(model.parameters()))
    g_rounded = torch.autograd.grad(rounded.sum(), list(model.parameters()))
    for a, b in zip(g_rounded, g_plain):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("chunk", [2, 3, 100])
def test_causal_query_chunks_change_nothing(monkeypatch, chunk):
    """Long completions attend in query chunks, each cut at its last query's keys: same results."""
    model = _model("qwen2")
    monkeypatch.setattr(unpadded, "ATTENTION_CHUNK", chunk)
    _compare(model, _batch((4, 9), (3, 13, 6, 11)))


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_gradient_checkpointing_gives_the_same_log_probs_and_gradients(family):
    """model.gradient_checkpointing: each layer is rerun in the backward; nothing numeric changes."""
    model = _model(family).train()
    batch = _batch([5, 9], [4, 7, 1])
    m = layout.micro_batches(batch, 64, 0, "cpu", share_prompts=True)[0]

    def run(net):
        net.zero_grad(set_to_none=True)
        logp, _ = unpadded.completion_logprobs_unpadded(net, m.prompt_ids, m.prompt_mask, m.owner, m.tokens, m.mask, 0.8)
        (logp * torch.linspace(-1, 1, logp.numel()).view_as(logp)).sum().backward()
        return logp.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    want, want_grads = run(model)
    saved = []
    hooks = torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t)
    with hooks:
        run(model)
    plain_saved = sum(saved)
    unpadded.enable_checkpointing(model)
    saved.clear()
    with hooks:
        got, got_grads = run(model)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-6, atol=1e-7)
    assert sum(saved) < plain_saved  # fewer activations kept for the backward


def test_gradient_checkpointing_refuses_what_it_cannot_cover():
    model = _model("qwen2")
    model.config._attn_implementation = "flash_attention_2"  # not maskable: the unpadded forward declines
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        unpadded.enable_checkpointing(model)
