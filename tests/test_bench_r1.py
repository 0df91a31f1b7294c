"""The R1 benchmarks' pure parts: cold-start traces and the mixing table."""

import importlib.util
import json
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
