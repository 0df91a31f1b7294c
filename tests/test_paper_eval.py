"""`aha eval`: the paper's numbers from verdicts, reproducible runs, records, the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aha.algo.intervals import bootstrap_ci
from aha.cli import app
from aha.runs import read_jsonl
from aha.stages import paper_eval
from aha.stages.paper_eval import EvalSettings, summarize


def test_summary_numbers_from_verdicts():
    details = [{"accuracy": [1.0, 1.0, 0.0, 0.0], "voted_correct": 1.0},
               {"accuracy": [0.0, 0.0, 0.0, 0.0], "voted_correct": 0.0},
               {"accuracy": [1.0, 0.0, 0.0, 0.0], "voted_correct": 0.0},
               {"accuracy": [0.5, 1.0, 1.0, 1.0], "voted_correct": 1.0}]  # partial credit is not correct
    report = summarize(details, EvalSettings(k=4, resamples=300, seed=2))
    assert report["pass@1"] == pytest.approx((2 + 0 + 1 + 3) / 16)
    assert report["pass@1_ci95"] == list(bootstrap_ci([0.5, 0.0, 0.25, 0.75], 300, seed=2))
    assert report["cons@4"] == 0.5
    assert report["pass@k"]["1"] == pytest.approx(report["pass@1"])
    assert report["pass@k"]["4"] == 0.75  # three of four problems have a correct sample
    assert report["pass@k"]["2"] == pytest.approx((5 / 6 + 0 + 1 / 2 + 1) / 4)  # 1 - C(n-c,2)/C(n,2)


def test_same_seed_same_results(tiny_model_dir, tmp_path):
    settings = EvalSettings(problems=6, k=3, max_new_tokens=24, seed=4, resamples=200)
    first = paper_eval.run(str(tiny_model_dir), settings, tmp_path / "a")
    again = paper_eval.run(str(tiny_model_dir), settings, tmp_path / "b")
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert drop(first) == drop(again)
    records = read_jsonl(tmp_path / "a" / "records.jsonl")
    assert records == read_jsonl(tmp_path / "b" / "records.jsonl")
    assert len(records) == 18 and {r["sample"] for r in records} == {0, 1, 2}
    assert sum(r["correct"] for r in records) / 18 == pytest.approx(first["pass@1"])
    assert json.loads((tmp_path / "a" / "eval.json").read_text())["pass@1_ci95"] == first["pass@1_ci95"]


def test_cli_json_and_bad_input(tiny_model_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--problems", "3", "--k", "2", "--max-new-tokens", "16",
                                 "--out", str(tmp_path / "e"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert set(report["pass@k"]) == {"1", "2"} and report["problems"] == 3
    bad = runner.invoke(app, ["eval", str(tiny_model_dir), "--k", "0", "--out", str(tmp_path / "f")])
    assert bad.exit_code == 2 and "k: expected >= 1" in bad.output
