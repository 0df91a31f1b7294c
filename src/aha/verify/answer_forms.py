"""Answer texts a human grader reads past: a short sentence around the value, a unit, a currency
sign, scientific notation; and the hedges a grader refuses ("7 or 8" for a single reference).

`answer_core(text)` reduces such a text to its value ("The answer is 18 dollars." → "18") and
leaves every other text unchanged, so math-verify still sees the original LaTeX. `hedged(text)`
says whether an answer offers alternatives. `scientific_number` reads `1.5e3`, `1.5 \\times 10^3`,
`1.5 × 10^{3}` exactly (as a Fraction), for `plain_number`'s fast path.

Deliberately narrow: a unit is stripped only after a plain number (not after an expression, where
`2 x` is not a unit), and only when its words are not hedging or comparison words ("8 or more",
"at least 8" keep their meaning and score as a different answer).
"""

from __future__ import annotations

import re
from fractions import Fraction

# Sentence openings a model writes before its final value: "So the answer is", "Answer:",
# "Therefore, the total is", "The final answer is". Case-insensitive; the value must follow.
_LEAD = re.compile(
    r"^(?:(?:so|thus|therefore|hence|then|finally)\b\s*,?\s*)?"
    r"(?:(?:(?:the|my|our)\s+)?(?:final\s+)?(?:answer|result|total|value|solution)\s*(?:is\b|=|:)\s*(?:that\s+)?)?",
    re.IGNORECASE,
)
_MATH_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_CURRENCY = re.compile(r"^(?:US\$|\\\$|\$|USD\s*|EUR\s*|€|£|¥|₹|Rs\.?\s*|\\euro\s*|\\pounds\s*)(?=[-+.\d])")
_VARIABLE = re.compile(r"^[a-zA-Z]\s*=\s*")
_TEXT_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}$")
# A unit after the value: words (`cm`, `square meters`, `km/h`, `miles per hour`), LaTeX text
# wrappers around them (`\text{ cm}`), powers (`^2`, `^{3}`), spacing (`\,`, `\ `).
_POWER = r"(?:\^\s*\{?\s*[23]\s*\}?)?"  # `cm^2`, `\text{ m}^{3}`: only right after a unit word
_UNIT_TAIL = re.compile(
    r"^(?P<value>.*?[\d}])(?P<unit>(?:\s|\\[,;:!]|\\ |[/()]|(?:\\(?:text|textrm|mathrm|mbox|textbf)\s*\{[^{}]*\}"
    r"|[A-Za-z]+(?![A-Za-z])\.?)" + _POWER + r")+)$"  # the lookahead: one way to split words, no blow-up
)
_UNIT_COMMANDS = {"text", "textrm", "mathrm", "mbox", "textbf"}
# Words that change what the number means: never a unit.
_NOT_UNITS = {
    "or", "and", "nor", "either", "neither", "to", "than", "more", "less", "fewer", "least", "most", "at",
    "about", "approximately", "approx", "around", "roughly", "nearly", "almost", "over", "under", "between",
    "plus", "minus", "times", "not", "no", "none", "only", "up", "maybe", "perhaps", "possibly", "else",
    "above", "below", "greater", "smaller", "larger", "each", "x", "y", "z", "n", "i", "e", "pi",
    # multipliers: "18 thousand" is 18,000, "18 squared" 324
    "squared", "cubed", "percent", "hundred", "hundreds", "thousand", "thousands", "million", "millions",
    "billion", "billions", "trillion", "dozen", "dozens", "k", "bn", "mn", "half", "halves", "twice", "double",
}
# In a free sentence ("She needs 18 more cups."), words that make its one number not the answer.
_SENTENCE_BLOCKERS = (_NOT_UNITS - {"more", "each", "no", "at", "to", "x", "y", "z", "n", "i", "e"}) | {"than", "if", "unless"}
_SENTENCE_NUMBER = re.compile(r"(?<![\w.])([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?![\w])")
_MAX_SENTENCE = 120
_MAX_UNIT_WORDS = 4
_MAX_UNIT_TEXT = 200  # "18 square meters" is short; longer texts are not a number with a unit
_HEDGE = re.compile(r"\b(?:or|either|nor|and)\b|\\(?:lor|vee|text\{\s*or\s*\})", re.IGNORECASE)
_SCIENTIFIC = re.compile(
    r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))(?:[eE]([-+]?\d{1,3})|(?:\\times|×|\\cdot|·|\*|x)10\^\{?([-+]?\d{1,3})\}?)"
)


def _unwrap(text: str) -> str:
    out = text.strip().rstrip(".").strip()
    if out.startswith("**") and out.endswith("**") and len(out) > 4:  # markdown bold
        out = out[2:-2].strip()
    for left, right in _MATH_DELIMS:
        if out.startswith(left) and out.endswith(right) and len(out) >= len(left) + len(right):
            out = out[len(left) : len(out) - len(right)].strip()
    match = _TEXT_WRAPPER.match(out)
    return (match.group(1).strip() if match else out).rstrip(".").strip()


def strip_sentence(text: str) -> str:
    """ "So the answer is $42$." → "42"; text without such an opening is only unwrapped."""
    out = _unwrap(text)
    rest = _LEAD.sub("", out, count=1)
    return _unwrap(rest) if rest.strip() else out


def _unit_words(unit: str) -> list[str]:
    words = re.findall(r"[A-Za-z]+", unit)
    return [w for w in words if w not in _UNIT_COMMANDS]


def strip_unit(text: str, is_number) -> str:
    """ "18 cm" → "18", "$18" → "18", "x = 7 hours" → "7", "5.4 \\text{ cents}" → "5.4"; anything
    whose tail is not purely a unit after a number (per `is_number`) comes back unchanged."""
    out = _CURRENCY.sub("", text.strip(), count=1)
    match = _UNIT_TAIL.match(out) if len(out) <= _MAX_UNIT_TEXT else None
    if match:
        words = _unit_words(match.group("unit"))
        value = _VARIABLE.sub("", match.group("value").strip())
        if 0 < len(words) <= _MAX_UNIT_WORDS and not any(w.lower() in _NOT_UNITS for w in words) and is_number(value):
            return value
    value = _VARIABLE.sub("", out)
    return value if out != text.strip() and is_number(value) else text


def sentence_number(text: str) -> str | None:
    """The one number of a short plain-English sentence ("So, she has 18 apples left." → "18");
    None for anything with math in it, more or fewer than one number, or a word that qualifies it
    ("at most 18", "18 thousand", "18 or so")."""
    out = text.replace("**", "").strip().rstrip(".!").strip()
    if len(out) > _MAX_SENTENCE or re.search(r"[=^{}<>*/\\]|\d\s*[-+]\s*\d", out.replace("\\$", "$")):
        return None
    words = re.findall(r"[A-Za-z]+", out)
    numbers = _SENTENCE_NUMBER.findall(out)
    if len(numbers) != 1 or len(words) < 2 or any(w.lower() in _SENTENCE_BLOCKERS or w.lower() == "and" for w in words):
        return None
    return numbers[0]


def answer_core(text: str, is_number) -> str:
    """The value a grader reads in `text` (sentence, currency and unit removed) when it is a number;
    else `text` itself."""
    sentence_free = strip_sentence(text)
    core = strip_unit(sentence_free, is_number)
    if core != sentence_free or is_number(sentence_free):
        return core
    number = sentence_number(sentence_free)
    if number is not None:
        return number
    return text if sentence_free == _unwrap(text) else sentence_free


def hedged(text: str) -> bool:
    """Offers alternatives ("7 or 8", "either 3 or 4", "x = 1 \\lor x = 2")."""
    return _HEDGE.search(text) is not None


def scientific_number(s: str) -> Fraction | None:
    """`1.5e3`, `1.5\\times10^{3}`, `1.5×10^3`, `2.5e-2` (layout already removed) → exact value.

    >>> scientific_number("1.5e3"), scientific_number(r"2.5\\times10^{-2}"), scientific_number("e3")
    (Fraction(1500, 1), Fraction(1, 40), None)
    """
    match = _SCIENTIFIC.fullmatch(s)
    if not match:
        return None
    exponent = int(match.group(2) or match.group(3))
    return Fraction(match.group(1)) * Fraction(10) ** exponent
