"""Agreement of the math judge with a human grader's verdict on a fixed set of held-out pairs.

The pairs are built from the packaged benchmarks' references (GSM8K test, AIME 2024, AMC 2023,
MATH-500) in the forms models write answers in, each labelled as a grader would (accept: the value
with a unit, a currency sign, in scientific notation, with thousands separators, inside a short
sentence, boxed; reject: another value, two values offered, a value off by a factor of ten). The
set depends only on the seed, so two versions of the judge can be compared on the same pairs:

    PYTHONPATH=src python bench/verify_agreement.py                   # this checkout's judge
    PYTHONPATH=/tmp/aha-base/src python bench/verify_agreement.py     # e.g. an older checkout's

Prints agreement overall and per form, the disagreements, and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

from aha.tasks.gsm8k import Gsm8kTask
from aha.tasks.math import Aime24Task, Amc23Task, Math500Task
from aha.verify.math_answer import judge_math, math_pool

UNITS = ["dollars", "cm", "hours", "students", "miles", "minutes", "apples", "km", "pages", "years old",
         "\\text{ meters}", "\\text{ cups}", "\\mbox{ feet}", "m^2", "square feet", "miles per hour"]


def _fmt(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    return repr(round(as_float, 6)) if Fraction(repr(round(as_float, 6))) == value else f"{value.numerator}/{value.denominator}"


def _scientific(value: Fraction, rng: random.Random) -> str | None:
    """`value` as m·10^k with one digit before m's point, in one of the usual spellings; None when
    the value is not a nonzero integer (scientific notation for 0.5 would be unusual in a benchmark)."""
    if value.denominator != 1 or value == 0 or abs(value) < 100:
        return None
    digits = str(abs(value.numerator)).rstrip("0") or "0"
    k = len(str(abs(value.numerator))) - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    mantissa = ("-" if value < 0 else "") + mantissa
    return rng.choice([f"{mantissa}e{k}", f"{mantissa} \\times 10^{{{k}}}", f"{mantissa} × 10^{k}", f"{mantissa}E+{k:02d}"])


def numeric_pairs(gold: str, rng: random.Random) -> list[tuple[str, str, int]]:
    """(form, answer text, label) for a numeric reference: 4 accepted and 3 rejected forms."""
    v = Fraction(gold.replace(",", ""))
    n, unit = _fmt(v), rng.choice(UNITS)
    wrong = _fmt(v + rng.choice([1, -1, 2, 3]))
    accept = {
        "plain": n, "boxed": f"so we get \\boxed{{{n}}}", "sentence": rng.choice([f"The answer is {n}.", f"Answer: {n}",
        f"So the answer is ${n}$.", f"Therefore, the total is {n}."]), "unit": f"{n} {unit}",
        "currency": rng.choice([f"${n}", f"\\${n}"]), "assignment": f"x = {n}",
        "unit in sentence": f"The final answer is {n} {unit}.",
    }
    if v.denominator == 1 and abs(v) >= 1000:
        accept["thousands"] = f"{v.numerator:,}"
    sci = _scientific(v, rng)
    if sci:
        accept["scientific"] = sci
    reject = {
        "other value": wrong, "other value + unit": f"{wrong} {unit}", "two values (or)": f"{n} or {wrong}",
        "two values (either)": f"either {wrong} or {n}", "two values (list)": f"{n}, {wrong}",
        "ten times": f"{_fmt(v * 10)} {unit}", "other value in sentence": f"The answer is {wrong}.",
        "range": f"between {wrong} and {n}",
    }
    picked = rng.sample(sorted(accept), 4) + rng.sample(sorted(reject), 3)
    return [(form, accept.get(form) or reject[form], int(form in accept)) for form in picked]


def latex_pairs(gold: str, other: str, rng: random.Random) -> list[tuple[str, str, int]]:
    accept = {"latex plain": gold, "latex sentence": f"The answer is ${gold}$.", "latex boxed": f"Thus $\\boxed{{{gold}}}$."}
    reject = {"latex other": other, "latex two answers": f"${gold}$ or ${other}$", "latex other in sentence": f"So the answer is ${other}$."}
    picked = rng.sample(sorted(accept), 2) + rng.sample(sorted(reject), 2)
    return [(form, accept.get(form) or reject[form], int(form in accept)) for form in picked]


def _is_numeric(text: str) -> bool:
    # Not Fraction(): it reads `52_8` (a base-8 answer) as 528 and `-2,1` (a pair) as -21.
    return re.fullmatch(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", text.strip()) is not None


def held_out_pairs(seed: int = 0, gsm8k: int = 150, math500: int = 120) -> list[dict]:
    rng = random.Random(seed)
    pairs = []
    sources = [("gsm8k", p.answer) for p in rng.sample(Gsm8kTask().problems("test", 0, 0), gsm8k)]
    sources += [("aime24", p.answer) for p in Aime24Task().problems("test", 0, 0)]
    sources += [("amc23", p.answer) for p in Amc23Task().problems("test", 0, 0)]
    math = Math500Task().problems("test", 0, 0)
    golds = [p.answer for p in math]
    for source, gold in sources:
        pairs += [dict(source=source, form=f, pred=t, gold=gold, label=y) for f, t, y in numeric_pairs(gold, rng)]
    for i in rng.sample(range(len(math)), math500):
        gold = golds[i]
        if _is_numeric(gold):
            pairs += [dict(source="math500", form=f, pred=t, gold=gold, label=y) for f, t, y in numeric_pairs(gold, rng)]
            continue
        other = golds[(i + 1 + rng.randrange(len(golds) - 1)) % len(golds)]
        pairs += [dict(source="math500", form=f, pred=t, gold=gold, label=y) for f, t, y in latex_pairs(gold, other, rng)]
    return pairs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=5.0, help="per math-verify call (generous: contention is not the question)")
    args = p.parse_args()
    pairs = held_out_pairs(args.seed)
    math_pool().warm()
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=math_pool().max_workers) as threads:
        verdicts = list(threads.map(lambda q: judge_math(q["pred"], q["gold"], timeout=args.timeout), pairs))
    seconds = time.monotonic() - start
    by_form: dict[str, list[int]] = defaultdict(list)
    wrong = []
    for pair, (reward, info) in zip(pairs, verdicts):
        agree = int((reward == 1.0) == bool(pair["label"]))
        by_form[("accept: " if pair["label"] else "reject: ") + pair["form"]].append(agree)
        if not agree:
            wrong.append((pair["form"], pair["pred"], pair["gold"], info.get("reason")))
    total = sum(sum(v) for v in by_form.values()) / len(pairs)
    print(f"{len(pairs)} pairs ({sum(q['label'] for q in pairs)} accept), agreement {total:.4f}, {seconds:.1f} s")
    for form, agrees in sorted(by_form.items()):
        print(f"  {form:<32} {sum(agrees):4d}/{len(agrees):<4d} {sum(agrees) / len(agrees):.3f}")
    for row in wrong[:25]:
        print("  disagree:", row)
    print(json.dumps({"pairs": len(pairs), "agreement": round(total, 4),
                      "by_form": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_form.items())}}))


if __name__ == "__main__":
    main()
