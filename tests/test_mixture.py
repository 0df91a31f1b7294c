"""The mixture task: exact shares, dispatch, config-time errors, and general prompts left out of accuracy."""

import collections

import pytest

from aha.config import ConfigError, TaskConfig, ZeroConfig, load_config
from aha.rewards import combine, get_reward
from aha.tasks import get_task
from aha.tasks.mixture import apportion, embedded_base_task

PARTS = {"division_bilingual": 0.8, "general_bilingual": 0.2}


def mixture(**extra):
    return get_task("mixture", parts=PARTS, **extra)


def test_apportion_is_exact_and_proportional():
    assert apportion(16, [0.8, 0.2]) == [13, 3]
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(0, [0.5, 0.5]) == [0, 0]
    for n in range(1, 60):
        counts = apportion(n, [0.8, 0.2])
        assert sum(counts) == n and abs(counts[1] - 0.2 * n) < 1


def test_each_part_gets_its_share_in_its_own_order():
    task = mixture(options={"division_bilingual": {"second_share": 0.3}})
    problems = task.problems("train", 16, seed=7)
    assert problems == task.problems("train", 16, seed=7)
    counts = collections.Counter(p.meta["task"] for p in problems)
    assert counts == {"division_bilingual": 13, "general_bilingual": 3}
    assert {p.meta["kind"] for p in problems if p.meta["task"] == "general_bilingual"} == {"general"}
    assert {p.meta["kind"] for p in problems if p.meta["task"] == "division_bilingual"} == {"reasoning"}
    # A part's problems are that task's own list with the same seed and options, in order: the
    # reasoning part of a held-out set is a prefix of the reasoning task's held-out set.
    held_out = [p.id for p in task.problems("test", 200, seed=5) if p.meta["task"] == "division_bilingual"]
    own = get_task("division_bilingual", second_share=0.3).problems("test", 200, seed=5)
    assert held_out == [p.id for p in own[:160]]


def test_verify_dispatches_and_markers_are_the_union():
    task = mixture()
    problems = task.problems("test", 40, seed=0)
    assert [v[0] for v in task.verify_many([p.answer for p in problems], problems)] == [1.0] * 40
    general = next(p for p in problems if p.meta["kind"] == "general")
    assert task.verify(general.answer, general)[1]["reason"] == "helpfulness"
    assert set(task.reflection_markers) == set(get_task("division_bilingual").reflection_markers)


def test_accuracy_is_none_on_general_prompts_and_the_rule_sum_ignores_them():
    task = mixture()
    problems = task.problems("train", 10, seed=1)
    completions = [f"<think>x</think> <answer>{p.answer}</answer>" for p in problems]
    values = get_reward("accuracy")(completions, problems=problems, task=task)
    assert [v is None for v in values] == [p.meta["kind"] == "general" for p in problems]
    assert all(v == 1.0 for v in values if v is not None)
    scored = combine({"accuracy": 1.0, "format": 0.2}, completions, problems=problems, task=task)
    assert scored.component_means()["accuracy"] == 1.0
    for p, total in zip(problems, scored.total):
        assert total == pytest.approx(0.2 if p.meta["kind"] == "general" else 1.2)


def test_mixture_options_fail_at_load_time_naming_the_key():
    base = ["task.name=mixture"]
    for options, message in [
        ("{}", "task.options.parts: expected a mapping"),
        ("{parts: {division: 0.5, nope: 0.5}}", "task.options.parts.nope: unknown task 'nope'"),
        ("{parts: {division: 0}}", "task.options.parts.division: share must be a finite number > 0"),
        ("{parts: {division: 1}, options: {division: {hard: 1}}}", "task.options.options.division: .*hard_share"),
        ("{parts: {division: 1}, options: {general_bilingual: {}}}", "task.options.options.general_bilingual: not one"),
        ("{parts: {division: 1}, base: countdown}", "task.options.base: 'countdown' is not one of the parts"),
        ("{parts: {division: 1}, wrong: 2}", "task.options: .*wrong"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(ZeroConfig, None, [*base, f"task.options={options}"])
    cfg = load_config(ZeroConfig, None, [*base, "task.options={parts: {division_bilingual: 0.8, general_bilingual: 0.2}}"])
    assert cfg.task.options["parts"] == PARTS


def test_a_mixture_starts_from_its_base_parts_embedded_model():
    cfg = TaskConfig(name="mixture", options={"parts": PARTS, "options": {"division_bilingual": {"second_share": 0.3}}})
    assert embedded_base_task(cfg) == TaskConfig(name="division_bilingual", options={"second_share": 0.3})
    chosen = TaskConfig(name="mixture", options={"parts": PARTS, "base": "general_bilingual"})
    assert embedded_base_task(chosen) == TaskConfig(name="general_bilingual", options={})
    plain = TaskConfig(name="division")
    assert embedded_base_task(plain) is plain


class _Echo:
    """A rollout engine that answers each prompt with the completions it is given, by prompt."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers = tokenizer, answers

    def generate(self, prompts, params, n=1):
        from aha.rollout.base import Completion

        out = []
        for i, prompt in enumerate(prompts):
            text = self.answers[self.tokenizer.decode(prompt)]
            out += [Completion(i, [1, 2], [0.0, 0.0], text, "stop") for _ in range(n)]
        return out


class _Tok:
    def __call__(self, text):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids):
        return "".join(map(chr, ids))


class _ScoreLength:
    """A stand-in reward model: longer summaries score lower."""

    def score(self, questions, summaries):
        return [1.0 / len(s) for s in summaries]


def test_evaluation_counts_reasoning_accuracy_on_reasoning_problems_only():
    from aha.rollout import SamplingParams
    from aha.stages.evaluate import evaluate
    from aha.template import render_prompt

    task = mixture()
    problems = task.problems("test", 10, seed=3)  # 8 reasoning, 2 general
    answers = {}
    for i, p in enumerate(problems):
        right = p.answer if p.meta["kind"] == "general" or i % 2 else "0"
        answers[render_prompt(p.question)] = f"<think>hmm</think> <answer>{right}</answer>"
    result = evaluate(_Echo(_Tok(), answers), _Tok(), task, problems, 2, SamplingParams(), scorer=_ScoreLength())
    reasoning = [i for i, p in enumerate(problems) if p.meta["kind"] == "reasoning"]
    assert result.pass_at_1 == pytest.approx(sum(i % 2 == 1 for i in reasoning) / len(reasoning))
    assert result.problems == 10 and result.format_rate == 1.0
    general = [p for p in problems if p.meta["kind"] == "general"]
    assert result.general["problems"] == len(general) == 2 and result.general["helpfulness"] == 1.0
    expected = sum(1.0 / len(p.answer) for p in general) / len(general)
    assert result.general["reward_model"] == pytest.approx(expected)
    assert result.to_json()["general"] == result.general
