"""baselines.jobs: the same jobs give the same results on one worker, a process pool and a
local Ray; failures are retried then reported; a store resumes an interrupted batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baselines.jobs import Job, register_task, run_jobs
from baselines.scenario import parse_scenario

SCENARIO = parse_scenario({
    "name": "jobs", "agents": [{"type": "honest", "count": 3},
                               {"type": "deceptive", "count": 1}],
    "simulation": {"n_epochs": 2, "steps_per_epoch": 4, "seed": 5},
    "governance": {"random_audit": {"probability": 0.3}},
}).model_dump(mode="json")


def _jobs(n: int = 4) -> list[Job]:
    return [Job(f"jobs/seed={k}", SCENARIO, k) for k in range(n)]


@register_task("flaky")
def _flaky(scenario: dict, seed: int, options: dict) -> dict:
    """Fails while the marker file says so (counting its attempts there), then succeeds."""
    marker = Path(options["marker"])
    count = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(count + 1))
    if count < options["fail_times"]:
        raise RuntimeError(f"attempt {count + 1} fails on purpose")
    return {"seed": seed, "attempts": count + 1}


def test_one_worker_pool_and_ray_give_identical_results():
    one = run_jobs(_jobs(), workers=1)
    two = run_jobs(_jobs(), workers=2)
    assert one.failures == [] and list(one.results) == [j.key for j in _jobs()]
    assert json.dumps(one.results, sort_keys=True) == json.dumps(two.results, sort_keys=True)
    assert one.results["jobs/seed=0"] != one.results["jobs/seed=1"]  # seeds matter
    pytest.importorskip("ray")
    ray_run = run_jobs(_jobs(), backend="ray", workers=2)
    assert json.dumps(one.results, sort_keys=True) == json.dumps(ray_run.results,
                                                                  sort_keys=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_jobs_are_retried_then_reported(tmp_path, workers):
    opts = {"_module": "tests.test_jobs", "fail_times": 1}
    work = [Job("ok", SCENARIO, 0, "flaky", {**opts, "marker": str(tmp_path / "a")}),
            Job("bad", SCENARIO, 1, "flaky", {**opts, "marker": str(tmp_path / "b"),
                                              "fail_times": 9})]
    done = run_jobs(work, workers=workers, retries=2)
    assert done.results["ok"] == {"seed": 0, "attempts": 2}  # failed once, retried
    assert [f["key"] for f in done.failures] == ["bad"]
    assert done.failures[0]["attempts"] == 3
    assert "attempt 3 fails on purpose" in done.failures[0]["error"]


def test_a_store_resumes_and_recovers_a_cut_line(tmp_path):
    store = tmp_path / "jobs.jsonl"
    first = run_jobs(_jobs(3), workers=1, store=store)
    lines = store.read_text().splitlines()
    assert len(lines) == 3 and first.reused == 0
    # a kill mid-write: the last line cut short
    store.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])
    seen = []
    again = run_jobs(_jobs(4), workers=1, store=store,
                     on_progress=lambda d, t: seen.append((d, t)))
    assert again.reused == 2 and seen[0] == (2, 4) and seen[-1] == (4, 4)
    assert json.dumps({k: again.results[k] for k in first.results}, sort_keys=True) == \
        json.dumps(first.results, sort_keys=True)
    assert len(store.read_text().splitlines()) == 4
    assert all(json.loads(x)["key"] for x in store.read_text().splitlines())
    # a changed input is run again, not served from the store
    changed = [Job(j.key, j.scenario, j.seed + 100) for j in _jobs(4)]
    assert run_jobs(changed, workers=1, store=store).reused == 0


def test_bad_batches_are_refused():
    with pytest.raises(ValueError, match="keys must be unique"):
        run_jobs([Job("x", SCENARIO, 0), Job("x", SCENARIO, 1)])
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        run_jobs([Job("x", SCENARIO, 0, "nope")])
    with pytest.raises(ValueError, match="backend must be"):
        run_jobs(_jobs(1), backend="cloud")
    with pytest.raises(ValueError, match="workers must be"):
        run_jobs(_jobs(1), workers=0)


def test_ctrl_c_stops_a_pool_at_once_and_the_same_command_resumes(tmp_path):
    """A real sweep on 2 workers, interrupted like Ctrl-C (SIGINT to its process group):
    it stops within seconds (exit 130), keeps what finished, and resumes from there."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "baselines.cli", "sweep", str(config), "--param",
           "governance.transaction_tax.rate=0,0.1,0.2,0.3", "--seeds", "400", "--workers",
           "2", "--out", str(out)]
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    store = out / "jobs.jsonl"
    deadline = time.time() + 120
    while (not store.exists() or store.stat().st_size < 2000) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    started = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - started < 20, "the pool kept running after Ctrl-C"
    assert proc.returncode == 130, err[-2000:]
    finished = len(store.read_text().splitlines())
    assert 0 < finished < 1600
    again = run_jobs([], store=store)  # the store still reads (no half line left behind)
    assert again.results == {}
    lines = [json.loads(x) for x in store.read_text().splitlines()]
    assert len({x["key"] for x in lines}) == len(lines)


def test_an_unreachable_ray_address_fails_at_once(tmp_path, capsys):
    """--address where nothing answers: a clear error in a second, not minutes of retries."""
    import socket
    import time

    import yaml

    from baselines.cli import main

    pytest.importorskip("ray")
    with socket.socket() as s:  # a local port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    started = time.time()
    code = main(["sweep", str(config), "--param", "governance.transaction_tax.rate=0,0.1",
                 "--seeds", "2", "--backend", "ray", "--address", f"127.0.0.1:{port}",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and time.time() - started < 30
    err = capsys.readouterr().err
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in err
    with pytest.raises(ConnectionError, match="ray start --head"):
        run_jobs(_jobs(1), backend="ray", address=f"ray://127.0.0.1:{port}")
