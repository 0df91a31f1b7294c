"""Accuracy reward: the task's own verifier on the extracted <answer> text."""

from __future__ import annotations

from aha.rewards.base import register_reward
from aha.template import parse_response


def is_general(problem) -> bool:
    """A request with no right answer to check (R1's general prompts: `meta["kind"] == "general"`):
    the rule rewards leave it to the reward model."""
    return problem.meta.get("kind") == "general"


@register_reward("accuracy")
def accuracy_reward(completions: list[str], *, problems, task, infos: list[dict] | None = None,
                    **_) -> list[float | None]:
    """The answer is read from the last <answer> block even when the format is broken elsewhere,
    so accuracy and format stay separate signals. Verifier details land in `infos`. The whole batch
    goes to the task at once, so slow verifiers (math, code) can run in parallel. General problems
    get None (not applicable): their helpfulness is the reward model's to score."""
    problems = list(problems)
    checked = [i for i, p in enumerate(problems) if not is_general(p)]
    answers = [parse_response(completions[i]).answer for i in checked]
    if task.reads_full_completion:
        answers = [a if a is not None else completions[i] for a, i in zip(answers, checked)]
    verdicts = task.verify_many(answers, [problems[i] for i in checked]) if checked else []
    out: list[float | None] = [None] * len(completions)
    for i, (reward, detail) in zip(checked, verdicts):
        out[i] = float(reward)
        if infos is not None:
            infos[i].update(detail)
    return out
