"""The report of a short *real* run renders in headless Chromium: no page errors, every plot drew."""

import numpy as np
import pytest
from typer.testing import CliRunner

from aha.cli import app


def test_real_run_report_renders(tmp_path, tiny_model_dir):
    from PIL import Image

    from aha.observe.browser import find_chromium, render_page

    if find_chromium() is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set AHA_CHROMIUM): cannot render the report")
    result = CliRunner().invoke(app, [
        "zero", f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}", "run.name=real", "grpo.steps=4",
        "grpo.prompts_per_step=4", "grpo.group_size=4", "rollout.max_new_tokens=24", "eval.problems=8", "eval.k=2",
        "eval.every=2", "eval.during_problems=4", "run.progress=false", "run.threads=1",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = tmp_path / "real" / "report.html"
    assert report.exists() and (tmp_path / "real" / "figures").is_dir()
    check = render_page(report, tmp_path / "shot.png")
    assert check.errors == [] and check.external_requests == []
    shot = np.asarray(Image.open(check.screenshot).convert("RGB"), dtype=float)
    assert len(check.images) >= 6
    for image in check.images:
        assert image["complete"] and image["naturalWidth"] > 0, image
        x, y, w, h = (int(round(image[k])) for k in ("x", "y", "w", "h"))
        assert shot[y : y + h, x : x + w].std() > 5, f"blank plot: {image['alt']}"
    blue = (np.abs(shot - np.array([0x1F, 0x77, 0xB4])).sum(-1) < 40).sum()
    assert blue > 500  # the curves themselves (matplotlib's first colour) are on the page
