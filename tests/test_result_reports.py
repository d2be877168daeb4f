"""The HTML reports that `distsafe bench` and `distsafe sweep` write: produced by real runs of
the commands, self-contained, and opened in headless Chromium (DOM and screenshot checked for
their tables and plots)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from browser import find_browser, requires_browser

from baselines.cli import main

SUITE = {
    "name": "tiny_suite", "seeds": 3,
    "scenarios": [
        {"scenario": {"name": "plain", "agents": [{"type": "honest", "count": 3},
                                                  {"type": "opportunistic", "count": 1}],
                      "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 1}}},
        {"scenario": {"name": "audited", "agents": [{"type": "honest", "count": 3},
                                                    {"type": "opportunistic", "count": 1}],
                      "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 1},
                      "governance": {"random_audit": {"probability": 0.5, "penalty": 2.0}}}},
    ],
}
SCENARIO = {"name": "tiny_sweep", "agents": [{"type": "honest", "count": 3},
                                             {"type": "deceptive", "count": 1}],
            "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 2}}


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("reports")
    suite = tmp / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    assert main(["bench", str(suite), "--focal", "deceptive", "--workers", "1", "--out",
                 str(tmp / "bench")]) == 0
    config = tmp / "scenario.yaml"
    config.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    assert main(["sweep", str(config), "--param", "governance.random_audit.probability=0,0.5",
                 "--param", "governance.transaction_tax.rate=0,0.1", "--seeds", "2",
                 "--workers", "1", "--out", str(tmp / "sweep")]) == 0
    return {"bench": tmp / "bench" / "bench.html", "sweep": tmp / "sweep" / "report.html"}


@pytest.mark.parametrize("kind", ["bench", "sweep"])
def test_reports_are_self_contained_with_tables_and_plots(reports, kind):
    text = reports[kind].read_text(encoding="utf-8")
    for ref in ("http://", "https://", 'src="/', "<link", "<script"):
        assert ref not in text, ref
    assert text.count('<table class="data"') >= 2
    images = re.findall(r'<img [^>]*src="data:image/png;base64,', text)
    assert len(images) >= (4 if kind == "sweep" else 1)  # sweep: a heatmap per metric
    if kind == "bench":
        assert "deceptive" in text and "[" in text  # the focal, intervals
    else:
        assert "governance.random_audit.probability" in text


@requires_browser
@pytest.mark.parametrize("kind", ["bench", "sweep"])
def test_reports_open_in_headless_chromium(reports, kind, tmp_path):
    browser = find_browser()
    assert browser is not None, "DISTSAFE_REQUIRE_BROWSER is set but Chromium is missing"
    page = reports[kind]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    source = page.read_text(encoding="utf-8")
    # the rendered DOM holds every table and every image of the file
    assert dom.stdout.count('<table class="data"') == source.count('<table class="data"')
    assert dom.stdout.count("<img ") == source.count("<img ") >= 1
    shot = tmp_path / f"{kind}.png"
    res = subprocess.run([browser, *flags, "--window-size=1200,1600", f"--screenshot={shot}",
                          page.as_uri()], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(str(shot))
    assert pixels.shape[:2] == (1600, 1200)
    rgb = pixels[..., :3]
    dark = (rgb.mean(axis=2) < 0.5).mean()  # text, tables and plots on a light page
    assert 0.002 < dark < 0.6
    # a plot was decoded and drawn: saturated, non-grey pixels over an area
    colourful = (rgb.max(axis=2) - rgb.min(axis=2) > 0.25).sum()
    assert colourful > 2000, colourful
    assert np.isfinite(pixels).all()
