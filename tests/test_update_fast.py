"""The update's fast paths give the plain path's loss, log-probs and gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from aha.models.loading import load_model_dir
from aha.train import forward, layout, update
from aha.train.forward import completion_logits_plain
from aha.train.layout import RolloutBatch, _collate
from aha.train.update import policy_update


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    torch.set_num_threads(1)
    model, tok = load_model_dir(tiny_model_dir)
    return model, tok


def _grouped_batch(tok, groups: int = 3, group: int = 4, seed: int = 0, prompt_lengths=(5, 7, 5)) -> RolloutBatch:
    """GRPO's shape: `groups` prompts (of the given lengths) with `group` completions each."""
    g = torch.Generator().manual_seed(seed)
    vocab = len(tok)
    prompts, comps, olds = [], [], []
    for k in range(groups):
        prompt = torch.randint(2, vocab, (prompt_lengths[k % len(prompt_lengths)],), generator=g).tolist()
        for j in range(group):
            comp = torch.randint(2, vocab, (1 + (3 * j + k) % 8,), generator=g).tolist()
            prompts.append(prompt)
            comps.append(comp)
            olds.append((-torch.rand(len(comp), generator=g) * 3 - 1).tolist())
    return RolloutBatch(prompts, comps, olds, torch.randn(len(prompts), generator=g))


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
        fast = forward.completion_logits_plain_rows(model, ids, attn, starts, tokens.shape[1])
        plain = completion_logits_plain(model, ids, attn, starts, tokens.shape[1])
    keep = mask.bool()
    torch.testing.assert_close(fast[keep], plain[keep], atol=1e-5, rtol=1e-5)


def _run(model, tok, batch, monkeypatch, fast: bool, micro: int, beta: float, mu: int = 1, share=None):
    model = copy.deepcopy(model)
    ref = copy.deepcopy(model).eval() if beta > 0 else None
    if ref is not None:
        torch.manual_seed(0)
        with torch.no_grad():  # a reference that differs from the policy, so the KL term is not 0
            for p in ref.parameters():
                p.add_(0.01 * torch.randn_like(p))
    if not fast:
        monkeypatch.setattr(forward, "FAST_HEAD_TYPES", ())
    grads = {}
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    opt.step = lambda: grads.update({n: p.grad.clone() for n, p in model.named_parameters()})
    timings = {}
    stats = policy_update(model, opt, batch, pad_id=tok.pad_token_id, micro_batch_size=micro, mu=mu,
                          eps_low=0.2, eps_high=0.28, beta=beta, loss_agg="token-mean", max_len=16,
                          temperature=0.9, max_grad_norm=1e9, ref_model=ref, timings=timings,
                          share_prompts=share)
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


@pytest.mark.parametrize("lengths", [(6, 6, 6), (5, 7, 3)], ids=["equal-prompts", "padded-prompts"])
@pytest.mark.parametrize("beta,mu", [(0.0, 1), (0.04, 1), (0.04, 2)])
def test_shared_prompt_update_equals_plain(policy, monkeypatch, lengths, beta, mu):
    """Each prompt computed once for its group gives the per-row forward's losses and gradients,
    whether or not prompts need padding, with micro-batches that split a group."""
    model, tok = policy
    batch = _grouped_batch(tok, prompt_lengths=lengths)
    plain, g_plain, _ = _run(model, tok, batch, monkeypatch, fast=False, micro=12, beta=beta, mu=mu, share=False)
    for micro in (12, 5, 3):
        shared, g_shared, _ = _run(model, tok, batch, monkeypatch, fast=True, micro=micro, beta=beta, mu=mu, share=True)
        for key in ("loss", "kl", "clip_frac", "entropy", "rollout_logprob_gap"):
            assert shared[key] == pytest.approx(plain[key], rel=1e-5, abs=1e-6), (micro, key)
        for name in g_plain:
            torch.testing.assert_close(g_shared[name], g_plain[name], atol=1e-6, rtol=1e-4)
        assert shared["forward_tokens"] < plain["forward_tokens"]  # prompts counted once per group


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_prompt_logits_match_plain(policy, attention):
    model, tok = policy
    model = copy.deepcopy(model)
    model.set_attn_implementation(attention)
    batch = _grouped_batch(tok, prompt_lengths=(4, 9, 6))
    rows = list(range(len(batch.prompt_ids)))
    plain = layout._plain_micro(batch, rows, tok.pad_token_id, "cpu")
    shared = layout.micro_batches(batch, 64, tok.pad_token_id, "cpu", share_prompts=True)
    assert len(shared) == 1 and shared[0].prompt_mask is not None
    with torch.no_grad():
        a = plain.logits(model)
        b = shared[0].logits(model)
    order = {row: r for r, row in enumerate(shared[0].rows)}
    b = b[[order[row] for row in rows]]
    keep = plain.mask.bool()
    torch.testing.assert_close(b[keep], a[keep], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(b).all()


def test_bf16_update_tracks_fp32(policy, monkeypatch):
    """bf16-mixed gives the fp32 update's loss and gradient direction within bf16's precision."""
    model, tok = policy
    batch = _grouped_batch(tok)
    runs = {}
    for bf16 in (False, True):
        m = copy.deepcopy(model)
        grads = {}
        opt = torch.optim.SGD(m.parameters(), lr=0.0)
        opt.step = lambda m=m, grads=grads: grads.update({n: p.grad.clone() for n, p in m.named_parameters()})
        stats = policy_update(m, opt, batch, pad_id=tok.pad_token_id, micro_batch_size=64, mu=1, eps_low=0.2,
                              eps_high=0.2, beta=0.0, loss_agg="token-mean", max_len=16, temperature=1.0,
                              max_grad_norm=1e9, bf16=bf16)
        runs[bf16] = (stats, torch.cat([g.flatten() for g in grads.values()]))
    (s32, g32), (s16, g16) = runs[False], runs[True]
    assert s16["entropy"] == pytest.approx(s32["entropy"], rel=2e-2)
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.98
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


@pytest.mark.parametrize("share", [False, True])
def test_micro_batches_respect_row_and_token_caps(policy, share):
    """Every row lands in exactly one micro-batch; groups stay whole when shared; a micro-batch
    exceeds a cap only when it holds a single row or group."""
    _, tok = policy
    batch = _grouped_batch(tok, groups=5, group=4, prompt_lengths=(5, 9, 3, 7, 6))
    for rows_cap, token_cap in [(8, None), (64, 40), (3, 25), (64, 1)]:
        micro = layout.micro_batches(batch, rows_cap, tok.pad_token_id, "cpu", share, token_cap)
        rows = sorted(i for m in micro for i in m.rows)
        assert rows == list(range(len(batch.prompt_ids)))
        for m in micro:
            units = {tuple(batch.prompt_ids[i]) for i in m.rows} if share else set(m.rows)
            padded = m.tokens.numel() + (m.prompt_ids.numel() if share else m.ids.numel() - m.tokens.numel())
            if len(units) > 1:
                assert len(m.rows) <= rows_cap
                if token_cap is not None and not share:
                    assert m.ids.numel() <= token_cap
                if token_cap is not None and share:
                    assert padded <= token_cap
        if share:  # a prompt's rows are never split across micro-batches unless the group exceeds the row cap
            for prompt in {tuple(p) for p in batch.prompt_ids}:
                holders = [k for k, m in enumerate(micro) if any(tuple(batch.prompt_ids[i]) == prompt for i in m.rows)]
                assert len(holders) == 1 or rows_cap < 4


def test_prompt_sharing_only_where_exact(policy):
    model, _ = policy
    assert forward.can_share_prompts(model)  # Qwen2 with use_sliding_window = False
    windowed = copy.deepcopy(model)
    windowed.config.use_sliding_window, windowed.config.sliding_window = True, 16
    assert not forward.can_share_prompts(windowed)
