"""Pure algorithm functions on tensors: no model, no config, no logging. Variants registered by name."""

from aha.algo.advantages import ADVANTAGES, compute_advantages
from aha.algo.losses import LOSS_AGGREGATIONS, agg_loss, clipped_surrogate, kl_k3, token_logprobs

__all__ = ["ADVANTAGES", "LOSS_AGGREGATIONS", "agg_loss", "clipped_surrogate", "compute_advantages", "kl_k3",
           "token_logprobs"]
