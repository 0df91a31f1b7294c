"""Language consistency (R1 paper §2.3.2): the share of chain-of-thought words in the target language.

Words are labelled by Unicode script, which separates the languages R1 mixes (English/Chinese)
and most others (Cyrillic, Arabic, Hangul, kana, Devanagari, …) without a model. It cannot tell
apart languages that share a script (English vs French): both are "latin". Neutral, counted in
neither share: digits, punctuation, math symbols, and one-letter Latin/Greek tokens (`x`, `π`,
variables in any language's reasoning). Each Han/kana character counts as one word, since
Chinese and Japanese have no spaces.

`word_languages` and `language_mixing_rate` are the reusable detector (the language-mixing metric
in `aha.observe` uses them). Which word counts as the target language is decided by a registered
detector (`DETECTORS`): `script` (default, no dependency) or `lingua` — for languages that share a
script — with the optional extra `lingua-language-detector` (`pip install 'aha[lingua]'`); the
reward `language_consistency_lingua` uses it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Callable, Sequence

from aha.algo.registry import Registry
from aha.rewards.accuracy import is_general
from aha.rewards.base import register_reward
from aha.template import think_text

# Language code → script label. Scripts themselves ("latin", "han", …) are accepted too.
LANGUAGE_SCRIPTS = {
    "en": "latin", "fr": "latin", "de": "latin", "es": "latin", "it": "latin", "pt": "latin", "vi": "latin",
    "zh": "han", "ja": "japanese", "ko": "hangul", "ru": "cyrillic", "uk": "cyrillic", "ar": "arabic",
    "fa": "arabic", "he": "hebrew", "hi": "devanagari", "el": "greek", "th": "thai",
}
# Scripts written without spaces: each character is a word.
_CHAR_WORD_SCRIPTS = {"han", "hiragana", "katakana", "thai"}
_UNICODE_SCRIPTS = {
    "LATIN": "latin", "CJK": "han", "HIRAGANA": "hiragana", "KATAKANA": "katakana", "HANGUL": "hangul",
    "CYRILLIC": "cyrillic", "ARABIC": "arabic", "HEBREW": "hebrew", "DEVANAGARI": "devanagari",
    "GREEK": "greek", "THAI": "thai", "ARMENIAN": "armenian", "GEORGIAN": "georgian", "BENGALI": "bengali",
    "TAMIL": "tamil",
}


def char_script(ch: str) -> str | None:
    """Script of a letter ('latin', 'han', …), 'other' for letters of unlisted scripts, None for
    non-letters (digits, punctuation, symbols: neutral)."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first in _UNICODE_SCRIPTS:
        return _UNICODE_SCRIPTS[first]
    if name.startswith("IDEOGRAPHIC") or "IDEOGRAPH" in name:
        return "han"
    return "other"


def word_languages(text: str) -> list[str]:
    """Script label of each non-neutral word, in order.

    >>> word_languages("so x = 3, 然后 we check")
    ['latin', 'han', 'han', 'latin', 'latin']
    """
    return [script for _, _, script in word_spans(text)]


def word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, script) of each non-neutral word: runs of one script's letters, each Han/kana/
    Thai character alone, one-letter Latin/Greek words (variables) left out."""
    spans: list[tuple[int, int, str]] = []
    current, start = None, 0

    def flush(end: int):
        if current is not None and not (end - start == 1 and current in ("latin", "greek")):
            spans.append((start, end, current))

    for i, ch in enumerate(text):
        script = char_script(ch)
        if script in _CHAR_WORD_SCRIPTS:
            flush(i)
            spans.append((i, i + 1, script))
            current = None
        elif script is None or script != current:
            flush(i)
            current, start = script, i
    flush(len(text))
    return spans


def target_script(target: str) -> str:
    """'en' → 'latin', 'zh' → 'han'; a script name is returned as is."""
    key = target.lower()
    script = LANGUAGE_SCRIPTS.get(key, key)
    known = set(LANGUAGE_SCRIPTS.values()) | set(_UNICODE_SCRIPTS.values()) | {"other"}
    if script not in known:
        raise ValueError(f"unknown target language {target!r}; use a code ({', '.join(sorted(LANGUAGE_SCRIPTS))}) or a script")
    return script


def _matches(label: str, script: str) -> bool:
    if script == "japanese":  # Japanese mixes kanji and both kana
        return label in ("han", "hiragana", "katakana")
    return label == script


# A detector labels each counted word of a text: True when it is in the target language.
Detector = Callable[[str, str], list[bool]]
DETECTORS = Registry("language detector")


@DETECTORS.register("script")
def script_detector(text: str, target: str) -> list[bool]:
    """By Unicode script alone: exact for languages with scripts of their own, blind within one."""
    script = target_script(target)
    return [_matches(label, script) for _, _, label in word_spans(text)]


@DETECTORS.register("lingua")
def lingua_detector(text: str, target: str) -> list[bool]:
    """Words of another script are decided by script; words in the target's script by lingua's
    segmentation of mixed-language text (`detect_multiple_languages_of`), so `en` vs `fr` separates.
    Only the target's script is shown to lingua (other words blanked, offsets kept)."""
    script = target_script(target)
    spans = word_spans(text)
    same = [(a, b) for a, b, label in spans if _matches(label, script)]
    code = target.lower()
    if not same or code not in LANGUAGE_SCRIPTS or len(_script_languages(script)) < 2:
        return [_matches(label, script) for _, _, label in spans]  # nothing for lingua to separate
    visible = [" "] * len(text)
    for a, b in same:
        visible[a:b] = text[a:b]
    segments = [(r.start_index, r.end_index, r.language.iso_code_639_1.name.lower())
                for r in _lingua(script).detect_multiple_languages_of("".join(visible))]
    labels = []
    for a, b, label in spans:
        if not _matches(label, script):
            labels.append(False)
            continue
        # A word lingua left outside every segment keeps its script's verdict (it has no other).
        found = next((lang for lo, hi, lang in segments if lo <= a < hi), code)
        labels.append(found == code)
    return labels


def _script_languages(script: str) -> list[str]:
    return sorted(code for code, s in LANGUAGE_SCRIPTS.items() if s == script)


@lru_cache(maxsize=8)
def _lingua(script: str):
    """A lingua detector restricted to the known languages of one script (fewer candidates, fewer
    confusions), built once per process."""
    try:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
    except ImportError as err:
        raise ImportError("the 'lingua' language detector needs the optional extra: "
                          "pip install 'aha[lingua]'  (lingua-language-detector)") from err
    languages = [Language.from_iso_code_639_1(IsoCode639_1.from_str(c)) for c in _script_languages(script)]
    return LanguageDetectorBuilder.from_languages(*languages).build()


def get_detector(name: str) -> Detector:
    return DETECTORS.get_or_raise(name)


def language_share(text: str, target: str = "en", detector: str = "script") -> float | None:
    """Share of words in the target language; None when the text has no words."""
    target_script(target)  # validated even for text without words
    labels = get_detector(detector)(text, target)
    if not labels:
        return None
    return sum(labels) / len(labels)


def language_mixing_rate(text: str, target: str = "en", detector: str = "script") -> float:
    """Share of words NOT in the target language (0.0 for text without words).

    >>> language_mixing_rate("we add 3 and 4 得到 7", "en")
    0.4
    """
    share = language_share(text, target, detector)
    return 0.0 if share is None else 1.0 - share


@register_reward("language_consistency")
def language_consistency_reward(
    completions: Sequence[str], *, target_language: str | Sequence[str] = "en", detector: str = "script",
    problems=None, **_
) -> list[float | None]:
    """Share of target-language words in each chain of thought (`think_text`); a CoT with no
    words scores 0, so an empty thought cannot collect the bonus. `target_language` is one code
    for the batch or a per-completion column; `detector` names one of DETECTORS.

    General prompts (`meta["kind"] == "general"`, in all-scenario RL) get None: they need no chain
    of thought (R1 answers "hello" with none, §2.3.3) and are the reward model's to score (§2.3.4).
    Scoring them would pay a one-word thought over the empty one a general answer should have.

    >>> language_consistency_reward(["<think>add then carry</think><answer>7</answer>",
    ...                              "<think>先加 then carry</think><answer>7</answer>"])
    [1.0, 0.5]
    """
    targets = [target_language] * len(completions) if isinstance(target_language, str) else list(target_language)
    if len(targets) != len(completions):
        raise ValueError(f"target_language has {len(targets)} entries for {len(completions)} completions")
    general = [False] * len(completions) if problems is None else [is_general(p) for p in problems]
    return [None if skip else float(language_share(think_text(c), t, detector) or 0.0)
            for c, t, skip in zip(completions, targets, general)]


@register_reward("language_consistency_lingua")
def language_consistency_lingua_reward(completions: Sequence[str], **columns) -> list[float]:
    """`language_consistency` with the lingua detector: tells apart languages that share a script
    (English vs French). Needs `pip install 'aha[lingua]'`."""
    return language_consistency_reward(completions, **{**columns, "detector": "lingua"})
