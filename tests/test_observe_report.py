"""The run report: HTML content, figures, watch mode, and a real render in headless Chromium.

The run directories are synthetic but shaped like the trainer's (division task, 16×8 rollouts,
periodic evals); the lead will switch the Chromium test to a short real run.
"""

import json
import random

import numpy as np
import pytest
import yaml

from aha.observe.aha import detect_aha
from aha.observe.cost import CostLedger
from aha.observe.monitors import RunMonitor
from aha.observe.report import highlight_completion, load_run, watch, write_report
from aha.tasks.division import DivisionTask, check_trace, trial_quotient

PANEL_SLUGS = ("accuracy", "length", "reflection", "language", "entropy", "kl")


def make_run(path, steps=120, aha_at=50, seed=0, drop=()):
    """A run dir whose reflection and length rise at `aha_at`; `drop` lists metric keys not logged."""
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    task = DivisionTask()
    problems = task.problems("train", 400, seed)
    path.mkdir(parents=True)
    config = {"run": {"name": path.name, "seed": seed}, "task": {"name": "division", "options": {}},
              "rollout": {"max_tokens": 64, "temperature": 1.0}, "grpo": {"lr": 1e-4, "group_size": 8}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    monitor, metrics, samples = RunMonitor(), [], []
    for step in range(1, steps + 1):
        on = 1.0 / (1.0 + np.exp(-(step - aha_at) / 2.0))
        check = 0.05 + 0.45 * on
        row = {"step": step, "reward": 0.5 + 0.3 * on + 0.04 * rng.standard_normal(),
               "reward/accuracy": 0.5 + 0.3 * on, "reward/format": 1.0, "accuracy": 0.5 + 0.3 * on,
               "format": 1.0, "response_length_mean": 12 + 20 * on + rng.standard_normal(),
               "response_length_p50": 12 + 20 * on, "response_length_p90": 16 + 22 * on,
               "reflection_rate": float(rng.binomial(128, check) / 128), "reflections_per_completion": 2 * check,
               "truncation_rate": 0.0, "language_mixing_rate": max(0.0, 0.02 + 0.01 * rng.standard_normal()),
               "kl": 0.002 * step / steps, "clip_frac": 0.01, "entropy": 0.7 - 0.2 * on + 0.02 * rng.standard_normal(),
               "grad_norm": 1.0, "lr": 1e-4, "seconds/rollout": 1.0, "seconds/reward": 0.1,
               "seconds/update": 0.8, "tokens_generated": 3000, "completion_tokens_trained": 3000,
               "group_all_equal_rate": 0.3}
        if step % 20 == 0:
            row["eval/accuracy"] = 0.5 + 0.3 * on
        for key in drop:
            row.pop(key, None)
        row.update(monitor.check(row).flags)
        metrics.append(row)
        if step % 10 == 0 or step == 1:
            for p in pyrng.sample(problems, 4):
                samples.append(_sample(step, p, pyrng.random() < check))
    _write_jsonl(path / "metrics.jsonl", metrics)
    _write_jsonl(path / "samples.jsonl", samples)
    ledger = CostLedger(n_params=820_000)
    ledger.add("rollout", tokens_generated=3000 * steps, seconds=1.0 * steps)
    ledger.add("update", tokens_trained=3000 * steps, seconds=0.8 * steps)
    ledger.add("reward", seconds=0.1 * steps)
    (path / "summary.json").write_text(json.dumps(
        {"base_accuracy": 0.5, "final_accuracy": 0.8, "wall_seconds": 2.0 * steps, "steps": steps,
         "cost": ledger.to_dict()}))
    return path


def _sample(step, problem, checks):
    a, b = problem.meta["a"], problem.meta["b"]
    guess = trial_quotient(a, b)
    think, answer = (check_trace(a, b), a // b) if checks else (f"{guess}*{b}={guess * b}", guess)
    completion = f" <think>{think}</think> <answer>{answer}</answer>"
    ok = float(answer == a // b)
    return {"step": step, "question": problem.question, "reference": problem.answer, "completion": completion,
            "reward": ok + 1.0, "accuracy": ok, "format": 1.0, "length": len(completion), "truncated": False}


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_single_run_report(tmp_path):
    run = make_run(tmp_path / "zero-tiny")
    out = write_report([run])
    assert out == run / "report.html"
    page = out.read_text()
    assert {p.name for p in (run / "figures").iterdir()} == {f"{s}.png" for s in PANEL_SLUGS}
    assert page.count('src="data:image/png;base64,') == len(PANEL_SLUGS)
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline, no CDN
    aha = detect_aha(load_run(run).metrics)
    assert aha.aha_step is not None and abs(aha.aha_step - 50) <= 6
    assert f"aha at step {aha.aha_step}" in page
    assert "First self-correction" in page and "End of training" in page
    assert '<span class="think">' in page and "<mark>wait</mark>" in page
    assert "rollout" in page and "TFLOP" in page and "non-embedding" in page  # cost ledger
    assert "group_size: 8" in page  # config
    assert "No monitor fired." in page


def test_missing_keys_say_not_logged_and_monitor_flags_listed(tmp_path):
    run = make_run(tmp_path / "r", drop=("kl", "language_mixing_rate", "entropy"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows[30:]:
        row["monitor/no_signal"] = 1.0
    _write_jsonl(run / "metrics.jsonl", rows)
    (run / "samples.jsonl").unlink()
    (run / "config.yaml").unlink()
    page = write_report([run]).read_text()
    assert page.count("(not logged)") == 3
    assert "no_signal: flagged on 90 steps, first at step 31" in page
    assert "No samples logged." in page and "No config.yaml." in page


def test_overlay_of_several_runs(tmp_path):
    a, b = make_run(tmp_path / "a", aha_at=40), make_run(tmp_path / "b", aha_at=70, seed=1)
    out = write_report([a, b])
    assert out == tmp_path / "report-a-vs-b.html"
    assert (tmp_path / "report-a-vs-b-figures" / "reflection.png").exists()
    page = out.read_text()
    assert page.count("<h2>a</h2>") == 1 and page.count("<h2>b</h2>") == 1
    custom = write_report([a, b], out=tmp_path / "cmp" / "x.html")
    assert (tmp_path / "cmp" / "x-figures" / "kl.png").exists() and custom.exists()


def test_transcripts_are_escaped():
    evil = '<think>a <script>alert(1)</script> & "q" wait</think> <answer><img src=x onerror=alert(1)></answer>'
    out = highlight_completion(evil, ["wait"])
    assert "<script>" not in out and "<img" not in out
    assert "&lt;script&gt;" in out and "&amp;" in out and "<mark>wait</mark>" in out
    assert highlight_completion("no tags <b>") == "no tags &lt;b&gt;"


def test_watch_rerenders_on_change_and_stops_when_done(tmp_path):
    run = make_run(tmp_path / "live")
    (run / "summary.json").unlink()  # still running
    renders = watch(run, interval=0.01, max_renders=2)
    first = next(renders)
    assert 'http-equiv="refresh"' in first.read_text()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 121, "reward": 0.9}\n{"step": 12')  # a half-written last line is skipped
    assert next(renders) == first
    assert len(load_run(run).metrics) == 121
    (run / "summary.json").write_text("{}")
    final = list(watch(run, interval=0.01))
    assert len(final) == 1 and 'http-equiv="refresh"' not in final[0].read_text()
    with pytest.raises(FileNotFoundError):
        write_report([tmp_path / "nope"])


# ---------------------------------------------------------------- headless Chromium


def _pixels(png_path):
    from PIL import Image

    return np.asarray(Image.open(png_path).convert("RGB"), dtype=np.int16)


def _has_color(pixels, hex_color, tol=40):
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(pixels - rgb).sum(axis=-1) < tol).any())


def test_report_renders_in_headless_chromium(tmp_path):
    from aha.observe.browser import find_chromium, render_page

    if find_chromium() is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set AHA_CHROMIUM): cannot render the report")
    a, b = make_run(tmp_path / "a", aha_at=40), make_run(tmp_path / "b", aha_at=70, seed=1)
    out = write_report([a, b], out=tmp_path / "cmp.html")
    check = render_page(out, tmp_path / "screenshot.png")
    assert check.errors == [], check.errors
    assert check.external_requests == []
    assert len(check.images) == len(PANEL_SLUGS)
    shot = _pixels(check.screenshot)
    for image in check.images:
        assert image["complete"] and image["naturalWidth"] > 0, image
        # The figure's box in the screenshot is not blank, and it shows both runs' line colours.
        x, y, w, h = (int(round(image[k])) for k in ("x", "y", "w", "h"))
        box = shot[y : y + h, x : x + w]
        assert box.size and box.std() > 5, image["alt"]
        assert _has_color(box, "#1f77b4") and _has_color(box, "#ff7f0e"), image["alt"]
    for slug in PANEL_SLUGS:  # the PNGs beside the page drew data too
        assert _has_color(_pixels(tmp_path / "cmp-figures" / f"{slug}.png"), "#1f77b4", tol=10), slug
