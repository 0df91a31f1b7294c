"""Math answer equivalence: extraction, a cheap fast path, then math-verify in a bounded worker.

`judge_math(pred, gold)` → `(reward, info)`. Order of work, cheapest first:
1. extract the answer (last `\\boxed{…}` with nested braces, else the text without `$…$`), then
   what a grader reads past (`answer_forms`): "The answer is 18 dollars." → 18; alternatives
   ("7 or 8") for a single-number reference score 0;
2. fast path: identical after removing layout-only LaTeX (spaces, `\\left`, `\\!`, `\\dfrac`) → 1,
   both plain numbers (`1,000`, `27.0`, `-3/4`, `1.5e3`, `1.5 \\times 10^3`) → compared exactly;
3. otherwise math-verify (sympy) in a `BoundedPool` worker with a per-call timeout; a timeout,
   crash or parse failure scores 0 with the reason in `info`.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction

from aha.verify.answer_forms import answer_core, hedged, scientific_number
from aha.verify.pool import BoundedPool, shared_pool

# Longer answers are not answers (a MATH-500 reference is < 100 chars); refusing them up front
# keeps a 1 MB string out of the pipe and out of sympy.
MAX_ANSWER_CHARS = 2000
DEFAULT_TIMEOUT_S = 1.0

_LAYOUT = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\quad|\\qquad|\\displaystyle|\s+|\$")
_NUMBER = re.compile(r"[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?|[-+]?\.\d+")
_FRACTION = re.compile(r"([-+]?\d+)/(\d+)")
_TEXT_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{(.*)\}$")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}` (or `\\fbox{…}`), braces balanced; None if there is none.

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}} and finally \\boxed{x^{2}}")
    'x^{2}'
    >>> last_boxed("no box") is None
    True
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        # `\boxed 5`: the argument is the next token.
        rest = text[start + len("\\boxed") :].strip().split()
        return rest[0].rstrip(".$") if rest else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None  # unbalanced: the box was never closed


def extract_answer(text: str) -> str:
    """The final answer in a model's answer text: the last box if any, else the whole text
    without surrounding `$`/`\\(…\\)` and a trailing full stop."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    out = text.strip().rstrip(".").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if out.startswith(left) and out.endswith(right) and len(out) >= len(left) + len(right):
            out = out[len(left) : len(out) - len(right)].strip()
    return out.rstrip(".").strip()


def _layout_free(s: str) -> str:
    s = _LAYOUT.sub("", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    match = _TEXT_WRAPPER.match(s)
    return match.group(1) if match else s


def plain_number(s: str) -> Fraction | None:
    """`1,000` → 1000, `27.0` → 27, `-3/4` → -3/4, `\\frac{3}{4}` → 3/4; None for anything else.

    >>> plain_number("1,000"), plain_number("27.0"), plain_number("x")
    (Fraction(1000, 1), Fraction(27, 1), None)
    """
    s = _layout_free(s)
    if len(s) > 40:  # also keeps Python's int-from-string digit limit out of reach
        return None
    frac = re.fullmatch(r"([-+]?)\\frac(?:\{(\d+)\}|(\d))(?:\{(\d+)\}|(\d))", s)  # also `\frac12`, `\frac{270}7`
    if frac:
        s = f"{frac.group(1)}{frac.group(2) or frac.group(3)}/{frac.group(4) or frac.group(5)}"
    match = _FRACTION.fullmatch(s)
    if match:
        den = int(match.group(2))
        return Fraction(int(match.group(1)), den) if den else None
    if _NUMBER.fullmatch(s):
        return Fraction(s.replace(",", ""))
    return scientific_number(s)


def _is_number(s: str) -> bool:
    return plain_number(s) is not None


def fast_judge(pred: str, gold: str) -> bool | None:
    """True/False when a cheap rule decides, None when math-verify is needed."""
    if _layout_free(pred) == _layout_free(gold):
        return True
    p, g = plain_number(pred), plain_number(gold)
    if p is not None and g is not None:
        return p == g
    return None


def math_verify_equal(gold: str, pred: str) -> tuple[bool, str]:
    """Runs in a pool worker (main thread of its own process). Timeouts are the pool's job, so
    math-verify's signal-based ones are switched off."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    if not gold_parsed:
        return False, "reference did not parse"
    pred_parsed = parse(f"\\boxed{{{pred}}}", parsing_timeout=None)
    if not pred_parsed:
        return False, "answer did not parse"
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None)), "math-verify"


def math_pool() -> BoundedPool:
    """The process-wide pool for math-verify calls; workers import math_verify once."""
    return shared_pool("math", preload=["aha.verify._math_warm"], memory_limit_mb=2048)


def judge_math(
    pred_text: str | None, gold: str, timeout: float = DEFAULT_TIMEOUT_S, pool: BoundedPool | None = None
) -> tuple[float, dict]:
    """Reward 1.0 when the answer in `pred_text` equals the reference `gold` (already extracted)."""
    if pred_text is None:
        return 0.0, {"reason": "no answer"}
    if len(pred_text) > 50 * MAX_ANSWER_CHARS:
        return 0.0, {"reason": f"answer text too long ({len(pred_text)} chars)"}
    pred = extract_answer(pred_text)
    if not pred:
        return 0.0, {"reason": "empty answer"}
    if len(pred) > MAX_ANSWER_CHARS:
        return 0.0, {"reason": f"answer too long ({len(pred)} chars)", "pred": pred[:50]}
    decided = fast_judge(pred, gold)
    if decided is None:
        # What a grader reads: "The answer is 18 dollars." is 18 (both sides: some references carry
        # units too); a single-number reference is not met by alternatives ("7 or 8"). Only here:
        # plain numbers and identical texts (most answers) never pay for the regexes.
        pred, gold = answer_core(pred, _is_number), answer_core(gold, _is_number)
        if hedged(pred) and _is_number(gold):
            return 0.0, {"reason": "alternatives offered for a single answer", "judge": "fast", "pred": pred[:50]}
        decided = fast_judge(pred, gold)
    if decided is not None:
        return float(decided), {"reason": "correct" if decided else "wrong value", "judge": "fast", "pred": pred[:50]}
    result = (pool or math_pool()).call(math_verify_equal, gold, pred, timeout=timeout)
    if not result.ok:
        return 0.0, {"reason": result.reason, "judge": "math-verify", "pred": pred[:50]}
    equal, how = result.value
    reason = "correct" if equal else ("wrong value" if how == "math-verify" else how)
    return float(equal), {"reason": reason, "judge": "math-verify", "pred": pred[:50]}
