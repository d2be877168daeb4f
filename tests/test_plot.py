"""``distsafe plot``: the dashboard PNG of a run folder (real runs through the CLI)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from baselines.cli import main
from baselines.plot import COMMONS_PANELS, EPOCH_PANELS, dashboard

POLICY = '''\
import numpy as np
from baselines.policy import Policy


class Takes(Policy):
    """Random valid commons actions (a test policy)."""

    name = "takes"

    def act_arrays(self, obs):
        n = len(obs)
        out = np.zeros((n, len(obs.nvec)), dtype=np.int64)
        for d in range(len(obs.nvec)):
            m = obs.mask(d).astype(bool)
            out[:, d] = (self.rng.random((n, m.shape[1])) * m).argmax(1)
        out[:, 0] //= 3
        return out
'''

COMMONS = """\
name: plot_commons
env: commons-v0
agents:
  - {type: "plot_test_policy:Takes", count: 4}
governance: {random_audit: {probability: 0.5}}
simulation: {n_epochs: 12, steps_per_epoch: 1, seed: 1}
"""

SANDBOX = """\
name: plot_sandbox
agents:
  - {type: honest, count: 3}
  - {type: deceptive, count: 2}
simulation: {n_epochs: 3, steps_per_epoch: 4, seed: 1}
"""

DILEMMA = """\
name: plot_dilemma
env: dilemma-v0
agents:
  - {type: tit_for_tat, count: 3}
  - {type: always_defect, count: 2}
simulation: {n_epochs: 3, steps_per_epoch: 4, seed: 1}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    import os
    import sys

    d = tmp_path_factory.mktemp("plot")
    (d / "plot_test_policy.py").write_text(POLICY)
    old = os.getcwd()
    os.chdir(d)
    sys.path.insert(0, str(d))
    try:
        out = {}
        for name, text in (("commons", COMMONS), ("sandbox", SANDBOX), ("dilemma", DILEMMA)):
            (d / f"{name}.yaml").write_text(text)
            assert main(["run", f"{name}.yaml", "--out", f"run_{name}", "--quiet"]) == 0
            out[name] = d / f"run_{name}"
        return out
    finally:
        os.chdir(old)
        sys.path.remove(str(d))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_commons_dashboard_has_every_panel(runs, capsys):
    run = runs["commons"]
    assert main(["plot", str(run)]) == 0
    out = run / "dashboard.png"
    assert capsys.readouterr().out.strip() == str(out)
    w, h = png_size(out)
    assert w >= 800 and h >= 800
    assert out.stat().st_size > 20_000
    assert not [p for p in run.iterdir() if p.name.startswith(".dashboard")]
    fig = dashboard(run)
    assert titles(fig) == list(COMMONS_PANELS)
    stock = fig.axes[0]
    labels = [line.get_label() for line in stock.get_lines()]
    assert "collapse threshold 5" in labels  # the default threshold, drawn
    # every panel drew something
    for ax in fig.axes[:len(COMMONS_PANELS)]:
        assert ax.get_lines() or ax.patches or ax.images, ax.get_title()


@pytest.mark.parametrize("variant", ["sandbox", "dilemma"])
def test_other_variants_get_the_panels_that_apply(runs, tmp_path, variant):
    png = tmp_path / "d.png"
    assert main(["plot", str(runs[variant]), "--out", str(png)]) == 0
    w, h = png_size(png)
    assert w >= 800 and h >= 400
    assert titles(dashboard(runs[variant])) == list(EPOCH_PANELS)


def test_metrics_come_from_the_log_when_metrics_csv_is_gone(runs, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(runs["sandbox"], run)
    (run / "metrics.csv").unlink()
    assert main(["plot", str(run)]) == 0
    png_size(run / "dashboard.png")


def test_missing_or_corrupt_logs_are_named(runs, tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such run folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["plot", str(empty)]) == 2
    assert f"{empty / 'events.jsonl'}: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "events.jsonl").write_text('{"type": "run_start", "env": 3}\n')
    assert main(["plot", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distsafe: error: cannot read the run: ")
    assert f"{bad / 'events.jsonl'}:1" in err
    assert not (bad / "dashboard.png").exists()


def test_monitoring_flags_and_a_collapse_are_drawn(tmp_path):
    """A commons run with the monitoring lever that ends early by collapse (built with the
    env directly; the folder holds only its log, so the metrics come from the log)."""
    import numpy as np

    import envs
    from baselines.policy import Policy
    from baselines.runner import rollout
    from envs.core.events import EventLog, replay
    from wrappers.monitoring import Monitoring

    class Greedy(Policy):
        """Takes a lot and reports little."""

        def act_arrays(self, obs):
            n = len(obs)
            out = np.zeros((n, len(obs.nvec)), dtype=np.int64)
            out[:, 0] = obs.nvec[0] // 3
            out[:, 1] = obs.nvec[1] // 4  # under-reports
            return out

    run = tmp_path / "run"
    run.mkdir()
    log = EventLog(run / "events.jsonl", format="arrow")
    env = Monitoring(envs.make("commons-v0", n_agents=4, n_epochs=30, event_log=log,
                               elimination=False, accusations=False,
                               collapse_threshold=10.0), z_threshold=1.0)
    pol = Greedy(seed=0)
    rollout(env, {a: pol for a in env.possible_agents}, seed=3)
    env.close()
    text = (run / "events.jsonl").read_text()
    assert '"terminated":true' in text and '"lever":"monitoring"' in text
    fig = dashboard(run)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == list(COMMONS_PANELS)
    stock, counts = fig.axes[0], fig.axes[5]
    assert "collapse" in [line.get_label() for line in stock.get_lines()]
    assert "monitoring flags" in [t.get_text() for t in counts.get_legend().get_texts()]
    bars = next(c for c in counts.containers if c.get_label() == "monitoring flags")
    flags = sum(len(ev.data["flags"]) for ev in replay(run / "events.jsonl").governance)
    assert flags > 0 and sum(b.get_height() for b in bars) == flags  # flags, not events
    assert main(["plot", str(run)]) == 0
    png_size(run / "dashboard.png")


def test_a_run_folder_with_its_dashboard_is_still_a_run_folder(runs, tmp_path, monkeypatch):
    """``dashboard.png`` is a file a run folder may hold: --resume and --overwrite take it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["sandbox"], run)
    assert main(["plot", str(run)]) == 0
    monkeypatch.chdir(runs["sandbox"].parent)
    assert main(["run", "sandbox.yaml", "--out", str(run), "--resume", "--quiet"]) == 0
    assert main(["run", "sandbox.yaml", "--out", str(run), "--overwrite", "--quiet"]) == 0
    assert not (run / "dashboard.png").exists()  # --overwrite replaced the folder whole


@pytest.mark.parametrize("edit", [{"stock": "lots"}, {"taken": None, "policy": 7},
                                  {"messages": 3}])
def test_a_malformed_round_record_is_named_not_a_traceback(runs, tmp_path, capsys, edit):
    """step_state data passes the log's checks whatever it holds; a record edited into
    nonsense raised ValueError/TypeError out of ``distsafe plot``."""
    import json
    import shutil

    run = tmp_path / "edited"
    shutil.copytree(runs["commons"], run)
    (run / "dashboard.png").unlink(missing_ok=True)
    events = run / "events.jsonl"
    out = []
    for line in events.read_text().splitlines():
        e = json.loads(line)
        if e.get("type") == "step_state" and e["step"] == 2:
            e["data"].update(edit)
        out.append(json.dumps(e))
    events.write_text("\n".join(out) + "\n")
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"distsafe: error: {events}: a round record or metric row is "
                          "malformed")
    assert not (run / "dashboard.png").exists()
