"""Cost ledger: tokens, FLOPs and wall seconds per phase of a run, summed into `summary.json`.

FLOPs use the Kaplan et al. (2020) rule: 2·N per token for a forward pass (generation, scoring with
the reference or old policy, evaluation) and 6·N per token trained on (forward + backward). N is
the number of **non-embedding** parameters (`count_params`), as in that rule; attention's
context-dependent FLOPs are left out, which undercounts long sequences on small models. FLOPs are
computed when a phase is recorded, so ledgers of stages with different models (teacher and student
in distillation) merge by plain sums.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Iterator, Mapping

PARAM_KIND = "non-embedding"


@dataclass
class PhaseCost:
    tokens_generated: int = 0  # sampled tokens (2·N FLOPs each)
    tokens_forward: int = 0  # tokens scored without a backward pass: prompts, ref/old logprobs, eval (2·N)
    tokens_trained: int = 0  # tokens in the loss, forward + backward (6·N)
    flops: float = 0.0
    seconds: float = 0.0  # wall-clock
    calls: int = 0

    def add(self, other: "PhaseCost") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class CostLedger:
    """Accumulates `PhaseCost` per phase name ("rollout", "reward", "update", "eval", "pretrain", …).

    >>> ledger = CostLedger(n_params=1000)
    >>> ledger.add("rollout", tokens_generated=10, seconds=0.5)
    >>> ledger.add("update", tokens_trained=10, seconds=1.0)
    >>> ledger.total().flops  # 2·1000·10 + 6·1000·10
    80000.0
    """

    def __init__(self, n_params: int = 0):
        self.n_params = int(n_params)  # non-embedding parameters of the model this ledger's stage runs
        self.phases: dict[str, PhaseCost] = {}

    def add(
        self,
        phase: str,
        *,
        seconds: float = 0.0,
        tokens_generated: int = 0,
        tokens_forward: int = 0,
        tokens_trained: int = 0,
        n_params: int | None = None,
        flops: float | None = None,
    ) -> None:
        """Record one call of `phase`. `n_params` overrides the ledger's N (a teacher model sampling
        inside a student's stage); `flops` overrides the estimate altogether."""
        n = self.n_params if n_params is None else int(n_params)
        if flops is None:
            flops = 2.0 * n * (tokens_generated + tokens_forward) + 6.0 * n * tokens_trained
        cost = PhaseCost(int(tokens_generated), int(tokens_forward), int(tokens_trained), float(flops), float(seconds), 1)
        self.phases.setdefault(phase, PhaseCost()).add(cost)

    @contextmanager
    def timed(self, phase: str, **tokens: int) -> Iterator[dict]:
        """Time a block; token counts known only inside it go into the yielded dict.

        >>> ledger = CostLedger(n_params=10)
        >>> with ledger.timed("rollout") as c:
        ...     c["tokens_generated"] = 4
        >>> ledger.phases["rollout"].tokens_generated
        4
        """
        counts = dict(tokens)
        start = time.perf_counter()
        try:
            yield counts
        finally:
            self.add(phase, seconds=time.perf_counter() - start, **counts)

    def total(self) -> PhaseCost:
        out = PhaseCost()
        for cost in self.phases.values():
            out.add(cost)
        return out

    def merge(self, other: "CostLedger", prefix: str = "") -> "CostLedger":
        """A new ledger with both ledgers' phases summed; `prefix` names the other's phases by stage
        ("pretrain/") so a pipeline's summary keeps them apart."""
        out = CostLedger(max(self.n_params, other.n_params))
        for source, pre in ((self, ""), (other, prefix)):
            for name, cost in source.phases.items():
                out.phases.setdefault(pre + name, PhaseCost()).add(cost)
        return out

    def to_dict(self) -> dict:
        """For summary.json under the key "cost"."""
        return {
            "params": self.n_params,
            "param_kind": PARAM_KIND,
            "phases": {name: asdict(cost) for name, cost in self.phases.items()},
            "total": asdict(self.total()),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "CostLedger":
        ledger = cls(int(data.get("params", 0)))
        names = {f.name for f in fields(PhaseCost)}
        for name, cost in data.get("phases", {}).items():
            ledger.phases[name] = PhaseCost(**{k: v for k, v in cost.items() if k in names})
        return ledger


def count_params(model, exclude_embeddings: bool = True) -> int:
    """Parameters of a torch module, each shared tensor once. With `exclude_embeddings` the weights
    of `nn.Embedding` modules (token and learned position tables) are left out; an output head tied to
    the token embedding is then excluded with it, an untied head counts (it is a real matmul)."""
    import torch

    seen, total, embedding_ids = set(), 0, set()
    if exclude_embeddings:
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                embedding_ids.update(id(p) for p in module.parameters(recurse=False))
    for p in model.parameters():  # parameters() already yields a tied tensor once
        if id(p) in seen or id(p) in embedding_ids:
            continue
        seen.add(id(p))
        total += getattr(p, "ds_numel", p.numel())  # a DeepSpeed ZeRO-3 partition: its full size
    return total


def format_flops(flops: float) -> str:
    """Human units: 3.5e14 -> '350 TFLOP'."""
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"
