"""Per-row sampling for the server: each row has its own temperature, top-p and noise stream.

The rollout engine draws one generator's noise for its whole batch, so a sample depends on which
rows it was batched with. A server batches whatever requests happen to arrive together, and a
request with a `seed` must still get the same completion every time. So the uniform number that
picks a row's t-th token is a hash of (seed, sample index, t) alone — counter-based noise, as in
Philox/JAX — never a draw from a stream shared with other rows. (What stays batch-dependent is
float rounding: a row's logits differ in the last bits with the batch's padding width, which flips
a draw only when its uniform lands within that rounding of a CDF boundary — the caveat vLLM's
seeded sampling has too.)
"""

from __future__ import annotations

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 whose outputs pass BigCrush as a counter hash."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def row_uniforms(seeds, samples, steps) -> np.ndarray:
    """Uniforms in [0, 1), one per row, each a function of its own (seed, sample index, step) only."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        z = _splitmix64(np.asarray(seeds, dtype=np.uint64))
        z = _splitmix64(z ^ np.asarray(samples, dtype=np.uint64))
        z = _splitmix64(z ^ np.asarray(steps, dtype=np.uint64))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def sample_rows(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of `logits` (A, V): greedy where temperature is 0, else an inverse-CDF
    draw with `uniforms` (A,) from softmax(logits / T) narrowed to the row's top-p nucleus — the
    rollout engine's sampler (`torch_engine._sample`), with per-row settings and given noise."""
    logits = logits.float()
    greedy = temperature == 0
    scaled = logits / torch.where(greedy, 1.0, temperature)[:, None]
    probs = torch.softmax(scaled, -1)
    if bool((top_p < 1).any()):
        sorted_p, order = probs.sort(-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p[:, None]
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    cdf = probs.cumsum(-1)
    # Unnormalised mass: u is scaled by each row's total; `right` skips zero-mass tokens at u = 0.
    u = uniforms.to(cdf.dtype)[:, None] * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)
    return torch.where(greedy, logits.argmax(-1), drawn)
