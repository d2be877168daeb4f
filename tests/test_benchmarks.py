"""Smoke test of the step benchmark: it runs end to end and prints its table (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_step.py"


def test_bench_step_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| agents |"))
    assert "env.step agent-steps/s" in lines[header]
    assert "step_arrays agent-steps/s" in lines[header]
    assert lines[header + 1].startswith("|---")
    rows = [line for line in lines[header + 2:] if line.startswith("|")]
    assert [r.split("|")[1].strip() for r in rows] == ["10", "50"]
    assert "dict door / batched door" in proc.stdout
    data = json.loads(out.read_text())
    assert [r["n_agents"] for r in data["results"]] == [10, 50]
    for r in data["results"]:
        assert r["step_s"] > 0 and r["step_arrays_s"] > 0 and r["policy_s"] > 0


def test_bench_run_quick(tmp_path):
    """bench_run.py runs end to end on a tiny scenario and prints its table and log sizes."""
    script = ROOT / "benchmarks" / "bench_run.py"
    proc = subprocess.run([sys.executable, str(script), "--agents", "40", "--epochs", "3",
                           "--steps-per-epoch", "4", "--repeats", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for word in ("env", "sim", "rollout", "run[arrow]", "run[parquet]", "run[jsonl]",
                 "per-epoch metrics (timed inside the run):", "bytes per interaction"):
        assert word in out, word


def test_bench_llm_quick(tmp_path):
    """bench_llm.py runs end to end (server in its own process) and reports its figures."""
    pytest.importorskip("litellm")
    out = tmp_path / "llm.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_llm.py"),
                           "--agents", "4", "--steps", "2", "--latency", "0.02",
                           "--repeats", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["max_in_flight"] == 4 and data["median_s"] >= data["lower_bound_s"]


def test_bench_rl_quick(tmp_path):
    """bench_rl.py trains both sides (and the stock-policy variant) on a tiny budget and
    reports finite FPS, ratios and environment shares."""
    import math

    pytest.importorskip("stable_baselines3")
    out = tmp_path / "rl.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_rl.py"),
                           "--timesteps", "512", "--n-steps", "16", "--batch-size", "64",
                           "--n-epochs", "1", "--repeats", "1", "--stock",
                           "--population", "mixed",
                           "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "sandbox / cartpole FPS:" in proc.stdout
    data = json.loads(out.read_text())
    assert data["config"]["slots"] == 16
    assert data["config"]["n_agents"] == 20
    for side in ("sandbox", "cartpole", "sandbox-stock"):
        med = data["median"][side]
        assert math.isfinite(med["fps"]) and med["fps"] > 0
        assert 0 < med["env_share"] < 1
        assert data["repetitions"][0][side]["frames"] >= 512
    for side in ("sandbox", "sandbox-stock"):
        assert math.isfinite(data["ratio"][side]) and data["ratio"][side] > 0


def test_bench_sweep_quick(tmp_path):
    """bench_sweep.py times a tiny sweep on 1 and 2 workers and reports the speed-up (the
    same per-run metrics on both, or it exits non-zero)."""
    import math

    out = tmp_path / "sweep.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sweep.py"),
                           "--quick", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "speed-up with 2 workers:" in proc.stdout and "identical per-run metrics" in \
        proc.stdout
    data = json.loads(out.read_text())
    assert data["runs"] == 4 and len(data["times_s"]["1"]) == len(data["times_s"]["2"]) == 1
    assert math.isfinite(data["speedup"]) and data["speedup"] > 0


def test_bench_commons_quick(tmp_path):
    """bench_commons.py times the commons' step, its policies and a run, and writes JSON."""
    out = tmp_path / "commons.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_commons.py"),
                           "--quick", "--json", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data["steps"]) == {"5", "20"}
    for figures in data["steps"].values():
        assert all(v > 0 for v in figures.values())
    assert data["run"]["run_over_bare"] > 0 and "run / env" in proc.stdout
