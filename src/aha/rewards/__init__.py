"""Rule rewards: plain callables `fn(completions, *, problems, task, truncated, **columns) -> list[float | None]`,
and the `reward_model` reward (a reward model or an LLM judge, passed in the context as `scorer`).

Importing this package registers the built-in rewards; `combine` weights and sums them.
"""

from aha.rewards.base import REWARDS, RewardBreakdown, combine, get_reward, register_reward
from aha.rewards import format as _format  # noqa: F401  (registers "format")
from aha.rewards import accuracy as _accuracy  # noqa: F401  (registers "accuracy")
from aha.rewards import language as _language  # noqa: F401  (registers "language_consistency")
from aha.rewards import shaping as _shaping  # noqa: F401  (registers "overlong", "cosine_length", "repetition")
from aha.rewards import model as _model  # noqa: F401  (registers "reward_model")

__all__ = ["REWARDS", "RewardBreakdown", "combine", "get_reward", "register_reward"]
