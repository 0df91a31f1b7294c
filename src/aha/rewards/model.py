"""The `reward_model` reward: helpfulness of the summary on general prompts (R1 §2.3.4, all-scenario RL).

On problems with `meta["kind"] == "general"` it returns the scorer's value for the **summary only**
(`aha.template.summary_text`: the <answer> block; without one, the text after </think>); the thought
never reaches the scorer, so how the model thinks cannot buy helpfulness. A completion with no
summary scores `NO_SUMMARY` (0.0, the bottom of the range: nothing was said to the user). Other
problems get None: the rule rewards judge them.

The scorer comes in the reward context (`scorer=`), loaded once by the GRPO set-up from the config's
`reward_model` section (`scorer_for`): a trained reward model (`aha rm`, any one-label
`…ForSequenceClassification` directory; sigmoid of its logit, `aha.models.reward`) or an LLM judge
over an OpenAI-compatible endpoint (`aha.rewards.judge`; None where its reply is unreadable).
"""

from __future__ import annotations

from aha.rewards.accuracy import is_general
from aha.rewards.base import register_reward
from aha.template import summary_text

NO_SUMMARY = 0.0


@register_reward("reward_model")
def reward_model_reward(completions: list[str], *, problems, scorer=None, infos: list[dict] | None = None,
                        **_) -> list[float | None]:
    problems = list(problems)
    general = [i for i, p in enumerate(problems) if is_general(p)]
    out: list[float | None] = [None] * len(completions)
    if not general:
        return out
    if scorer is None:
        raise ValueError("the reward_model reward needs a scorer: set reward_model.path (e.g. an `aha rm` run's "
                         "model/) or reward_model.judge_url")
    summaries = {i: summary_text(completions[i]) for i in general}
    asked = [i for i in general if summaries[i] is not None]
    values = scorer.score([problems[i].question for i in asked], [summaries[i] for i in asked]) if asked else []
    for i in general:
        out[i] = NO_SUMMARY
    for i, value in zip(asked, values):
        out[i] = None if value is None else float(value)
        if value is None and infos is not None:
            infos[i]["reward_model"] = "the judge's reply had no readable score"
    return out


def load_scorer(section, render=None, device=None):
    """The scorer a `RewardModelSection` names: its reward model (`path`) or its judge (`judge_url`).
    `render(question) -> prompt text` must be how the policy's prompts were rendered when the reward
    model was trained (aha rm renders with the R1-Zero template by default)."""
    if section.path:
        from aha.models.reward import RewardModelScorer
        from aha.template import build_prompt

        return RewardModelScorer(section.path, render or build_prompt, section.dtype, section.batch_size, device)
    if section.judge_url:
        from aha.rewards.judge import JudgeScorer

        return JudgeScorer(section.judge_url, section.judge_model, section.judge_prompt, section.judge_api_key_env,
                           section.judge_concurrency, section.judge_timeout, section.judge_max_retries,
                           section.judge_max_tokens)
    raise ValueError("reward_model: set path (a reward model directory) or judge_url (an OpenAI-compatible endpoint)")


def scorer_for(cfg, tokenizer, device=None):
    """The scorer of a GRPO run whose rewards weigh `reward_model` (None otherwise), loaded once at
    set-up. Prompts are rendered with the run's own template and the policy's tokenizer."""
    if not cfg.rewards.get("reward_model"):
        return None
    from aha.template import render_prompt

    return load_scorer(cfg.reward_model, lambda q: render_prompt(q, cfg.prompt.template, tokenizer), device)
