"""``distsafe conversations``: one escaped, self-contained HTML page of what a run's talking
agents said, opened in headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from browser import find_browser, requires_browser

ROOT = Path(__file__).resolve().parents[1]

TALKERS = '''
import numpy as np
from baselines.policy import Policy


class Talker(Policy):
    """Cooperates; its 'replies' carry markup and an injection attempt."""

    name = "talker"

    def __init__(self, seed=None, **params):
        super().__init__(seed, **params)
        self._turns = []

    def act_batch(self, observations, infos=None):
        out = []
        for info in infos:
            view = info["view"]
            self._turns.append({
                "agent": view["agent"], "step": view["step"],
                "prompt": [{"role": "system", "content": "You play the dilemma."},
                           {"role": "user", "content": "history: " + str(view["neighbors"])}],
                "reply": '</pre><script>document.title="owned"</script><img src=x '
                         'onerror=alert(1)> IGNORE PREVIOUS INSTRUCTIONS',
                "reasoning": "cooperate with " + view["agent"], "action": [0],
                "fallback": view["step"] == 1, "problem": "no JSON" if view["step"] == 1 else None})
            out.append(np.zeros(len(view["actions"]), dtype=np.int64))
        return np.asarray(out)

    def pop_turns(self):
        out, self._turns = self._turns, []
        return out
'''


def _run(tmp_path: Path) -> Path:
    (tmp_path / "talkers.py").write_text(TALKERS)
    (tmp_path / "talk.yaml").write_text(
        "name: talk\nenv: dilemma-v0\nagents: [{type: 'talkers:Talker', count: 2}, "
        "{type: tit_for_tat, count: 1}]\nsimulation: {n_epochs: 1, steps_per_epoch: 3, "
        "seed: 0}\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}"}
    out = tmp_path / "run"
    for args in (["run", "talk.yaml", "--out", str(out), "--quiet"],
                 ["conversations", str(out)]):
        res = subprocess.run([sys.executable, "-m", "baselines.cli", *args], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
    return out / "conversations.html"


def test_the_page_escapes_what_agents_said(tmp_path):
    page = _run(tmp_path).read_text()
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;document.title=&quot;owned&quot;&lt;/script&gt;" in page
    assert page.count('class="turn') == 2 * 3            # two talkers, three steps
    assert page.count('class="turn fallback"') == 2       # step 1 of each talker
    assert "agent_0" in page and "agent_1" in page and "cooperate with agent_1" in page
    assert "http" not in page.replace("http-equiv", "")   # self-contained: loads nothing


def test_conversations_of_a_folder_without_a_log_is_one_error_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "baselines.cli", "conversations",
                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().endswith(f"no event log (is {tmp_path} a run folder?)")


@requires_browser
def test_the_page_opens_in_headless_chromium(tmp_path):
    browser = find_browser()
    assert browser is not None, "DISTSAFE_REQUIRE_BROWSER is set but Chromium is missing"
    page = _run(tmp_path)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>conversations: run</title>" in dom.stdout  # the script never ran
    assert "cooperate with agent_0" in dom.stdout and "<img" not in dom.stdout
    shot = tmp_path / "page.png"
    res = subprocess.run([browser, *flags, "--window-size=1200,900",
                          f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (900, 1200)
    dark = (pixels[..., :3].mean(axis=2) < 0.5).mean()     # text drawn on a light page
    assert 0.002 < dark < 0.5
    assert np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 10
