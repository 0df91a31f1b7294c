"""Pluggable word labellers of the language-consistency reward: by script, and lingua for one script."""

import builtins

import pytest

from aha.rewards import get_reward
from aha.rewards.language import DETECTORS, _lingua, language_share, script_detector, word_spans


def test_word_spans_reference():
    text = "so x = 3, 然后 we check"
    assert word_spans(text) == [(0, 2, "latin"), (10, 11, "han"), (11, 12, "han"), (13, 15, "latin"),
                                (16, 21, "latin")]


def test_script_detector_is_blind_within_a_script():
    assert script_detector("we check 然后", "en") == [True, True, False, False]
    assert language_share("nous vérifions", "en") == 1.0  # French words are Latin script too


def test_registry_lists_choices():
    assert {"script", "lingua"} <= set(DETECTORS)
    with pytest.raises(KeyError, match="valid: lingua, script"):
        language_share("text", "en", detector="nope")


def test_lingua_missing_gives_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_lingua(name, *args, **kwargs):
        if name == "lingua":
            raise ImportError("No module named 'lingua'")
        return real_import(name, *args, **kwargs)

    _lingua.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_lingua)
    with pytest.raises(ImportError, match=r"pip install 'aha\[lingua\]'"):
        language_share("we add the numbers then we carry", "en", detector="lingua")
    _lingua.cache_clear()


def test_lingua_needs_nothing_when_scripts_decide(monkeypatch):
    # Chinese has no script-sharing language in the table: the script verdict stands, lingua is not loaded.
    monkeypatch.setattr("aha.rewards.language._lingua", lambda script: pytest.fail("lingua was loaded"))
    assert language_share("先加 then", "zh", detector="lingua") == pytest.approx(2 / 3)


def test_lingua_separates_languages_of_one_script():
    pytest.importorskip("lingua")
    text = "so we add the numbers, puis nous vérifions le résultat, then carry"
    share = language_share(text, "en", detector="lingua")
    assert share == pytest.approx(7 / 12)  # 5 French words of 12 (lingua's segments)
    assert language_share(text, "fr", detector="lingua") == pytest.approx(5 / 12)
    assert language_share(text, "en", detector="script") == 1.0
    reward = get_reward("language_consistency_lingua")
    assert reward(["<think>we add the numbers and then we carry the one</think><answer>7</answer>",
                   "<think>nous ajoutons les nombres puis nous vérifions</think><answer>7</answer>"],
                  target_language="en") == pytest.approx([1.0, 0.0])
