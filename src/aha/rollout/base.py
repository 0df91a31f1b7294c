"""The rollout contract every engine keeps (checked by one shared test suite), and the left
padding that engines and the update share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    stop_token_ids: tuple[int, ...] = ()  # besides EOS; e.g. the id of "</answer>"
    seed: int = 0
    ignore_eos: bool = False  # run every sample to max_new_tokens (benchmarks; as vLLM's ignore_eos)
    # None: one noise stream for the batch (depends on which rows are decoded together). An int:
    # sample row r's noise at token t is a hash of (seed, row_offset + r, t) — the same whichever
    # process decodes the row and whatever else is in its batch, so N processes that each decode a
    # share of a step's rows (offset = the share's first row) draw what one process would.
    row_offset: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Completion:
    prompt_index: int  # which prompt of the call this sample continues
    ids: list[int]  # generated token ids, the stop token included
    logprobs: list[float]  # log π(token) at the sampling temperature, one per id
    text: str
    finish_reason: str  # "stop" (EOS or a stop token) or "length"
    extra: dict = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class RolloutEngine(ABC):
    @abstractmethod
    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> list[Completion]:
        """`n` samples per prompt, returned grouped: prompt 0's n samples first, then prompt 1's, …"""

    def load_weights(self, state_dict) -> None:
        """Bring the engine's copy of the policy up to date (on-policy sync). Engines that share the
        training module (the torch engine) have nothing to do."""


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (B, P): prompts right-aligned so that what follows starts at one column."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def left_pad_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: real tokens at 0, 1, …; pads at 0 (never read)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)
