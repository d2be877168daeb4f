"""The run path attacked as a red team would: two writers, signals, SIGKILL, a full disk,
and logs that were tampered with. Every run here is a real ``distsafe`` process."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baselines.runner import metrics_csv_text, metrics_from_events

ROOT = Path(__file__).resolve().parent.parent

# long enough (a few seconds) to be interrupted mid-run
SLOW = """\
name: slow
agents:
  - {type: honest, count: 150}
  - {type: deceptive, count: 50}
network: {topology: small_world, k: 6, dynamic: true}
simulation: {n_epochs: 300, steps_per_epoch: 10, seed: 3}
"""


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "baselines.cli", *map(str, args)]


def environ() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def distsafe(*args: object, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), cwd=ROOT, env=environ(), capture_output=True,
                          text=True, timeout=180, **kw)


def start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(command(*args), cwd=ROOT, env=environ(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_epochs(out: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Block until the folder holds the slow run with ``n`` epoch_end lines in its log."""
    deadline = time.monotonic() + timeout
    log = out / "events.jsonl"
    while time.monotonic() < deadline:
        try:
            ours = "name: slow" in (out / "config.yaml").read_text()
            if ours and log.read_bytes().count(b'"type":"epoch_end"') >= n:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError("the run did not reach the epoch in time")


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> tuple[Path, Path]:
    """The slow scenario and an uninterrupted run of it."""
    root = tmp_path_factory.mktemp("slow")
    config = root / "slow.yaml"
    config.write_text(SLOW)
    full = root / "full"
    proc = distsafe("run", config, "--out", full, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return config, full


# --------------------------------------------------------------------------- two writers
def test_a_second_concurrent_writer_fails_at_once(slow, tmp_path):
    config, full = slow
    out = tmp_path / "run"
    first = start("run", config, "--out", out, "--quiet")
    wait_for_epochs(out, 1, first)
    for flags in ([], ["--overwrite"], ["--resume"]):
        t0 = time.monotonic()
        second = distsafe("run", config, "--out", out, "--quiet", *flags)
        assert second.returncode == 2, flags
        assert f"another distsafe run (pid {first.pid}) is writing to this folder" \
            in second.stderr, (flags, second.stderr)
        assert time.monotonic() - t0 < 20
    assert first.wait(timeout=120) == 0, first.communicate()
    assert files(out) == files(full)  # the first run's folder is whole and alone
    assert (out / "metrics.csv").read_bytes() == metrics_csv_text(
        metrics_from_events(out / "events.jsonl")).encode()


# --------------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_keeps_its_epochs_says_how_to_resume_and_resumes(slow, tmp_path,
                                                                            sig):
    config, full = slow
    out = tmp_path / "run"
    proc = start("run", config, "--out", out, "--quiet")
    wait_for_epochs(out, 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"resume with: distsafe run {config} --out {out} --resume" in err
    rows = (out / "metrics.csv").read_text().splitlines()
    full_rows = (full / "metrics.csv").read_text().splitlines()
    assert 1 + 2 <= len(rows) < len(full_rows)
    assert rows == full_rows[:len(rows)]  # complete epochs, exactly
    logged = (out / "events.jsonl").read_bytes().count(b'"type":"epoch_end"')
    assert logged >= len(rows) - 1  # the log may hold one epoch more than the csv
    res = distsafe("run", config, "--out", out, "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    assert f"resuming from epoch {logged}" in res.stderr
    assert files(out) == files(full)


def test_sigkill_during_an_overwrite_leaves_only_the_new_run_which_resumes(slow, tmp_path):
    config, full = slow
    out = tmp_path / "run"
    shutil.copytree(ROOT / "configs", tmp_path / "c")  # any other run will do as the old one
    assert distsafe("run", tmp_path / "c" / "baseline.yaml", "--out", out,
                    "--quiet").returncode == 0
    proc = start("run", config, "--out", out, "--quiet", "--overwrite")
    wait_for_epochs(out, 2, proc)
    proc.kill()
    proc.wait()
    assert not (out / "metrics.csv").exists()  # no stale metrics of the old run
    assert "name: slow" in (out / "config.yaml").read_text()
    res = distsafe("run", config, "--out", out, "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    assert files(out) == files(full)


# --------------------------------------------------------------------------- OS errors
def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_is_one_line_exit_1_and_the_run_resumes(slow, tmp_path):
    config, full = slow
    out = tmp_path / "run"
    proc = subprocess.run(command("run", config, "--out", out, "--quiet"), cwd=ROOT,
                          env=environ(), capture_output=True, text=True, timeout=180,
                          preexec_fn=_limit_file_size(300_000))
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("distsafe: error: "), proc.stderr
    assert "File too large" in lines[0] and "resume with:" in lines[0]
    res = distsafe("run", config, "--out", out, "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    assert files(out) == files(full)


def test_an_out_that_cannot_be_created_is_one_line_exit_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = distsafe("run", "configs/baseline.yaml", "--out", blocker / "run")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"distsafe: error: {blocker / 'run'}") \
        or proc.stderr.startswith(f"distsafe: error: {blocker}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- tampered logs
@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jsonl") / "run"
    proc = distsafe("run", "configs/baseline.yaml", "--out", out, "--quiet",
                    "--log-format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    return out


def _tamper(src: Path, dst: Path, edit) -> tuple[Path, int]:
    """Copy a run's log, apply ``edit(lines) -> line number changed``."""
    lines = (src / "events.jsonl").read_text().splitlines(keepends=True)
    lineno = edit(lines)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "events.jsonl").write_text("".join(lines))
    return dst / "events.jsonl", lineno


def _first(lines: list[str], kind: str) -> int:
    return next(i for i, ln in enumerate(lines) if f'"type":"{kind}"' in ln)


def _edit_columns(lines: list[str], change) -> int:
    k = _first(lines, "interactions")
    obj = json.loads(lines[k])
    change(obj["columns"])
    lines[k] = json.dumps(obj, separators=(",", ":")) + "\n"
    return k + 1


CASES = {
    "duplicated line": (lambda ls: ls.insert(_first(ls, "interactions") + 1,
                                             ls[_first(ls, "interactions")]) or
                        _first(ls, "interactions") + 2, "step", "duplicated or out-of-order"),
    "changed epoch": (lambda ls: _set(ls, "epoch_end", "epoch", 5), "epoch",
                      "expected epoch 0"),
    "missing p": (lambda ls: _edit_columns(ls, lambda c: c.pop("p")), "columns.p",
                  "Field required"),
    "accepted as a string": (lambda ls: _edit_columns(
        ls, lambda c: c.__setitem__("accepted", ["false"] * len(c["accepted"]))),
        "columns.accepted.0", "valid boolean"),
    "accepted as 0/1": (lambda ls: _edit_columns(
        ls, lambda c: c.__setitem__("accepted", [0] * len(c["accepted"]))),
        "columns.accepted.0", "valid boolean"),
    "v out of range": (lambda ls: _edit_columns(ls, lambda c: c["v"].__setitem__(0, 300)),
                       "columns.v", "must be +1 or -1"),
    "huge integer": (lambda ls: _edit_columns(
        ls, lambda c: c["initiator"].__setitem__(0, 2**80)), "columns.initiator",
        "out of range"),
    "p as a string": (lambda ls: _edit_columns(ls, lambda c: c["p"].__setitem__(0, "0.5")),
                      "columns.p.0", "valid number"),
    "unknown agent": (lambda ls: _edit_columns(
        ls, lambda c: c["counterparty"].__setitem__(0, 99)), "columns.counterparty",
        "agent index in 0..4"),
    "step as a float": (lambda ls: _set(ls, "interactions", "step", 1.0), "step",
                        "valid integer"),
    "event after run_end": (lambda ls: ls.append(ls[_first(ls, "epoch_end")]) or len(ls),
                            None, "after run_end"),
}


def _set(lines: list[str], kind: str, key: str, value) -> int:
    k = _first(lines, kind)
    obj = json.loads(lines[k])
    obj[key] = value
    lines[k] = json.dumps(obj, separators=(",", ":")) + "\n"
    return k + 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_replay_of_a_tampered_log_exits_2_naming_line_and_field(jsonl_run, tmp_path, case):
    edit, field, problem = CASES[case]
    path, lineno = _tamper(jsonl_run, tmp_path / "t", edit)
    proc = distsafe("replay", path)
    assert proc.returncode == 2, (case, proc.stdout[-300:])
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    where = f"distsafe: error: {path}:{lineno}: " + (f"{field}: " if field else "")
    assert lines[0].startswith(where), (lines[0], where)
    assert problem in lines[0], lines[0]


def test_resume_from_a_tampered_log_is_refused_cleanly(jsonl_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(jsonl_run, out)
    lines = (out / "events.jsonl").read_text().splitlines(keepends=True)
    _edit_columns(lines, lambda c: c["v"].__setitem__(0, 300))
    (out / "events.jsonl").write_text("".join(lines[:-3]))  # and cut short
    before = files(out)
    proc = distsafe("run", "configs/baseline.yaml", "--out", out, "--resume", "--quiet")
    assert proc.returncode == 2
    assert "cannot resume:" in proc.stderr and "columns.v: must be +1 or -1" in proc.stderr
    assert files(out) == before


def test_a_missing_or_corrupt_chunk_is_named(tmp_path):
    out = tmp_path / "run"
    assert distsafe("run", "configs/baseline.yaml", "--out", out, "--quiet").returncode == 0
    chunks = sorted((out / "events.interactions").iterdir())
    chunks[1].write_bytes(chunks[1].read_bytes()[:100])
    proc = distsafe("replay", out / "events.jsonl")
    assert proc.returncode == 2
    assert f"chunk file {chunks[1]} is not a readable arrow file" in proc.stderr
    chunks[1].unlink()
    proc = distsafe("replay", out / "events.jsonl")
    assert proc.returncode == 2 and f"chunk file {chunks[1]} is missing" in proc.stderr


@pytest.mark.parametrize("fmt", ["arrow", "parquet", "jsonl"])
def test_every_log_format_replays_to_the_live_metrics(tmp_path, fmt):
    out = tmp_path / fmt
    proc = distsafe("run", "configs/network_effects.yaml", "--out", out, "--quiet",
                    "--log-format", fmt)
    assert proc.returncode == 0, proc.stderr
    res = distsafe("replay", out / "events.jsonl", "--out", tmp_path / "replayed.csv")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "replayed.csv").read_bytes() == (out / "metrics.csv").read_bytes()


def test_chunks_are_readable_as_one_table_by_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    out = tmp_path / "run"
    assert distsafe("run", "configs/baseline.yaml", "--out", out, "--quiet").returncode == 0
    frames = [pd.read_feather(p) for p in sorted((out / "events.interactions").iterdir())]
    table = pd.concat(frames, ignore_index=True)
    from envs.core.events import replay

    batch = replay(out / "events.jsonl").interactions()
    assert len(table) == len(batch)
    assert (table["p"].to_numpy() == batch.p).all()


def test_version_and_legend(tmp_path):
    proc = distsafe("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("distsafe ")
    proc = distsafe("run", "configs/baseline.yaml", "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    assert "'-' (nan): undefined" in proc.stdout
