"""Accuracy reward: the task's own verifier on the extracted <answer> text."""

from __future__ import annotations

from aha.rewards.base import register_reward
from aha.template import parse_response


@register_reward("accuracy")
def accuracy_reward(completions: list[str], *, problems, task, infos: list[dict] | None = None, **_) -> list[float]:
    """The answer is read from the last <answer> block even when the format is broken elsewhere,
    so accuracy and format stay separate signals. Verifier details land in `infos`. The whole batch
    goes to the task at once, so slow verifiers (math, code) can run in parallel."""
    answers = [parse_response(c).answer for c in completions]
    if task.reads_full_completion:
        answers = [a if a is not None else c for a, c in zip(answers, completions)]
    verdicts = task.verify_many(answers, list(problems))
    if infos is not None:
        for info, (_, detail) in zip(infos, verdicts):
            info.update(detail)
    return [float(reward) for reward, _ in verdicts]
