"""Language consistency: word-level script detection and the R1 reward."""

from __future__ import annotations

import doctest

import pytest

import aha.rewards.language as language
from aha.rewards.language import language_consistency_reward, language_mixing_rate, language_share, word_languages


def test_doctests():
    assert doctest.testmod(language).failed == 0


@pytest.mark.parametrize("text, labels", [
    ("the answer is", ["latin"] * 3),
    ("答案是", ["han"] * 3),
    ("ответ равен", ["cyrillic"] * 2),
    ("الجواب هو", ["arabic"] * 2),
    ("정답은", ["hangul"]),
    ("こたえ", ["hiragana"] * 3),
    ("3 + 4 = 7, x², π ≈ 3.14!", []),  # digits, symbols, one-letter variables: neutral
    ("so 然后 we", ["latin", "han", "han", "latin"]),
])
def test_word_languages(text, labels):
    assert word_languages(text) == labels


def test_shares_and_targets():
    assert language_share("we add 3", "en") == 1.0
    assert language_share("我们 add", "zh") == pytest.approx(2 / 3)
    assert language_share("12 + 5", "en") is None
    assert language_mixing_rate("二加三 equals five", "en") == pytest.approx(0.6)  # 3 Han chars of 5 words
    assert language_share("漢字とかな", "ja") == 1.0
    with pytest.raises(ValueError, match="unknown target language"):
        language_share("x", "klingon")


def test_reward_reads_only_the_chain_of_thought_and_per_sample_targets():
    completions = ["<think>first add, then carry</think> <answer>答案</answer>",
                   "<think>先加 then carry</think> <answer>7</answer>",
                   "<think>12+5=17</think> <answer>17</answer>"]
    assert language_consistency_reward(completions) == [1.0, 0.5, 0.0]
    assert language_consistency_reward(completions[:2], target_language=["zh", "zh"]) == [0.0, 0.5]
    with pytest.raises(ValueError):
        language_consistency_reward(completions, target_language=["en"])


def test_general_prompts_are_left_to_the_reward_model():
    """In all-scenario RL a general request needs no chain of thought: the reward skips it (None),
    so an empty thought there is not paid less than a one-word one; reasoning prompts are scored."""
    from aha.tasks.base import Problem

    general = Problem(question="say 37", answer="37", id="g", meta={"kind": "general", "language": "en"})
    reasoning = Problem(question="645 divided by 86", answer="7", id="r", meta={"language": "en"})
    completions = ["<think></think> <answer>37</answer>", "<think>easy</think> <answer>37</answer>",
                   "<think></think> <answer>7</answer>", "<think>try 7</think> <answer>7</answer>"]
    rewards = language_consistency_reward(completions, problems=[general, general, reasoning, reasoning])
    assert rewards == [None, None, 0.0, 1.0]
