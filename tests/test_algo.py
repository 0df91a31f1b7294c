"""Every numeric function of aha.algo against hand-computed or brute-force references."""

import itertools
import math

import pytest
import torch

from aha.algo.advantages import compute_advantages
from aha.algo.losses import agg_loss, clipped_surrogate, kl_k3, token_logprobs, token_logprobs_and_entropy
from aha.algo.passk import majority_vote, pass_at_k


def test_grpo_advantages_hand_computed():
    # group [1, 0, 0, 1]: mean 0.5, sample std sqrt(1/3) = 0.57735
    adv = compute_advantages("grpo", torch.tensor([1.0, 0.0, 0.0, 1.0]), 4)
    assert torch.allclose(adv, torch.tensor([0.866, -0.866, -0.866, 0.866]), atol=1e-3)


def test_grpo_groups_are_independent_and_equal_groups_get_zero():
    adv = compute_advantages("grpo", torch.tensor([1.0, 1.0, 0.0, 2.0]), 2)
    assert adv[:2].tolist() == [0.0, 0.0]
    assert torch.allclose(adv[2:], torch.tensor([-0.7071, 0.7071]), atol=1e-3)  # std of [0, 2] = sqrt(2)


def test_dr_grpo_is_mean_centred_only():
    adv = compute_advantages("dr_grpo", torch.tensor([1.0, 0.0, 0.0, 0.0]), 4)
    assert torch.allclose(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_rloo_leave_one_out():
    adv = compute_advantages("rloo", torch.tensor([3.0, 0.0, 0.0]), 3)
    assert torch.allclose(adv, torch.tensor([3.0, -1.5, -1.5]))


def test_unknown_advantage_lists_valid_names():
    with pytest.raises(KeyError, match="dr_grpo.*grpo.*rloo"):
        compute_advantages("ppo", torch.zeros(4), 2)
    with pytest.raises(ValueError, match="multiple of group_size"):
        compute_advantages("grpo", torch.zeros(5), 2)


def test_token_logprobs_equal_log_softmax_gather():
    torch.manual_seed(0)
    logits, tokens = torch.randn(3, 5, 11), torch.randint(0, 11, (3, 5))
    for temperature in (1.0, 0.7):
        want = torch.log_softmax(logits / temperature, -1).gather(-1, tokens[..., None]).squeeze(-1)
        assert torch.allclose(token_logprobs(logits, tokens, temperature), want, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_and_entropy_from_one_log_softmax(dtype, temperature):
    """Log-probs, their gradients and the entropies equal the textbook fp32 formulas on the same
    logits, whatever the logits' dtype (bf16 logits are read as they are, computed in fp32)."""
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(4, 6, 13, generator=g)).to(dtype).requires_grad_()
    tokens = torch.randint(0, 13, (4, 6), generator=g)
    upstream = torch.randn(4, 6, generator=g)
    reference = logits.detach().float().requires_grad_()
    logp_all = torch.log_softmax(reference / temperature, -1)
    want = logp_all.gather(-1, tokens[..., None]).squeeze(-1)
    want_ent = -(logp_all.exp() * logp_all).sum(-1)
    (want * upstream).sum().backward()
    got, ent = token_logprobs_and_entropy(logits, tokens, temperature, entropy=True)
    (got * upstream).sum().backward()
    assert got.dtype == torch.float32 and not ent.requires_grad
    torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, want_ent.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits.grad.float(), reference.grad.to(dtype).float(), atol=1e-5, rtol=1e-5)
    assert token_logprobs_and_entropy(logits, tokens, temperature)[1] is None


def test_entropy_uniform_and_peaked():
    def entropy(logits):
        return token_logprobs_and_entropy(logits, torch.zeros(logits.shape[:-1], dtype=torch.long), entropy=True)[1]

    assert entropy(torch.zeros(1, 1, 8)).item() == pytest.approx(math.log(8), abs=1e-6)
    assert entropy(torch.tensor([[[100.0, 0.0, 0.0]]])).item() == pytest.approx(0.0, abs=1e-6)


def test_clipped_surrogate_hand_values():
    # ratios e^0.5=1.6487 and e^-0.5=0.6065; eps 0.2/0.28
    logp, old = torch.tensor([[0.5, -0.5]]), torch.zeros(1, 2)
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2, 0.28)
    # positive advantage: min(1.6487, 1.28) = 1.28 (clipped); min(0.6065, 0.8) = 0.6065 (not clipped)
    assert torch.allclose(loss, torch.tensor([[-1.28, -0.6065]]), atol=1e-4)
    assert clipped.tolist() == [[True, False]]
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2, 0.28)
    # negative advantage: min(-1.6487, -1.28) = -1.6487; min(-0.6065, -0.8) = -0.8 (clipped)
    assert torch.allclose(loss, torch.tensor([[1.6487, 0.8]]), atol=1e-4)
    assert clipped.tolist() == [[False, True]]


def test_kl_k3_hand_values_and_zero_at_equality():
    logp, ref = torch.tensor([0.0, -1.0]), torch.tensor([0.0, 0.0])
    # x = ref - logp = [0, 1]: e^x - x - 1 = [0, e - 2]
    assert torch.allclose(kl_k3(logp, ref), torch.tensor([0.0, math.e - 2]), atol=1e-6)
    assert (kl_k3(torch.randn(10), torch.randn(10)) >= 0).all()


def test_kl_k3_is_unbiased_for_kl():
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.5, 0.3, 0.2])
    exact = (p * (p / q).log()).sum()
    samples = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    estimate = kl_k3(p.log()[samples], q.log()[samples]).mean()
    assert estimate.item() == pytest.approx(exact.item(), rel=0.03)


LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize("mode,want", [
    ("token-mean", (1 + 2 + 3 + 4) / 4),
    ("seq-mean-token-mean", (2.0 + 4.0) / 2),
    ("seq-mean-token-sum-norm", (1 + 2 + 3 + 4) / (2 * 8)),
])
def test_agg_loss_modes(mode, want):
    assert agg_loss(LOSS, MASK, mode, n_seqs=2, n_tokens=4, max_len=8).item() == pytest.approx(want)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_agg_loss_micro_batches_add_up_to_full_batch(mode):
    full = agg_loss(LOSS, MASK, mode, 2, 4, 8)
    parts = sum(agg_loss(LOSS[i : i + 1], MASK[i : i + 1], mode, 2, 4, 8) for i in range(2))
    assert parts.item() == pytest.approx(full.item())


def test_pass_at_k_against_brute_force():
    for n in range(1, 7):
        for c in range(n + 1):
            for k in range(1, n + 1):
                draws = list(itertools.combinations([1] * c + [0] * (n - c), k))
                brute = sum(any(d) for d in draws) / len(draws)
                assert pass_at_k(n, c, k) == pytest.approx(brute)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_majority_vote_ties_go_to_first_seen():
    assert majority_vote(["7", "8", "8", None, "7"]) == "7"
    assert majority_vote(["3", "4", "4"]) == "4"
    assert majority_vote([None, ""]) is None
