"""`aha paper`'s statistics: effects over seeds, intervals, verdict lines — reference cases."""

import math

import pytest

from aha.experiments.verdict import effect, finding, finding_verdict, format_value, judge, verdict_line
from aha.stages.paper import normalize


def test_three_seeds_interval_is_student_t_and_decides():
    # mean 0.25, sd 0.05, half-width t(0.975, 2)·0.05/√3 = 4.303·0.028868 = 0.12422
    e = effect("lift", [0.2, 0.25, 0.3], +1, unit=" points", scale=100)
    assert e["mean"] == pytest.approx(0.25)
    assert (e["low"], e["high"]) == (pytest.approx(0.125783, abs=1e-6), pytest.approx(0.374217, abs=1e-6))
    assert e["excludes_zero"] and e["direction_matches_paper"] and e["verdict"] == "reproduced"
    assert e["interval"] == "Student-t over 3 seeds"
    line = verdict_line(e)
    assert line == ("lift: +25.0 points [95% CI +12.6, +37.4] — the interval (Student-t over 3 seeds) excludes zero, "
                    "the paper's direction: reproduced")


def test_interval_across_zero_is_not_reproduced_and_opposite_is_named():
    wide = effect("x", [1.0, 2.0, 3.0], +1)  # mean 2, interval [-0.484, 4.484] (stats.mean_ci95's doctest)
    assert wide["low"] == pytest.approx(-0.484, abs=1e-3) and wide["verdict"] == "not reproduced"
    assert "includes zero: not reproduced" in verdict_line(wide)
    against = effect("y", [-0.2, -0.25, -0.3], +1)
    assert against["verdict"] == "opposite" and not against["direction_matches_paper"]
    assert "against the paper's direction: opposite" in verdict_line(against)
    down = effect("z", [-0.2, -0.25, -0.3], -1)  # the paper says it goes down: reproduced
    assert down["verdict"] == "reproduced"


def test_one_seed_uses_the_within_seed_interval_or_stays_undecided():
    alone = effect("a", [0.3], +1)
    assert alone["low"] is None and alone["verdict"] == "undecided" and alone["excludes_zero"] is None
    assert "no interval, so no verdict" in verdict_line(alone)
    boot = effect("b", [0.3], +1, within_seed=(0.1, 0.5), within_seed_kind="bootstrap over problems")
    assert boot["verdict"] == "reproduced" and boot["interval"] == "bootstrap over problems"
    # several seeds: the within-seed interval is ignored, the t interval is the one
    assert effect("c", [0.3, 0.31], +1, within_seed=(-9, 9))["interval"] == "Student-t over 2 seeds"


def test_judge_and_finding_verdict_reference():
    assert judge(0.0, -0.1, 0.1, +1)["verdict"] == "not reproduced"
    assert judge(0.2, 0.0, 0.4, +1)["excludes_zero"] is False  # touching zero does not exclude it
    assert judge(0.2, math.nan, math.nan, -1) == {"excludes_zero": None, "direction_matches_paper": False,
                                                  "verdict": "undecided"}
    e = lambda v, r=True: {"verdict": v, "required": r}  # noqa: E731
    assert finding_verdict([e("reproduced"), e("reproduced"), e("opposite", False)]) == "reproduced"
    assert finding_verdict([e("reproduced"), e("not reproduced")]) == "partly reproduced"
    assert finding_verdict([e("opposite"), e("not reproduced")]) == "not reproduced"
    with pytest.raises(ValueError):
        finding_verdict([e("reproduced", False)])
    with pytest.raises(ValueError):
        effect("bad", [1.0], 0)


def test_finding_record_headline_is_the_first_required_effect():
    info = effect("side", [0.5, 0.6], +1, required=False)
    main = effect("main", [0.2, 0.25, 0.3], +1)
    f = finding("F9", "t", "p", [info, main], "shows", paper_detail="long")
    assert f["mean"] == main["mean"] and f["verdict"] == "reproduced" and f["paper_detail"] == "long"
    assert format_value(None) == "—" and format_value(4.0, unit=" steps") == "+4.0 steps"


def test_foreign_record_shapes_are_normalized():
    """F5 comes from another module: a headline-only record still gets an effect and a verdict."""
    rec = normalize("F5", {"effect_mean": 0.12, "ci_low": 0.05, "ci_high": 0.2, "excludes_zero": True,
                           "direction_matches_paper": True, "paper_figure": "Table 6", "miniature": "distilled wins"})
    assert rec["verdict"] == "reproduced" and rec["paper"] == "Table 6" and rec["shows"] == "distilled wins"
    assert rec["effects"][0]["low"] == 0.05
    against = normalize("F5", {"mean": -0.1, "ci95": [-0.2, -0.01], "direction_matches_paper": False})
    assert against["verdict"] == "not reproduced" and against["effects"][0]["verdict"] == "opposite"
    made = finding("F5", "t", "p", [effect("m", [0.1, 0.2, 0.15], +1)], "s")
    assert normalize("F5", made)["effects"] == made["effects"]
