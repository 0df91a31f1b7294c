"""Language consistency (R1 paper §2.3.2): the share of chain-of-thought words in the target language.

Words are labelled by Unicode script, which separates the languages R1 mixes (English/Chinese)
and most others (Cyrillic, Arabic, Hangul, kana, Devanagari, …) without a model. It cannot tell
apart languages that share a script (English vs French): both are "latin". Neutral, counted in
neither share: digits, punctuation, math symbols, and one-letter Latin/Greek tokens (`x`, `π`,
variables in any language's reasoning). Each Han/kana character counts as one word, since
Chinese and Japanese have no spaces.

`word_languages` and `language_mixing_rate` are the reusable detector (the language-mixing metric
in `aha.observe` uses them).
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

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
    labels: list[str] = []
    current, length = None, 0

    def flush():
        if current is not None and not (length == 1 and current in ("latin", "greek")):
            labels.append(current)

    for ch in text:
        script = char_script(ch)
        if script in _CHAR_WORD_SCRIPTS:
            flush()
            labels.append(script)
            current, length = None, 0
        elif script is not None and script == current:
            length += 1
        else:
            flush()
            current, length = script, (1 if script is not None else 0)
    flush()
    return labels


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


def language_share(text: str, target: str = "en") -> float | None:
    """Share of words in the target language; None when the text has no words."""
    script = target_script(target)  # validated even for text without words
    labels = word_languages(text)
    if not labels:
        return None
    return sum(_matches(label, script) for label in labels) / len(labels)


def language_mixing_rate(text: str, target: str = "en") -> float:
    """Share of words NOT in the target language (0.0 for text without words).

    >>> language_mixing_rate("we add 3 and 4 得到 7", "en")
    0.4
    """
    share = language_share(text, target)
    return 0.0 if share is None else 1.0 - share


@register_reward("language_consistency")
def language_consistency_reward(
    completions: Sequence[str], *, target_language: str | Sequence[str] = "en", **_
) -> list[float]:
    """Share of target-language words in each chain of thought (`think_text`); a CoT with no
    words scores 0, so an empty thought cannot collect the bonus. `target_language` is one code
    for the batch or a per-completion column.

    >>> language_consistency_reward(["<think>add then carry</think><answer>7</answer>",
    ...                              "<think>先加 then carry</think><answer>7</answer>"])
    [1.0, 0.5]
    """
    targets = [target_language] * len(completions) if isinstance(target_language, str) else list(target_language)
    if len(targets) != len(completions):
        raise ValueError(f"target_language has {len(targets)} entries for {len(completions)} completions")
    return [float(language_share(think_text(c), t) or 0.0) for c, t in zip(completions, targets)]
