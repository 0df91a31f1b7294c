"""Accuracy reward: the task's own verifier on the extracted <answer> text."""

from __future__ import annotations

from aha.rewards.base import register_reward
from aha.template import parse_response


@register_reward("accuracy")
def accuracy_reward(completions: list[str], *, problems, task, infos: list[dict] | None = None, **_) -> list[float]:
    """The answer is read from the last <answer> block even when the format is broken elsewhere,
    so accuracy and format stay separate signals. Verifier details land in `infos`."""
    rewards = []
    for i, (completion, problem) in enumerate(zip(completions, problems)):
        answer = parse_response(completion).answer
        reward, info = task.verify(answer, problem)
        if infos is not None:
            infos[i].update(info)
        rewards.append(float(reward))
    return rewards
