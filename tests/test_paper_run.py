"""`aha paper --quick` end to end on the tiny schedule: stopped mid-cell, continued at the right cell
and checkpoint, and its report renders in headless Chromium with every plot drawn."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aha import runs
from aha.cli import app
from aha.experiments import EXPERIMENTS
from aha.stages import paper


@pytest.fixture(scope="module")
def tiny_paper(tmp_path_factory):
    """A quick `aha paper` on the tiny schedule, killed once inside the mixing cell's second arm."""
    out = tmp_path_factory.mktemp("paper")
    calls = {"grpo": [], "cells": []}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AHA_PAPER_SCHEDULE", "tiny")
        from aha.experiments import runner

        original = runner.run_grpo

        def killed_in_consistency_arm(cfg, run_dir, events=None):
            if run_dir.name.startswith("consistency"):  # two of its three steps, a checkpoint, then the kill
                original(dataclasses.replace(cfg, grpo=dataclasses.replace(cfg.grpo, steps=2)), run_dir, events)
                raise KeyboardInterrupt
            return original(cfg, run_dir, events)

        mp.setattr(runner, "run_grpo", killed_in_consistency_arm)
        with pytest.raises(KeyboardInterrupt):
            paper.run(paper.PaperSettings(seeds=1, quick=True), out)
        state_after_kill = json.loads((out / paper.STATE).read_text())
        mp.setattr(runner, "run_grpo", lambda cfg, run_dir, events=None: (calls["grpo"].append(run_dir.name),
                                                                          original(cfg, run_dir, events))[1])
        for name in EXPERIMENTS:
            module = paper.load_experiment(name)
            mp.setattr(module, "run_seed", _spy(module.run_seed, name, calls["cells"]))
        result = CliRunner().invoke(app, ["paper", "--quick", "--out", str(out)], catch_exceptions=False)
    return out, state_after_kill, calls, result


def _spy(fn, name, log):
    def wrapped(*args, **kwargs):
        log.append(name)
        return fn(*args, **kwargs)
    return wrapped


def test_a_killed_run_continues_at_the_cell_and_checkpoint_it_stopped_in(tiny_paper):
    out, after_kill, calls, result = tiny_paper
    assert result.exit_code == 0, result.output
    assert sorted(after_kill["cells"]) == ["cold_start/0", "zero/0"]  # the mixing cell had not finished
    assert after_kill["seconds"]["mixing/0"] > 0  # its time so far is kept
    assert calls["cells"] == ["mixing", "distill_vs_rl"]  # finished cells were read back, not run
    # In the mixing cell, the finished arm was read; the stopped arm resumed from its checkpoint.
    # F5 then found the shared R1-Zero run (its teacher) finished.
    assert calls["grpo"] == ["accuracy-s0", "consistency-s0", "grpo"]
    arm = out / "runs" / "mixing" / "seed-0" / "consistency-s0"
    assert [r["step"] for r in runs.read_jsonl(arm / "metrics.jsonl")] == [1, 2, 3]
    assert json.loads((arm / "summary.json").read_text())["steps"] == 3
    state = json.loads((out / paper.STATE).read_text())
    assert sorted(state["cells"]) == ["cold_start/0", "distill_vs_rl/0", "mixing/0", "zero/0"]
    assert state["schedule"] == "tiny"
    # F5's teacher is the shared zero run, not a new one
    teacher = json.loads((out / "runs" / "distill_vs_rl" / "seed-0" / "points" / "teacher.json").read_text())
    assert teacher["run_dir"] == str(out / "runs" / "zero" / "seed-0" / "grpo")


def test_results_hold_every_finding_with_verdict_lines_and_summed_cost(tiny_paper):
    out, _, _, result = tiny_paper
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0] and results["schedule"] == "tiny"
    findings = results["findings"]
    assert list(findings) == ["F1", "F2", "F3", "F4", "F5", "F6"]
    for fid in ("F1", "F2", "F3", "F4", "F5", "F6"):
        f = findings[fid]
        assert f["verdict"] in ("reproduced", "partly reproduced", "not reproduced", "undecided"), fid
        assert f["effects"] and all(len(e["values"]) == 1 for e in f["effects"])
    # one seed: held-out effects carry a bootstrap over problems, the others no interval
    assert findings["F1"]["effects"][0]["interval"].startswith("paired bootstrap")
    assert findings["F2"]["effects"][0]["verdict"] == "undecided"
    total = results["cost"]["runs"]["total"]
    assert total["tokens_generated"] > 0 and total["tokens_trained"] > 0 and total["flops"] > 0
    assert set(results["cost"]["by_experiment"]) == set(EXPERIMENTS)
    # the division, the bilingual and F5's student base, each counted once
    assert len(results["cost"]["bases"]) == 3
    assert all(results["cost"]["by_experiment"][name]["total"]["flops"] > 0 for name in EXPERIMENTS)
    assert "findings in miniature" in result.output, result.output
    page = (out / "report.html").read_text()
    assert page.count("<figure>") == 6 and "no interval, so no verdict" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_report_renders_in_headless_chromium_with_every_plot_drawn(tiny_paper):
    from PIL import Image

    from aha.observe.browser import find_chromium, render_page

    if find_chromium() is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set AHA_CHROMIUM): cannot render the report")
    out = tiny_paper[0]
    check = render_page(out / "report.html", out / "shot.png")
    assert check.errors == [] and check.external_requests == []
    assert len(check.images) == 6  # one per finding
    shot = np.asarray(Image.open(check.screenshot).convert("RGB"), dtype=float)
    for image in check.images:
        assert image["complete"] and image["naturalWidth"] > 0, image
        x, y, w, h = (int(round(image[k])) for k in ("x", "y", "w", "h"))
        box = shot[y: y + h, x: x + w]
        assert box.size and box.std() > 5, f"blank plot: {image['alt']}"
        blue = (np.abs(box - np.array([0x1F, 0x77, 0xB4])).sum(-1) < 40).sum()
        assert blue > 50, f"no data drawn in {image['alt']}"  # seed 0's colour: the data itself


def test_each_finding_has_its_own_figure(tiny_paper, tmp_path):
    from aha.observe.paper_plots import draw_finding

    results = json.loads((tiny_paper[0] / "results.json").read_text())
    for fid, experiment in (("F1", "zero"), ("F2", "zero"), ("F3", "mixing"), ("F4", "cold_start"),
                            ("F5", "distill_vs_rl"), ("F6", "zero")):
        assert draw_finding(results["findings"][fid], results["per_seed"][experiment], tmp_path / f"{fid}.png"), fid


def test_a_state_of_another_schedule_is_refused(tmp_path):
    paper.save_state(tmp_path, {"schedule": "quick", "cells": {}, "seconds": {}, "failed": {}, "missing": {}})
    with pytest.raises(ValueError, match="--fresh"):
        paper.load_state(tmp_path, "full")


def test_an_experiment_not_installed_is_reported_not_run(monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "distill_vs_rl", ("aha.experiments._not_installed", ("F5",)))
    assert paper.load_experiment("distill_vs_rl") == "not run: experiment not available"
    state = {"cells": {}, "failed": {}, "missing": {"distill_vs_rl": "not run: experiment not available"}}
    f5 = paper._findings_of("distill_vs_rl", ("F5",), [], state, [0])["F5"]
    assert f5["verdict"] == "not run" and f5["effects"] == [] and f5["paper"] == "Table 6"


def test_quick_skips_f5_and_says_why(monkeypatch):
    from aha.experiments import paper_distill

    monkeypatch.delenv("AHA_PAPER_SCHEDULE", raising=False)
    cell = paper_distill.run_seed(Path("unused"), 0, quick=True)
    f5 = paper_distill.summarize([cell])["F5"]
    assert f5["verdict"] == "not run" and "--quick" in f5["shows"]


def test_a_stop_signal_stops_the_whole_run_and_a_failure_does_not(tmp_path, monkeypatch):
    """SIGTERM inside a stage (StopRequested) ends `aha paper` with the cell unfinished; an
    experiment that fails is recorded and the next cell runs."""
    import signal
    import types

    from aha.train.signals import StopRequested

    def stopped(out_dir, seed, quick=False, events=None):
        raise StopRequested(signal.SIGTERM, 7, out_dir / "checkpoint-7")

    def broken(out_dir, seed, quick=False, events=None):
        raise RuntimeError("boom")

    ran = []
    fakes = {"a": types.SimpleNamespace(run_seed=broken), "b": types.SimpleNamespace(run_seed=stopped),
             "c": types.SimpleNamespace(run_seed=lambda *a, **k: ran.append("c") or {})}
    monkeypatch.setattr(paper, "EXPERIMENTS", {n: (f"fake.{n}", (f"F{i}",)) for i, n in enumerate(fakes, 1)})
    monkeypatch.setattr(paper, "load_experiment", fakes.get)
    monkeypatch.setenv("AHA_PAPER_SCHEDULE", "tiny")
    with pytest.raises(StopRequested):
        paper.run(paper.PaperSettings(seeds=1), tmp_path)
    state = json.loads((tmp_path / paper.STATE).read_text())
    assert state["failed"] == {"a/0": "RuntimeError: boom"} and "b/0" not in state["failed"]
    assert state["cells"] == {} and ran == [] and "b/0" in state["seconds"]
    assert "boom" in (tmp_path / "runs" / "a" / "seed-0" / "error.txt").read_text()
