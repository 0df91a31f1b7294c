"""general_bilingual: deterministic, disjoint splits, the hidden rubric, SFT rows and preference pairs."""

import collections
import random

import pytest

from aha.tasks import get_task
from aha.tasks.general import (
    SPACES, candidate_summaries, helpfulness, make_problem, non_reasoning_rows, preference_pairs,
)
from aha.template import build_prompt, parse_response


def test_problems_are_deterministic_bilingual_and_general():
    task = get_task("general_bilingual")
    problems = task.problems("train", 300, seed=4)
    assert task.problems("train", 300, seed=4) == problems
    assert task.problems("train", 300, seed=5) != problems
    assert {p.meta["language"] for p in problems} == {"en", "zh"}
    assert {p.meta["request"] for p in problems} == set(SPACES)
    assert all(p.meta["kind"] == "general" for p in problems)
    say = next(p for p in problems if p.meta["request"] == "say")
    assert say.meta["n"] == int(say.answer) and say.question in (f"say {say.answer}", f"说 {say.answer}")


def test_train_and_test_share_no_request_in_any_language():
    task = get_task("general_bilingual")

    def requests(split):
        return {(p.meta["request"], tuple(v for k, v in sorted(p.meta.items()) if k in ("a", "b", "n", "name_index")))
                for p in task.problems(split, 3000, seed=0)}

    train, test = requests("train"), requests("test")
    assert train and test and not train & test
    kinds = {r for r, _ in test}
    assert kinds == set(SPACES)  # every kind has held-out requests


@pytest.mark.parametrize("request_, params, language, summary, expected", [
    ("say", (37,), "en", "37", 1.0),
    ("say", (37,), "zh", "37", 1.0),
    ("say", (37,), "en", "38", 0.0),
    ("say", (37,), "en", "好的 37", 0.5 * 0.8),  # other language: × 0.5; 3 words for 1: one past the allowance
    ("bigger", (52,), "zh", "60", 1.0),
    ("bigger", (52,), "zh", "52", 0.0),
    ("smaller", (52,), "en", "51 or 60", 0.5 * 0.8),  # one right number among others
    ("count", (4,), "en", "1 2 3 4", 1.0),
    ("count", (4,), "en", "1 2", 0.5),
    ("count", (4,), "en", "1 2 4", 0.0),
    ("compare", (37, 52), "en", "no", 1.0),
    ("compare", (37, 52), "zh", "不是", 1.0),
    ("compare", (37, 52), "zh", "是", 0.0),
    ("compare", (37, 52), "en", "不是", 0.5),
    ("greet", (0,), "en", "hello Ann", 1.0),
    ("greet", (0,), "en", "hello", 0.5),
    ("greet", (0,), "zh", "你好 小明", 1.0),
    ("greet", (0,), "en", "hello Ann, I hope this helps, just tell me if you need anything more",
     1.0 / (1.0 + 0.25 * 11)),  # 14 words for 2
])
def test_rubric_cases(request_, params, language, summary, expected):
    problem = make_problem(request_, params, language)
    assert helpfulness(summary, problem) == pytest.approx(expected)
    assert get_task("general_bilingual").verify(summary, problem)[0] == pytest.approx(expected)


def test_rubric_gives_nothing_for_no_summary_and_one_for_the_reference():
    task = get_task("general_bilingual")
    for p in task.problems("test", 100, seed=1):
        assert helpfulness(p.answer, p) == 1.0
        assert task.verify(None, p) == (0.0, {"reason": "no answer"})
        assert helpfulness("   ", p) == 0.0


def test_candidates_perfect_scores_one_and_flaws_score_less():
    rng = random.Random(0)
    for p in get_task("general_bilingual").problems("train", 200, seed=2):
        (quality, best), *flawed = candidate_summaries(p, rng)
        assert quality == "perfect" and helpfulness(best, p) == 1.0
        assert all(helpfulness(s, p) < 1.0 for _, s in flawed), (p.question, flawed)


def test_non_reasoning_rows_are_sft_rows_with_a_quality_mix():
    rows = non_reasoning_rows(400, seed=3)
    assert rows == non_reasoning_rows(400, seed=3)
    qualities = collections.Counter(r["quality"] for r in rows)
    assert 0.4 < qualities["perfect"] / len(rows) < 0.6 and len(qualities) == 5
    for row in rows:
        parsed = parse_response(row["completion"])
        assert parsed.well_formed and row["prompt"] == build_prompt(row["question"])
        assert len(parsed.think.split()) <= 1  # an empty or one-word thought
        assert (row["helpfulness"] == 1.0) == (row["quality"] == "perfect")
    mean = sum(r["helpfulness"] for r in rows) / len(rows)
    assert 0.5 < mean < 0.8  # room for RL to improve
    with pytest.raises(ValueError, match="quality_mix"):
        non_reasoning_rows(4, seed=0, quality_mix={"great": 1.0})


def test_preference_pairs_order_by_the_rubric_and_use_train_prompts():
    task = get_task("general_bilingual")
    pairs = preference_pairs(300, seed=0)
    assert len(pairs) == 300 and pairs == preference_pairs(300, seed=0)
    test_questions = {p.question for p in task.problems("test", 3000, seed=0)}
    # The pairs' prompts: train problems of this seed (and of the next round's, after skipped ties).
    by_question = {p.question: p for seed in (0, 1_000_003) for p in task.problems("train", 300, seed=seed)}
    for row in pairs:
        assert row["question"] not in test_questions
        problem = by_question[row["question"]]
        chosen, rejected = (parse_response(row[k]).answer for k in ("chosen", "rejected"))
        assert helpfulness(chosen, problem) - helpfulness(rejected, problem) == pytest.approx(row["margin"])
        assert row["margin"] > 0
    held = preference_pairs(50, seed=0, split="test")
    assert all(row["question"] in test_questions for row in held)
