"""Failure monitors fire on metric streams built to fail and stay quiet on a healthy one."""

import numpy as np
import pytest

from aha.observe.monitors import CHECKS, RunMonitor


def healthy(n=300, seed=0):
    """Shaped like the default R1-Zero run: reward and length rise, entropy eases, evals improve."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(1, n + 1):
        p = min(1.0, step / 150)
        row = {
            "step": step,
            "reward": 0.5 + 0.3 * p + 0.05 * rng.standard_normal(),
            "reward/format": min(1.0, 0.9 + 0.1 * p + 0.02 * rng.standard_normal()),
            "accuracy": 0.5 + 0.3 * p + 0.05 * rng.standard_normal(),
            "response_length_mean": 12 + 20 * p + 1.5 * rng.standard_normal(),
            "truncation_rate": max(0.0, 0.01 * rng.standard_normal()),
            "entropy": 0.6 - 0.25 * p + 0.02 * rng.standard_normal(),
            "group_all_equal_rate": 0.2 + 0.2 * p + 0.05 * rng.standard_normal(),
            "kl": 0.01 * p,
        }
        if step % 25 == 0:
            row["eval/accuracy"] = 0.5 + 0.3 * p + 0.03 * rng.standard_normal()
        out.append(row)
    return out


def run(stream, **kwargs):
    monitor = RunMonitor(**kwargs)
    results = [monitor.check(row) for row in stream]
    warnings = [w for r in results for w in r.warnings]
    fired = {c for r in results for c in CHECKS if r.flags[f"monitor/{c}"]}
    return results, warnings, fired


@pytest.mark.parametrize("seed", range(3))
def test_quiet_on_a_healthy_run(seed):
    results, warnings, fired = run(healthy(seed=seed))
    assert warnings == [] and fired == set()
    assert set(results[0].flags) == {f"monitor/{c}" for c in CHECKS}  # every flag logged every step


def test_quiet_during_warmup_and_on_short_runs():
    stream = [dict(row, **{"reward/format": 0.0}) for row in healthy(n=20)]
    _, warnings, fired = run(stream)
    assert warnings == [] and fired == set()


def broken(key_values):
    """The healthy stream with some keys replaced by functions of the step."""
    return [dict(row, **{k: f(row["step"]) for k, f in key_values.items()}) for row in healthy()]


@pytest.mark.parametrize("check, stream", [
    ("format_stuck", lambda: broken({"reward/format": lambda s: 0.0})),
    ("length_collapse", lambda: broken({"response_length_mean": lambda s: 30.0 if s < 120 else 6.0,
                                        "reward": lambda s: 0.5})),
    ("length_at_cap", lambda: broken({"truncation_rate": lambda s: 0.05 if s < 100 else 0.6})),
    ("entropy_collapse", lambda: broken({"entropy": lambda s: 0.6 if s < 100 else 0.005})),
    ("no_signal", lambda: broken({"group_all_equal_rate": lambda s: 0.97})),
    # A reward that ignores the answer: train reward climbs while held-out accuracy falls.
    ("reward_hacking", lambda: [dict(r, reward=0.3 + 0.6 * r["step"] / 300,
                                     **({"eval/accuracy": 0.6 - 0.4 * r["step"] / 300} if "eval/accuracy" in r else {}))
                                for r in healthy()]),
])
def test_fires_on_a_run_built_to_fail(check, stream):
    results, warnings, fired = run(stream())
    assert fired == {check}
    assert len(warnings) == 1  # one warning when the condition starts, not one per step
    assert warnings[0].startswith("step ") and "\n" not in warnings[0]


def test_format_stuck_fires_right_after_warmup_and_clears():
    stream = broken({"reward/format": lambda s: 0.0 if s < 60 else 1.0})
    results, warnings, _ = run(stream, warmup=20, window=10)
    flagged = [i + 1 for i, r in enumerate(results) if r.flags["monitor/format_stuck"]]
    assert flagged[0] == 21 and flagged[-1] < 70
    assert warnings[0].startswith("step 21: format reward stuck")


def test_plain_format_key_and_shorter_answers_that_score_better():
    stream = [{k: v for k, v in r.items() if k != "reward/format"} | {"format": 0.0} for r in healthy()]
    assert run(stream)[2] == {"format_stuck"}
    # Length halves while reward rises: the policy got concise, not broken.
    concise = broken({"response_length_mean": lambda s: 40.0 if s < 120 else 15.0,
                      "reward": lambda s: 0.4 if s < 120 else 0.8})
    assert run(concise)[2] == set()
