"""Evaluation as the paper does it: k samples per problem at T=0.6, top-p 0.95; pass@1 is the mean
correctness over all samples, cons@k the majority vote, pass@k the unbiased estimator.

General problems (`meta["kind"] == "general"`, a mixture's non-reasoning part) have no right answer:
pass@1 and its kin are over the reasoning problems only, and the general ones get their own numbers
— the task's rubric of helpfulness and, given a scorer, the reward model's score, both on the summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from aha.algo.passk import majority_vote, pass_at_k
from aha.rewards import combine, get_reward
from aha.rewards.accuracy import is_general
from aha.rollout.base import RolloutEngine, SamplingParams
from aha.tasks.base import Problem, Task
from aha.template import parse_response, render_prompt, summary_text


@dataclass
class EvalResult:
    pass_at_1: float
    cons_at_k: float
    pass_at_k: float
    k: int
    problems: int
    format_rate: float
    response_length_mean: float
    tokens_generated: int
    seconds: float
    completions: list  # (problem, [Completion]) for the report and reflection statistics
    # Per problem: each sample's accuracy and format scores, the majority answer and its verdict.
    details: list = field(default_factory=list)
    # Share of other-language CoT words (R1 §2.3.2), overall and per prompt language; only for
    # tasks whose problems name their language (meta["language"]).
    language_mixing: dict | None = None
    # General problems only: {"problems", "helpfulness" (the rubric), "reward_model" (with a scorer)}.
    general: dict | None = None

    def to_json(self) -> dict:
        return {f"pass@1": self.pass_at_1, f"cons@{self.k}": self.cons_at_k, f"pass@{self.k}": self.pass_at_k,
                "k": self.k, "problems": self.problems, "format_rate": self.format_rate,
                "response_length_mean": self.response_length_mean, "tokens_generated": self.tokens_generated,
                "seconds": self.seconds,
                **({"language_mixing": self.language_mixing} if self.language_mixing is not None else {}),
                **({"general": self.general} if self.general is not None else {})}


def evaluate(engine: RolloutEngine, tokenizer, task: Task, problems: list[Problem], k: int,
             params: SamplingParams, template: str = "r1-zero", scorer=None) -> EvalResult:
    """`problems` counts every problem; pass@1, cons@k and pass@k are over the reasoning ones (NaN
    when there are none). `scorer` (a reward-model scorer, `aha.rewards.model`) adds its mean score."""
    start = time.time()
    prompts = [tokenizer(render_prompt(p.question, template, tokenizer))["input_ids"] for p in problems]
    completions = engine.generate(prompts, params, n=k)
    grouped = [completions[i * k : (i + 1) * k] for i in range(len(problems))]
    correct_counts, votes_right, formats, lengths, details = [], [], [], [], []
    for problem, group in zip(problems, grouped):
        texts = [c.text for c in group]
        scored = combine({"accuracy": 1.0, "format": 1.0}, texts, problems=[problem] * k, task=task,
                         truncated=[c.truncated for c in group])
        formats += scored.components["format"]
        lengths += [len(c.ids) for c in group]
        if is_general(problem):  # no right answer to count: see general_scores
            details.append({"kind": "general", "accuracy": [None] * k, "format": list(scored.components["format"]),
                            "voted": None, "voted_correct": None})
            continue
        accuracy = scored.components["accuracy"]
        correct_counts.append(int(sum(accuracy)))
        voted = majority_vote([parse_response(t).answer for t in texts])
        votes_right.append(task.verify(voted, problem)[0] if voted is not None else 0.0)
        details.append({"accuracy": list(accuracy), "format": list(scored.components["format"]), "voted": voted,
                        "voted_correct": votes_right[-1]})
    reasoning = len(correct_counts)
    return EvalResult(
        pass_at_1=float(np.sum(correct_counts) / (k * reasoning)) if reasoning else float("nan"),
        cons_at_k=float(np.mean(votes_right)) if reasoning else float("nan"),
        pass_at_k=float(np.mean([pass_at_k(k, c, k) for c in correct_counts])) if reasoning else float("nan"),
        k=k, problems=len(problems), format_rate=float(np.mean(formats)),
        response_length_mean=float(np.mean(lengths)), tokens_generated=int(np.sum(lengths)),
        seconds=time.time() - start, completions=list(zip(problems, grouped)), details=details,
        language_mixing=mixing_by_language(list(zip(problems, grouped))),
        general=general_scores(task, [(p, g) for p, g in zip(problems, grouped) if is_general(p)], scorer),
    )


def general_scores(task: Task, grouped: list, scorer=None) -> dict | None:
    """Mean rubric score (the task's `verify` of the summary: an oracle, never a reward) and, with a
    scorer, mean reward-model score over the samples of general problems; None when there are none."""
    if not grouped:
        return None
    samples = [(problem, c.text) for problem, group in grouped for c in group]
    rubric = [task.verify(summary_text(text), problem)[0] for problem, text in samples]
    out = {"problems": len(grouped), "helpfulness": float(np.mean(rubric))}
    if scorer is not None:
        scores = get_reward("reward_model")([t for _, t in samples], problems=[p for p, _ in samples], scorer=scorer)
        present = [s for s in scores if s is not None]
        out["reward_model"] = float(np.mean(present)) if present else float("nan")
    return out


def mixing_by_language(grouped: list) -> dict | None:
    """{"all": rate, <language>: rate, …} over (problem, completions) pairs: the mean share of
    chain-of-thought words not in the prompt's language. None when no problem names a language."""
    from aha.observe.metrics import language_mixing
    from aha.template import think_text

    rates: dict[str, list[float]] = {}
    for problem, group in grouped:
        language = problem.meta.get("language")
        if language is None:
            continue
        rates.setdefault(language, []).extend(language_mixing(think_text(c.text), language) for c in group)
    if not rates:
        return None
    every = [r for values in rates.values() for r in values]
    return {"all": float(np.mean(every)), **{lang: float(np.mean(v)) for lang, v in sorted(rates.items())}}
