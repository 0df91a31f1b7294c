"""The R1 benchmarks' pure parts: cold-start traces and the mixing table."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from aha.algo.selection import unreadable_reason
from aha.template import parse_response

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cold_start_traces_are_readable_correct_and_in_r1_format():
    rows = load("cold_start").cold_start_rows(50)
    assert rows == load("cold_start").cold_start_rows(50)
    for row in rows:
        assert row["prompt"].endswith("Assistant:") and row["completion"].startswith(" <think>")
        parsed = parse_response(row["completion"].strip())
        assert parsed.well_formed and unreadable_reason(row["completion"].strip()) is None
        a, b = (int(x) for x in row["prompt"].split("User: ")[1].split(". Assistant")[0].split(" // "))
        assert parsed.answer == str(a // b)
    assert any("wait" in r["completion"] for r in rows)
    with pytest.raises(ValueError):
        load("cold_start").cold_start_rows(0)


def test_mixing_report_reference(tmp_path):
    mixing = load("r1_mixing")
    rows = {}
    for seed, (acc_mix, con_mix, acc_acc, con_acc) in enumerate([(0.4, 0.02, 0.80, 0.79), (0.5, 0.03, 0.82, 0.80)]):
        for arm, mix, acc in (("accuracy", acc_mix, acc_acc), ("consistency", con_mix, con_acc)):
            run = tmp_path / f"{arm}-{seed}"
            run.mkdir()
            (run / "summary.json").write_text(json.dumps({
                "base_accuracy": 0.5, "final_accuracy": acc, "steps": 10, "wall_seconds": 1.0,
                "base_eval": {"language_mixing": {"all": 0.2, "en": 0.2, "zh": 0.2}},
                "final_eval": {"language_mixing": {"all": mix, "en": mix, "zh": mix}}}))
            rows[(arm, seed)] = mixing.figures(run)
    text = mixing.report(rows, [0, 1])
    assert "ratio to base 2.2× [-0.9, 5.4]" in text  # ratios 2.0, 2.5: mean 2.25, half 12.706·0.25
    assert "cost (paired) 1.5 points" in text


def test_rm_study_breakdown_counts_every_pair_once_under_its_qualities(tmp_path, tiny_model_dir):
    from aha.models.reward import init_reward_model

    model, tokenizer = init_reward_model(tiny_model_dir)
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    hits = load("rm_study").by_quality(tmp_path / "rm", seed=0, split="test", n=40)
    assert len(hits["all"]) == 40 and set(hits["all"]) <= {0.0, 1.0}
    by_pair = {k: v for k, v in hits.items() if k != "all"}
    assert sum(map(len, by_pair.values())) == 40 and sum(map(sum, by_pair.values())) == sum(hits["all"])
    assert all(" > " in k and k.split(" > ")[0] != k.split(" > ")[1] for k in by_pair)


def test_step_reliability_parses_verdicts_against_the_true_product():
    bench = load("step_reliability")
    # 8*86=688 > 645 (right), 7*86=602 <= 645 (right); then a wrong rejection in Chinese.
    assert bench.check_steps(" <think>8*86=688>645 too high, wait, 7*86=602<=645 ok</think> <answer>7</answer>") == [
        ("en", False), ("en", False)]
    assert bench.check_steps("<think>7*86=602>645 太大, 等等, 6*86=516<=645 好</think>") == [("zh", True), ("zh", False)]
    # A miscomputed product is judged against the truth: 9*76=684 <= 740 is right even if written 648.
    assert bench.check_steps("<think>try 9*76=648<=740 ok</think>") == [("en", False)]
    # Only the thought counts; a one-word thought has no steps.
    assert bench.check_steps("<think>猜 9</think> <answer>8*86=688>645 ok</answer>") == []
    assert bench.trace_kind("<think>猜 9</think>", "zh") == "nocheck"
    assert bench.trace_kind("<think>试 9*76=684<=740 好</think>", "zh") == "check-pure"  # a lone confirmed guess
    assert bench.trace_kind("<think>8*86=688>645 too high, wait, 7*86=602<=645 好</think>", "en") == "check-mixed"
    assert bench.trace_kind("<think>8*86=688>645 too high, wait, 7*86=602<=645 ok</think>", "en") == "check-pure"


def test_step_reliability_tally_and_gap_interval_reference():
    bench = load("step_reliability")
    rows = [{"completion": "<think>7*86=602>645 too high, wait, 6*86=516<=645 ok</think>", "language": "en", "correct": False},
            {"completion": "<think>8*86=688>645 too high, wait, 7*86=602<=645 ok</think>", "language": "en", "correct": True},
            {"completion": "<think>8*86=688>645 太大, 等等, 7*86=602<=645 好</think>", "language": "zh", "correct": True},
            {"completion": "<think>猜 7</think>", "language": "zh", "correct": True}]
    t = bench.tally(rows)
    assert (t["steps"]["en"], t["wrong"]["en"], t["steps"]["zh"], t["wrong"]["zh"]) == (4, 1, 2, 0)
    assert t["traces"][("en", "check-pure")] == 2 and t["right"][("en", "check-pure")] == 1
    assert t["traces"][("zh", "nocheck")] == 1 and t["per_record"] == [(2, 1, 0, 0), (2, 0, 0, 0), (0, 0, 2, 0)]
    low, high = bench.gap_interval(t["per_record"], draws=500)
    assert -1.0 <= low <= 0.25 <= high <= 1.0  # the point gap (1/4 − 0/2) lies inside its interval
    assert all(math.isnan(x) for x in bench.gap_interval([]))  # no check step: no interval
    text = bench.table({"x": t})
    assert "| x | 4 / 2 | 25.0% | 0.0% | +25.0 [" in text and "100.0% (n=1)" in text


def test_step_reliability_scores_the_corpus_with_the_task_verifier():
    bench = load("step_reliability")
    rows = bench.corpus_records(200)
    assert rows == bench.corpus_records(200) and {r["language"] for r in rows} == {"en", "zh"}
    from aha.tasks import get_task

    problems = get_task("division_bilingual").problems("train", 200, 0)
    for row, p in zip(rows, problems, strict=True):  # the same problems, in order, as the bench drew them
        written = row["completion"].split("<answer>")[1].split("</answer>")[0]
        assert row["correct"] == (int(written) == p.meta["a"] // p.meta["b"])
    assert 0 < sum(r["correct"] for r in rows) < len(rows)  # the corpus's guesses and wrong verdicts miss some
