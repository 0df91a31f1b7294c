"""`aha experiment distill-vs-rl`: the equal-FLOPs rule against hand-computed values, the crossed
bootstrap against a plain loop, and the quick schedule end to end — FLOPs from the ledgers,
finished arms skipped on a rerun, a killed arm continued to the same numbers, the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from aha.algo.budget import accuracy_at, common_budget
from aha.algo.intervals import bootstrap_ci, bootstrap_indices, crossed_bootstrap_ci
from aha.events import Events, Recorder


def test_accuracy_at_interpolates_linearly_in_flops_and_never_extrapolates():
    flops, acc = [0.0, 4e10, 1e11], [0.40, 0.50, 0.80]
    assert accuracy_at(flops, acc, 0.0) == pytest.approx(0.40)
    assert accuracy_at(flops, acc, 2e10) == pytest.approx(0.45)  # halfway between 0.40 and 0.50
    assert accuracy_at(flops, acc, 7e10) == pytest.approx(0.65)  # halfway between 0.50 and 0.80
    assert accuracy_at(flops, acc, 1e11) == pytest.approx(0.80)
    assert accuracy_at([1e11, 0.0, 4e10], [0.80, 0.40, 0.50], 7e10) == pytest.approx(0.65)  # any order
    # Per-problem scores interpolate column by column; their mean is the interpolated mean.
    shares = [[0.0, 1.0], [0.5, 0.5], [1.0, 0.25]]
    at = accuracy_at(flops, shares, 7e10)
    assert at.tolist() == pytest.approx([0.75, 0.375])
    assert at.mean() == pytest.approx(accuracy_at(flops, [0.5, 0.5, 0.625], 7e10))
    with pytest.raises(ValueError, match="outside"):
        accuracy_at(flops, acc, 1.5e11)
    with pytest.raises(ValueError, match="distinct"):
        accuracy_at([0.0, 1.0, 1.0], acc, 0.5)
    with pytest.raises(ValueError, match="one value"):
        accuracy_at(flops, acc[:2], 0.5)


def test_common_budget_is_the_smallest_final_flops():
    assert common_budget([[0, 3e11, 8e11], [0, 1e11, 2e11, 4e11, 1.6e12]]) == 8e11
    assert common_budget([[0, 5.0], [0, 2.0, 9.0], [0, 7.0]]) == 5.0
    with pytest.raises(ValueError, match="share no FLOPs range"):
        common_budget([[0, 1.0], [2.0, 3.0]])


def test_crossed_bootstrap_matches_a_plain_loop_and_reduces_to_the_problem_bootstrap():
    matrix = np.random.default_rng(4).integers(0, 5, size=(3, 23)) / 4 - 0.4
    problems, seeds = bootstrap_indices(23, 300, 7), bootstrap_indices(3, 300, 8)
    means = sorted(np.mean([[matrix[s, p] for p in problems[b]] for s in seeds[b]]) for b in range(300))
    assert crossed_bootstrap_ci(matrix, 300, 0.9, seed=7) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))
    assert crossed_bootstrap_ci(matrix[:1], 500, seed=3) == pytest.approx(bootstrap_ci(matrix[0], 500, seed=3))
    assert crossed_bootstrap_ci(np.full((3, 5), 0.25)) == pytest.approx((0.25, 0.25))
    with pytest.raises(ValueError, match="matrix"):
        crossed_bootstrap_ci([1.0, 2.0])


def _point(flops, shares, sampling=None):
    extra = {} if sampling is None else {"teacher_sampling_flops": sampling}
    return {"flops": flops, "shares": shares, "pass@1": float(np.mean(shares)), **extra}


def test_compare_and_summarize_by_hand():
    from aha.experiments.distill_vs_rl import compare, summarize

    rl = [_point(0.0, [0, 0]), _point(10.0, [1, 0]), _point(20.0, [1, 1])]
    distill = [_point(0.0, [0, 0]), _point(8.0, [0, 0], sampling=6.0), _point(30.0, [1, 1], sampling=20.0)]
    c = compare(rl, distill)
    # Budget 20 (RL's end): RL 1.0; distillation 12/22 of the way from 0 (at 8) to 1 (at 30).
    assert c["budget_flops"] == 20.0 and c["rl"] == 1.0 and c["distill"] == pytest.approx(12 / 22)
    assert c["difference_by_problem"] == pytest.approx([12 / 22 - 1, 12 / 22 - 1])
    # Sampling uncharged, the distillation points sit at 0, 2, 10: budget 10, RL 0.5, distilled 1.0.
    assert c["teacher_sampling_not_charged"] == pytest.approx(
        {"budget_flops": 10.0, "rl": 0.5, "distill": 1.0, "difference": 0.5})
    seeds = [{"seed": i, "teacher": {"pass@1": 0.9}, "comparison": c} for i in range(3)]
    summary = summarize(seeds)
    assert summary["mean"]["difference"] == pytest.approx(12 / 22 - 1) and summary["distill_wins"] == 0
    assert summary["difference_ci95"] == pytest.approx([12 / 22 - 1] * 2)
    assert summary["verdict"].startswith("the opposite of Table 6's direction")
    flipped = {**c, "difference": 0.1, "difference_by_problem": [0.1, 0.1]}
    assert summarize([{**s, "comparison": flipped} for s in seeds])["verdict"].startswith("reproduces")
    mixed = [{**seeds[0], "comparison": flipped}, *seeds[1:]]
    assert summarize(mixed)["verdict"].startswith("does not settle")


def _no_paths(point: dict) -> dict:
    return {k: v for k, v in point.items() if k not in ("model", "eval_dir")}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick schedule, one seed, its own base cache (the student base is built there): 5-20 s
    on an idle machine (2 minutes with a load average of 5)."""
    from aha.experiments import distill_vs_rl

    home, out = tmp_path_factory.mktemp("aha-home"), tmp_path_factory.mktemp("experiment")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AHA_HOME", str(home))
        recorder = Recorder()
        results = distill_vs_rl.run(out, seeds=(0,), quick=True, events=Events([recorder]))
        yield out, results, recorder, home


def test_quick_experiment_end_to_end(quick_run):
    out, results, recorder, _ = quick_run
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 1
    assert (out / "figures" / "accuracy-vs-flops.png").stat().st_size > 1000
    assert json.loads((out / "results.json").read_text())["summary"] == results["summary"]
    (seed,) = results["per_seed"]
    assert {"teacher", "student", "rl", "distill", "comparison", "wall_seconds"} <= set(seed)
    for arm in ("rl", "distill"):
        points = seed[arm]["points"]
        assert points[0]["name"] == "base" and points[0]["flops"] == 0.0
        assert all(a["flops"] < b["flops"] for a, b in zip(points, points[1:]))  # more training, more FLOPs
        assert all(len(p["shares"]) == 16 and 0 <= p["pass@1"] <= 1 and 0 <= p["reflection_rate"] <= 1 for p in points)
    # The distill points' FLOPs are their ledgers: the teacher's sampling plus the student's SFT.
    for point in seed["distill"]["points"][1:]:
        summary = json.loads((out / "seed-0" / point["name"] / "summary.json").read_text())
        phases = summary["cost"]["phases"]
        assert point["flops"] == pytest.approx(phases["teacher_sampling"]["flops"] + phases["update"]["flops"])
        assert point["teacher_sampling_flops"] > 0
    c = seed["comparison"]
    assert c["budget_flops"] == min(seed["rl"]["points"][-1]["flops"], seed["distill"]["points"][-1]["flops"])
    assert c["difference"] == pytest.approx(c["distill"] - c["rl"])
    assert np.mean(c["difference_by_problem"]) == pytest.approx(c["difference"])
    uncharged = c["teacher_sampling_not_charged"]  # the distill curve shifted left by its sampling FLOPs
    sampling = seed["distill"]["points"][-1]["teacher_sampling_flops"]
    assert uncharged["budget_flops"] == min(seed["rl"]["points"][-1]["flops"], c["distill_final"]["flops"] - sampling)
    assert seed["teacher"]["rl_flops"] > 0 and seed["teacher"]["parameters"] > seed["student"]["parameters_total"] / 2
    row = results["summary"]["rows"][0]
    assert row["seed"] == 0 and row["teacher"] == seed["teacher"]["pass@1"]
    assert "Table 6" in results["summary"]["verdict"]
    assert {"grpo", "sample", "sft"} <= {e.stage for e in recorder.of("phase")}


def test_a_rerun_skips_finished_seeds_and_arms(quick_run, tmp_path):
    from aha.experiments import distill_vs_rl

    out, results, _, home = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "seed-0" / "result.json").unlink()  # the seed not finished; every point of its arms is
    for finished in (False, True):
        recorder = Recorder()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AHA_HOME", str(home))
            again = distill_vs_rl.run_seed(copy, 0, quick=True, events=Events([recorder]))
        assert not recorder.of("phase")  # no stage ran: no training, no sampling, no pretraining
        assert again["comparison"] == results["per_seed"][0]["comparison"]
        for arm in ("rl", "distill"):  # the same points (their paths now in the copy)
            assert [_no_paths(p) for p in again[arm]["points"]] == \
                [_no_paths(p) for p in results["per_seed"][0][arm]["points"]]
        assert any("finished earlier" in e.data["message"] for e in recorder.of("info")) == finished
    with pytest.raises(ValueError, match="another schedule"):
        distill_vs_rl.run_seed(copy, 0, quick=False)


def test_a_killed_rl_arm_continues_to_the_same_numbers(quick_run, tmp_path):
    """Killed after step 2's point, during GRPO's second segment: the stage resumes from its
    checkpoint, and the step-4 point comes out as in the uninterrupted run."""
    from aha.experiments import distill_vs_rl

    out, results, _, home = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    seed_dir = copy / "seed-0"
    for name in ("result.json", "points/rl-step-4.json"):
        (seed_dir / name).unlink()
    shutil.rmtree(seed_dir / "rl" / "checkpoint-4")
    shutil.rmtree(seed_dir / "evals" / "rl-step-4")
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AHA_HOME", str(home))
        again = distill_vs_rl.run_seed(copy, 0, quick=True, events=Events([recorder]))
    assert any("from step 2" in e.data["message"] for e in recorder.of("info") if e.stage == "grpo")
    assert {e.stage for e in recorder.of("phase")} == {"grpo"}  # only the unfinished segment ran
    before, after = results["per_seed"][0]["rl"]["points"][-1], again["rl"]["points"][-1]
    assert after["flops"] == before["flops"] and after["shares"] == before["shares"]


def test_cli_prints_the_table_and_resumes(quick_run, tmp_path):
    from aha.cli import app

    out, results, _, home = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = CliRunner().invoke(app, ["experiment", "distill-vs-rl", "--quick", "--seeds", "0", "--out", str(copy)],
                                env={"AHA_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert "equal FLOPs" in result.output and "Table 6" in result.output and "results.json" in result.output
    bad = CliRunner().invoke(app, ["experiment", "distill-vs-rl", "--seeds", "0", "0", "--out", str(copy)])
    assert bad.exit_code == 2 and "distinct seeds" in bad.output


def test_a_given_teacher_is_used_not_trained(quick_run, tmp_path):
    from aha.experiments import distill_vs_rl

    out, results, _, home = quick_run
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AHA_HOME", str(home))
        again = distill_vs_rl.run_seed(tmp_path / "x", 0, quick=True, events=Events([recorder]),
                                       teacher_dir=out / "seed-0" / "teacher")
    assert not (tmp_path / "x" / "seed-0" / "teacher").exists()
    assert again["teacher"]["run_dir"] == str(out / "seed-0" / "teacher")
    assert again["teacher"]["rl_flops"] == results["per_seed"][0]["teacher"]["rl_flops"]
    assert sum(e.data["name"] == "GRPO" for e in recorder.of("phase")) == 2  # the RL arm's two segments only
    assert again["comparison"]["difference"] == pytest.approx(results["per_seed"][0]["comparison"]["difference"])
