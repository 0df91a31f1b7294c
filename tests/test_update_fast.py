"""The update's fast paths give the plain path's loss, log-probs and gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from aha.models.loading import load_model_dir
from aha.stages import update
from aha.stages.update import RolloutBatch, _collate, completion_logits_plain, policy_update


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    torch.set_num_threads(1)
    model, tok = load_model_dir(tiny_model_dir)
    return model, tok


def _batch(tok, n: int = 6, seed: int = 0) -> RolloutBatch:
    g = torch.Generator().manual_seed(seed)
    vocab = len(tok)
    prompts, comps, olds = [], [], []
    for i in range(n):
        prompt = torch.randint(2, vocab, (3 + i % 3,), generator=g).tolist()
        comp = torch.randint(2, vocab, (4 + (5 * i) % 9,), generator=g).tolist()
        prompts.append(prompt)
        comps.append(comp)
        olds.append((-torch.rand(len(comp), generator=g) * 3 - 1).tolist())
    return RolloutBatch(prompts, comps, olds, torch.randn(n, generator=g))


def test_completion_logits_match_full_forward(policy):
    model, tok = policy
    batch = _batch(tok)
    ids, attn, starts, tokens, mask, _ = _collate(batch, list(range(6)), tok.pad_token_id, "cpu")
    with torch.no_grad():
        fast = update._completion_logits(model, ids, attn, starts, tokens.shape[1])
        plain = completion_logits_plain(model, ids, attn, starts, tokens.shape[1])
    keep = mask.bool()
    torch.testing.assert_close(fast[keep], plain[keep], atol=1e-5, rtol=1e-5)


def _run(model, tok, batch, monkeypatch, fast: bool, micro: int, beta: float):
    model = copy.deepcopy(model)
    ref = copy.deepcopy(model).eval() if beta > 0 else None
    if ref is not None:
        torch.manual_seed(0)
        with torch.no_grad():  # a reference that differs from the policy, so the KL term is not 0
            for p in ref.parameters():
                p.add_(0.01 * torch.randn_like(p))
    if not fast:
        monkeypatch.setattr(update, "FAST_HEAD_TYPES", ())
    grads = {}
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    opt.step = lambda: grads.update({n: p.grad.clone() for n, p in model.named_parameters()})
    timings = {}
    stats = policy_update(model, opt, batch, pad_id=tok.pad_token_id, micro_batch_size=micro, mu=1,
                          eps_low=0.2, eps_high=0.28, beta=beta, loss_agg="token-mean", max_len=16,
                          temperature=0.9, max_grad_norm=1e9, ref_model=ref, timings=timings)
    monkeypatch.undo()
    return stats, grads, timings


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_fast_update_equals_plain(policy, monkeypatch, beta):
    model, tok = policy
    batch = _batch(tok, n=7)
    plain, g_plain, _ = _run(model, tok, batch, monkeypatch, fast=False, micro=7, beta=beta)
    fast, g_fast, timings = _run(model, tok, batch, monkeypatch, fast=True, micro=3, beta=beta)
    for key in ("loss", "kl", "clip_frac", "entropy"):
        assert fast[key] == pytest.approx(plain[key], rel=1e-5, abs=1e-6)
    for name in g_plain:
        torch.testing.assert_close(g_fast[name], g_plain[name], atol=1e-6, rtol=1e-4)
    assert set(timings) >= {"ref", "forward", "backward"}
    assert any(g.abs().sum() > 0 for g in g_fast.values())
