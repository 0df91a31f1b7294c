"""Cost ledger: FLOP rule, phases, timing, merging, round trip through summary.json."""

import json

import pytest
import torch

from aha.observe.cost import CostLedger, count_params, format_flops


def test_flops_follow_2n_forward_6n_trained():
    ledger = CostLedger(n_params=1_000)
    ledger.add("rollout", tokens_generated=100, tokens_forward=50, seconds=2.0)
    ledger.add("update", tokens_trained=100, seconds=3.0)
    ledger.add("update", tokens_trained=100, seconds=1.0)
    assert ledger.phases["rollout"].flops == 2 * 1_000 * 150
    assert ledger.phases["update"].flops == 6 * 1_000 * 200
    assert ledger.phases["update"].calls == 2 and ledger.phases["update"].seconds == 4.0
    total = ledger.total()
    assert total.flops == 300_000 + 1_200_000 and total.tokens_generated == 100 and total.tokens_trained == 200
    ledger.add("distill/teacher", tokens_generated=10, n_params=10_000)  # a bigger teacher inside this stage
    assert ledger.phases["distill/teacher"].flops == 2 * 10_000 * 10
    ledger.add("reward", seconds=0.5, flops=0.0)
    assert ledger.phases["reward"].flops == 0.0


def test_timed_block_records_seconds_and_tokens():
    ledger = CostLedger(n_params=10)
    with ledger.timed("rollout") as counts:
        counts["tokens_generated"] = 7
    cost = ledger.phases["rollout"]
    assert cost.tokens_generated == 7 and cost.flops == 140 and cost.seconds >= 0.0 and cost.calls == 1
    with pytest.raises(RuntimeError):
        with ledger.timed("update", tokens_trained=3):
            raise RuntimeError("boom")
    assert ledger.phases["update"].tokens_trained == 3  # a failed step still spent its time


def test_merge_and_round_trip():
    pre = CostLedger(n_params=5)
    pre.add("update", tokens_trained=10, seconds=1.0)
    rl = CostLedger(n_params=5)
    rl.add("update", tokens_trained=1, seconds=2.0)
    rl.add("rollout", tokens_generated=4, seconds=1.0)
    merged = rl.merge(pre, prefix="pretrain/")
    assert set(merged.phases) == {"update", "rollout", "pretrain/update"}
    assert merged.total().tokens_trained == 11 and merged.total().seconds == 4.0
    assert rl.merge(pre).phases["update"].tokens_trained == 11  # same names add up
    data = json.loads(json.dumps(merged.to_dict()))
    assert data["param_kind"] == "non-embedding" and data["total"]["flops"] == merged.total().flops
    assert CostLedger.from_dict(data).to_dict() == data


def test_count_params_excludes_embeddings_and_tied_heads():
    class Tiny(torch.nn.Module):
        def __init__(self, tie):
            super().__init__()
            self.wte = torch.nn.Embedding(50, 8)
            self.block = torch.nn.Linear(8, 8)  # 72
            self.head = torch.nn.Linear(8, 50, bias=False)  # 400 unless tied
            if tie:
                self.head.weight = self.wte.weight

    assert count_params(Tiny(tie=True)) == 72
    assert count_params(Tiny(tie=False)) == 72 + 400
    assert count_params(Tiny(tie=True), exclude_embeddings=False) == 72 + 400


def test_format_flops():
    assert format_flops(3.5e14) == "350 TFLOP"
    assert format_flops(2e9) == "2 GFLOP"
    assert format_flops(12) == "12 FLOP"
