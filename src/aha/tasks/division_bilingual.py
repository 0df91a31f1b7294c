"""The division task in two languages: where R1-Zero's language mixing appears in miniature.

Prompts come in English (`645 divided by 86`) or Chinese (`645 除以 86`); answers are always digits,
so verification is the division task's. The traces the base is pretrained on carry the prompt's
language in their words (`guess` / `猜`, `too high, wait` / `太大, 等等`, `ok` / `好`), and a share of
them switch language at a step boundary — the raw material of mixing, as in a web-scale corpus.

Why accuracy-only RL drifts (R1 §2.3.2): a check step written in one language is wrong more often
than one written in the other (`step_error`, 25 % vs 3 % by default, the numbers of the bilingual
prototype in the design notes). A wrong step is a comparison with the wrong verdict, which ends in a
wrong answer. So on prompts of the noisier language, samples that switch into the reliable one are
right more often, GRPO amplifies them, and the language-consistency reward pays against it. That
needs a base that learned the difference: on 80k traces it did not (its verdicts were as often wrong
in either language, `bench/step_reliability.py`) and RL drifted both ways; the shipped base, on 640k
traces, did, and under accuracy-only RL its English-prompt samples drift into Chinese
(BENCHMARKS.md, "Language mixing in miniature").
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence

from aha.tasks.base import Problem, register_task
from aha.tasks.division import DivisionTask, trial_quotient

# The words of each language's traces. Han characters are words of their own (no spaces).
WORDS: Mapping[str, Mapping[str, str]] = {
    "en": {"divided": "divided by", "guess": "guess", "try": "try", "high": "too high, wait,", "ok": "ok"},
    "zh": {"divided": "除以", "guess": "猜", "try": "试", "high": "太大, 等等,", "ok": "好"},
}


@register_task("division_bilingual")
class BilingualDivisionTask(DivisionTask):
    """`languages`: the two prompt languages (codes of WORDS); `second_share`: share of prompts in the
    second one; `switch_share`: share of corpus traces that switch language at a step boundary;
    `step_error`: per-step error rate of a check step written in each language."""

    reflection_markers = ("wait", "ok", "too high", "等等", "太大", "好")

    def __init__(self, hard_share: float = 0.6, mix: Sequence[float] = (0.45, 0.45, 0.10),
                 languages: Sequence[str] = ("en", "zh"), second_share: float = 0.5, switch_share: float = 0.2,
                 step_error: Mapping[str, float] | None = None):
        super().__init__(hard_share, tuple(mix))
        languages = tuple(languages)
        if len(languages) != 2 or len(set(languages)) != 2 or any(lang not in WORDS for lang in languages):
            raise ValueError(f"languages must be two different codes of {sorted(WORDS)}, got {list(languages)}")
        for name, value in (("second_share", second_share), ("switch_share", switch_share)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        errors = dict(step_error if step_error is not None else {"en": 0.25, "zh": 0.03})
        if set(errors) != set(languages) or any(not 0.0 <= e <= 1.0 for e in errors.values()):
            raise ValueError(f"step_error must give a rate in [0, 1] for each of {list(languages)}, got {errors}")
        self.languages, self.second_share, self.switch_share, self.step_error = languages, second_share, switch_share, errors

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        base = super().problems(split, n, seed)
        # The language is drawn from its own stream, so the division problems are the default task's.
        rng = random.Random(f"language-{seed}")
        return [self._in_language(p, self.languages[int(rng.random() < self.second_share)]) for p in base]

    @staticmethod
    def _in_language(problem: Problem, language: str) -> Problem:
        a, b = problem.meta["a"], problem.meta["b"]
        return Problem(question=f"{a} {WORDS[language]['divided']} {b}", answer=problem.answer,
                       id=f"{problem.id}-{language}", meta={"a": a, "b": b, "language": language})

    def corpus_document(self, problem: Problem, rng: random.Random) -> str:
        a, b, language = problem.meta["a"], problem.meta["b"], problem.meta["language"]
        style = rng.choices(("direct", "single", "check"), weights=self.mix)[0]
        n_steps = len(check_steps(a, b)) if style == "check" else 1
        langs = step_languages(n_steps, language, self._other(language), self.switch_share, rng)
        guess = trial_quotient(a, b)
        if style == "direct":
            think, final = f"{WORDS[langs[0]]['guess']} {guess}", guess
        elif style == "single":
            think, final = f"{WORDS[langs[0]]['try']} {guess}*{b}={guess * b}", guess
        else:
            think, final = noisy_check_trace(a, b, langs, self.step_error, rng)
        return f" <think>{think}</think> <answer>{final}</answer>"

    def cold_start_completion(self, problem: Problem) -> str:
        """The check trace with every step in the prompt's language and no wrong verdicts: readable
        (no mixing) and correct, as R1's curated cold-start traces are."""
        a, b, language = problem.meta["a"], problem.meta["b"], problem.meta["language"]
        steps = check_steps(a, b)
        trace, answer = noisy_check_trace(a, b, [language] * len(steps), {language: 0.0}, random.Random(0))
        return f" <think>{trace}</think> <answer>{answer}</answer>"

    def _other(self, language: str) -> str:
        return self.languages[1] if language == self.languages[0] else self.languages[0]


def check_steps(a: int, b: int) -> list[int]:
    """The guesses a correct check visits: the trial quotient down to the true quotient."""
    return list(range(trial_quotient(a, b), a // b - 1, -1))


def step_languages(n_steps: int, language: str, other: str, switch_share: float, rng: random.Random) -> list[str]:
    """The language of each step: the prompt's, or — for a `switch_share` of traces — the other one
    from a step boundary drawn uniformly (0 = the whole trace in the other language)."""
    if rng.random() >= switch_share:
        return [language] * n_steps
    at = rng.randrange(n_steps)
    return [language] * at + [other] * (n_steps - at)


def noisy_check_trace(a: int, b: int, langs: Sequence[str], step_error: Mapping[str, float],
                      rng: random.Random) -> tuple[str, int]:
    """A check trace whose step i is written in `langs[i]` and, with that language's error rate,
    states the wrong verdict: accepts a too-high guess (`688<=645 ok`) or rejects the fitting one.
    The trace follows its own verdicts, so an error ends in a wrong answer. Returns (trace, answer)."""
    q, parts, words = trial_quotient(a, b), [], None
    for i in range(len(langs) + 1):  # a false rejection of the fitting guess adds one step
        lang = langs[min(i, len(langs) - 1)]
        words = WORDS[lang]
        too_high = q * b > a
        if rng.random() < step_error[lang]:
            too_high = not too_high
        if not too_high or q == 1:
            parts.append(f"{q}*{b}={q * b}<={a} {words['ok']}")
            return " ".join(parts), q
        parts.append(f"{q}*{b}={q * b}>{a} {words['high']}")
        q -= 1
    parts.append(f"{q}*{b}={q * b}<={a} {words['ok']}")
    return " ".join(parts), q
