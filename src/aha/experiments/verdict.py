"""Effects, intervals and verdicts for `aha paper`: pure functions, numbers in, dicts out.

An *effect* is one measured difference with the sign the paper claims (`paper_sign`: +1 when the
paper says it goes up). Over several seeds its interval is the two-sided 95 % Student-t interval of
the per-seed values (`aha.observe.stats.mean_ci95`); with one seed there is no seed-to-seed spread
to estimate, so an experiment may give a within-seed interval instead (a bootstrap over held-out
problems, which leaves seed-to-seed variation out, and says so). The verdict is mechanical:

- the interval excludes zero on the paper's side → "reproduced";
- it excludes zero on the other side → "opposite";
- it includes zero → "not reproduced";
- no interval (one seed, nothing within-seed) → "undecided".

A finding is reproduced when every one of its *required* effects is; "partly" when some are;
informative effects (the paper's side remarks, a detected step) are shown but never decide.
"""

from __future__ import annotations

import math
from typing import Sequence

from aha.observe.stats import mean_ci95

VERDICTS = ("reproduced", "opposite", "not reproduced", "undecided")


def effect(name: str, values: Sequence[float], paper_sign: int, *, unit: str = "", scale: float = 1.0,
           required: bool = True, within_seed: tuple[float, float] | None = None,
           within_seed_kind: str = "") -> dict:
    """One effect over seeds. `values` are per-seed effects (in the paper's orientation, not yet
    scaled); `scale` only changes how they print (100 for points of a share). `within_seed`
    (low, high) is used when there is a single seed."""
    if paper_sign not in (1, -1):
        raise ValueError(f"paper_sign must be +1 or -1, got {paper_sign}")
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"effect {name!r}: no per-seed values")
    mean, low, high = mean_ci95(values)
    kind = f"Student-t over {len(values)} seeds"
    if len(values) == 1 and within_seed is not None:
        low, high = float(within_seed[0]), float(within_seed[1])
        kind = within_seed_kind or "within one seed"
    elif len(values) == 1:
        kind = "one seed: no interval"
    decided = judge(mean, low, high, paper_sign)
    return {"name": name, "unit": unit, "scale": scale, "values": values, "mean": mean,
            "low": None if math.isnan(low) else low, "high": None if math.isnan(high) else high,
            "interval": kind, "paper_sign": paper_sign, "required": required, **decided}


def judge(mean: float, low: float, high: float, paper_sign: int) -> dict:
    """excludes_zero, direction_matches_paper and the verdict for a mean and its interval.

    >>> judge(0.3, 0.1, 0.5, +1)["verdict"], judge(-0.3, -0.5, -0.1, +1)["verdict"]
    ('reproduced', 'opposite')
    >>> judge(0.3, -0.1, 0.7, +1)["verdict"], judge(0.3, float("nan"), float("nan"), +1)["verdict"]
    ('not reproduced', 'undecided')
    """
    direction = (mean > 0) - (mean < 0)
    matches = direction == paper_sign
    if math.isnan(low) or math.isnan(high):
        return {"excludes_zero": None, "direction_matches_paper": matches, "verdict": "undecided"}
    excludes = low > 0 or high < 0
    verdict = ("reproduced" if matches else "opposite") if excludes else "not reproduced"
    return {"excludes_zero": excludes, "direction_matches_paper": matches, "verdict": verdict}


def finding_verdict(effects: Sequence[dict]) -> str:
    """reproduced / partly reproduced / not reproduced / undecided from the required effects.

    >>> e = lambda v, r=True: {"verdict": v, "required": r}
    >>> finding_verdict([e("reproduced"), e("not reproduced", False)])
    'reproduced'
    >>> finding_verdict([e("reproduced"), e("opposite")]), finding_verdict([e("undecided"), e("reproduced")])
    ('partly reproduced', 'undecided')
    """
    required = [e for e in effects if e.get("required", True)]
    if not required:
        raise ValueError("a finding needs at least one required effect")
    if any(e["verdict"] == "undecided" for e in required):
        return "undecided"
    hits = sum(e["verdict"] == "reproduced" for e in required)
    if hits == len(required):
        return "reproduced"
    return "partly reproduced" if hits else "not reproduced"


def format_value(value: float | None, scale: float = 1.0, unit: str = "", signed: bool = True) -> str:
    """'+12.5 points', '-0.3 steps', '—' for a missing value.

    >>> format_value(0.125, 100, " points"), format_value(None)
    ('+12.5 points', '—')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    number = value * scale
    digits = 1 if abs(number) >= 1 or scale != 1.0 else 3
    text = f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"
    return text + unit


def interval_text(e: dict) -> str:
    """'+12.5 points [95% CI +8.1, +16.9]' or '+12.5 points (one seed: no interval)'."""
    mean = format_value(e["mean"], e["scale"], e["unit"])
    if e["low"] is None:
        return f"{mean} ({e['interval']})"
    return f"{mean} [95% CI {format_value(e['low'], e['scale'])}, {format_value(e['high'], e['scale'])}]"


def verdict_line(e: dict) -> str:
    """The one line the issue asks for: the effect, its interval, whether it excludes zero, and
    whether that is the paper's direction."""
    head = f"{e['name']}: {interval_text(e)}"
    if e["verdict"] == "undecided":
        return f"{head} — no interval, so no verdict (run --seeds 2 or more)"
    side = "the paper's direction" if e["direction_matches_paper"] else "against the paper's direction"
    if e["excludes_zero"]:
        return f"{head} — the interval ({e['interval']}) excludes zero, {side}: {e['verdict']}"
    return f"{head} — the interval ({e['interval']}) includes zero: not reproduced"


def finding(fid: str, title: str, paper: str, effects: Sequence[dict], shows: str, paper_detail: str = "",
            **extra) -> dict:
    """The finding record `summarize` returns: `paper` is the paper's figure in a few words (the
    table's column), `paper_detail` the longer statement; the headline effect is the first required one."""
    headline = next(e for e in effects if e.get("required", True))
    return {"id": fid, "title": title, "paper": paper, "paper_detail": paper_detail or paper,
            "effects": list(effects), "shows": shows,
            "verdict": finding_verdict(effects), "mean": headline["mean"], "low": headline["low"],
            "high": headline["high"], "excludes_zero": headline["excludes_zero"],
            "direction_matches_paper": headline["direction_matches_paper"], **extra}
