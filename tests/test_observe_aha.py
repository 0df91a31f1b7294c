"""Aha detection on synthetic series with and without a change point; milestone transcripts."""

import numpy as np
import pytest

from aha.observe.aha import AhaResult, detect_aha, generic_self_correction, milestones
from aha.observe.changepoint import noise_sigma, pelt, segments
from aha.tasks.division import DivisionTask, check_trace


def rows(reflection, length, start=1):
    return [{"step": start + i, "reflection_rate": float(r), "response_length_mean": float(n)}
            for i, (r, n) in enumerate(zip(reflection, length))]


def step_series(n, at, low, high, noise, rng, ramp=0):
    """low until `at`, then (after a linear ramp of `ramp` steps) high, plus Gaussian noise."""
    t = np.arange(n)
    level = low + (high - low) * np.clip((t - at + 1) / max(ramp, 1), 0, 1) * (t >= at)
    return level + noise * rng.standard_normal(n)


def test_pelt_finds_exact_shifts():
    x = [0.0] * 10 + [5.0] * 10 + [1.0] * 10
    assert pelt(x, penalty=1.0, min_size=2) == [10, 20]
    assert pelt([1.0] * 30, penalty=1.0) == []
    assert noise_sigma([0.0, 0.0, 0.0]) == 0.0
    assert len(segments([2.0] * 50)) == 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [80, 300])
def test_known_change_point_found_within_5_percent(seed, n):
    rng = np.random.default_rng(seed)
    at = int(n * rng.uniform(0.25, 0.75))
    reflection = np.clip(step_series(n, at, 0.05, 0.35, 0.04, rng), 0, 1)
    length = step_series(n, at + 2, 12, 30, 2.0, rng)
    aha = detect_aha(rows(reflection, length))
    assert aha.aha_step is not None
    assert abs(aha.aha_step - (at + 1)) <= 0.05 * n  # steps are 1-based: index `at` is step at+1
    assert aha.metric == "reflection_rate" and aha.confirmed
    assert "aha at step" in aha.describe()


@pytest.mark.parametrize("seed", range(6))
def test_gradual_rise_is_dated_at_its_onset(seed):
    # R1-Zero's curves bend over tens of steps rather than jumping; the first regime change must
    # still land near where the rise starts, not at its end.
    rng = np.random.default_rng(100 + seed)
    n, at, ramp = 200, 90, 8
    aha = detect_aha(rows(step_series(n, at, 0.05, 0.45, 0.04, rng, ramp), step_series(n, at, 12, 30, 2, rng, ramp)))
    assert aha.aha_step is not None and abs(aha.aha_step - (at + 1)) <= 0.05 * n


@pytest.mark.parametrize("seed", range(10))
def test_flat_noise_reports_nothing(seed):
    rng = np.random.default_rng(1000 + seed)
    n = 200
    # Binomial noise as a real reflection rate over 128 completions; AR(1) noise in the length, as
    # consecutive steps of one policy are correlated.
    reflection = rng.binomial(128, 0.06, n) / 128
    length = np.empty(n)
    length[0] = 20
    for i in range(1, n):
        length[i] = 20 + 0.4 * (length[i - 1] - 20) + 1.5 * rng.standard_normal()
    aha = detect_aha(rows(reflection, length))
    assert aha.aha_step is None and aha.steps == ()
    assert aha.change_points == ()
    assert aha.describe().startswith("no aha")


def test_a_fall_is_not_an_aha():
    rng = np.random.default_rng(7)
    aha = detect_aha(rows(step_series(100, 50, 0.4, 0.05, 0.03, rng), np.full(100, 20.0)))
    assert aha.aha_step is None
    assert [cp.rise for cp in aha.change_points] == [False]


def test_length_alone_when_reflection_not_logged_and_missing_keys():
    rng = np.random.default_rng(3)
    length = step_series(120, 60, 12, 30, 1.5, rng)
    only_length = [{"step": i + 1, "response_length_mean": float(v)} for i, v in enumerate(length)]
    aha = detect_aha(only_length)
    assert aha.metric == "response_length_mean" and abs(aha.aha_step - 61) <= 6
    assert detect_aha([{"step": 1, "reward": 0.1}]) == AhaResult(None)
    assert detect_aha([]).aha_step is None


# ---------------------------------------------------------------- milestones

MARKERS = DivisionTask.reflection_markers


def sample(step, completion, accuracy, reference="7", length=None):
    return {"step": step, "question": "645 // 86", "reference": reference, "completion": completion,
            "reward": accuracy, "accuracy": accuracy, "format": 1.0,
            "length": len(completion) if length is None else length, "truncated": False}


def test_generic_self_correction_rule():
    fixed = sample(5, f"<think>{check_trace(645, 86)}</think> <answer>7</answer>", 1.0)
    assert "too high" in fixed["completion"]
    assert generic_self_correction(fixed, MARKERS)
    right_first = sample(5, "<think>7*86=602<=645 ok</think> <answer>7</answer>", 1.0)
    assert not generic_self_correction(right_first, MARKERS)  # checked, but nothing was wrong
    wrong_end = sample(5, "<think>8*86=688>645 too high, wait, 6*86=516 ok</think> <answer>6</answer>", 0.0)
    assert not generic_self_correction(wrong_end, MARKERS)
    no_marker = sample(5, "<think>8*86=688 so 7</think> <answer>7</answer>", 1.0)
    assert not generic_self_correction(no_marker, MARKERS)
    # "7" inside "687" or "7.5" is not the value 7.
    inside = sample(5, "<think>687, wait: 7</think> <answer>7</answer>", 1.0)
    assert generic_self_correction(inside, ["wait"])
    english = sample(5, "<think>x = 5. Wait, I made a mistake: x = 6.</think> <answer>6</answer>", 1.0, "6")
    assert generic_self_correction(english, ["wait"])


def test_milestones_pick_start_correction_aha_end():
    check = f"<think>{check_trace(645, 86)}</think> <answer>7</answer>"
    samples = []
    for step in (1, 10, 20, 30):
        samples += [sample(step, "<think>guess 8</think> <answer>8</answer>", 0.0, length=5),
                    sample(step, "<think>8*86=688</think> <answer>8</answer>", 0.0, length=9),
                    sample(step, "<think>guess 7</think> <answer>7</answer>", 1.0, length=6)]
    samples.append(sample(20, check, 1.0, length=30))
    samples += [sample(30, check, 1.0, length=30)] * 4
    picked = milestones(samples, AhaResult(18, (18,), "reflection_rate", True), markers=MARKERS)
    assert [m.kind for m in picked] == ["start", "first_self_correction", "aha", "end"]  # by step, ties in this order
    assert picked[0].step == 1 and picked[1].step == 20 and picked[2].step == 20 and picked[3].step == 30
    assert picked[1].sample["completion"] == check
    assert picked[3].sample["completion"] == check  # the median-length sample of the last step
    # No aha, no correction, a custom hook that accepts nothing.
    none = milestones(samples, AhaResult(None), markers=MARKERS, is_self_correction=lambda row, m: False)
    assert [m.kind for m in none] == ["start", "end"]
    assert milestones([], None) == []
