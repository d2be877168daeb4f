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


def _edit(lines: list[str], kind: str, change) -> int:
    k = _first(lines, kind)
    obj = json.loads(lines[k])
    change(obj)
    lines[k] = json.dumps(obj, separators=(",", ":")) + "\n"
    return k + 1


MORE_CASES = {
    "payoff out of range": (lambda ls: _edit(ls, "run_start", lambda o: o["config"]["payoff"]
                                             .__setitem__("theta", 5)),
                            "config.payoff.theta", "less than or equal to 1"),
    "no steps_per_epoch": (lambda ls: _edit(ls, "run_start",
                                            lambda o: o["config"].pop("steps_per_epoch")),
                           "config.steps_per_epoch", "integer >= 1, got None"),
    "steps_per_epoch as a string": (lambda ls: _edit(
        ls, "run_start", lambda o: o["config"].__setitem__("steps_per_epoch", "5")),
        "config.steps_per_epoch", "integer >= 1, got '5'"),
    "negative edge weight": (lambda ls: _edit(ls, "epoch_end", lambda o: o["edges"]["w"]
                                              .__setitem__(0, -0.5)), "edges.w", ">= 0"),
    "self-loop edge": (lambda ls: _edit(ls, "epoch_end", lambda o: o["edges"]["j"]
                                        .__setitem__(0, o["edges"]["i"][0])), "edges",
                       "i < j"),
    "frozen as a string": (lambda ls: _edit(ls, "epoch_end", lambda o: o["state"]
                                            .__setitem__("frozen", "yes")), "state.frozen",
                           "list of 5 booleans"),
}
CASES.update(MORE_CASES)


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


def test_resume_of_a_log_in_another_json_spelling(tmp_path):
    """Any valid JSON spelling of the log is read, truncated and resumed alike."""
    out = tmp_path / "run"
    assert distsafe("run", "configs/baseline.yaml", "--out", out, "--quiet").returncode == 0
    full_metrics = (out / "metrics.csv").read_bytes()
    lines = (out / "events.jsonl").read_text().splitlines()
    ends = [i for i, ln in enumerate(lines) if '"epoch_end"' in ln]
    spaced = [json.dumps(json.loads(ln), indent=None) for ln in lines[:ends[4] + 2]]
    (out / "events.jsonl").write_text("\n".join(spaced) + "\n")
    res = distsafe("run", "configs/baseline.yaml", "--out", out, "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "resuming from epoch 5" in res.stderr
    assert (out / "metrics.csv").read_bytes() == full_metrics
    rep = distsafe("replay", out / "events.jsonl", "--out", tmp_path / "again.csv")
    assert rep.returncode == 0 and (tmp_path / "again.csv").read_bytes() == full_metrics


def test_a_tampered_identity_hash_is_refused(tmp_path):
    out = tmp_path / "run"
    assert distsafe("run", "configs/baseline.yaml", "--out", out, "--quiet").returncode == 0
    lines = (out / "events.jsonl").read_text().splitlines(keepends=True)
    _edit(lines, "run_start", lambda o: o["identity"].__setitem__("hash", "0" * 16))
    (out / "events.jsonl").write_text("".join(lines[:-3]))
    proc = distsafe("run", "configs/baseline.yaml", "--out", out, "--resume", "--quiet")
    assert proc.returncode == 2 and "identity.hash: does not match" in proc.stderr


def test_a_log_that_never_got_its_first_line_starts_over(tmp_path):
    out = tmp_path / "run"
    assert distsafe("run", "configs/baseline.yaml", "--out", out, "--quiet").returncode == 0
    full = files(out)
    (out / "events.jsonl").write_bytes(b"")  # killed right after opening the log
    (out / "metrics.csv").unlink()
    proc = distsafe("run", "configs/baseline.yaml", "--out", out, "--resume", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "nothing logged yet; starting from epoch 0" in proc.stderr
    assert files(out) == full


def test_the_printed_resume_command_works_for_a_scenario_without_a_seed(tmp_path):
    config = tmp_path / "noseed.yaml"
    config.write_text(SLOW.replace(", seed: 3", ""))
    out = tmp_path / "run"
    proc = start("run", config, "--out", out, "--quiet")
    wait_for_epochs(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    hint = err.split("resume with: ")[1].strip()
    assert "--seed" in hint
    res = subprocess.run([sys.executable, "-m", "baselines.cli", *hint.split()[1:]], cwd=ROOT,
                         env=environ(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr


BAD_POLICIES = """
import numpy as np
from baselines.policy import Policy


class OutOfRange(Policy):
    def act_arrays(self, obs):
        out = np.zeros((len(obs), len(obs.nvec)), dtype=np.int64)
        out[:, 2] = 7  # effort has 5 levels
        return out


class Raises(Policy):
    def act_arrays(self, obs):
        raise RuntimeError("my bug")


class LateRaises(Policy):
    calls = 0

    def act_arrays(self, obs):
        self.calls += 1
        if self.calls > 2:
            raise RuntimeError("my late bug")
        return np.zeros((len(obs), len(obs.nvec)), dtype=np.int64)
"""


@pytest.mark.parametrize("cls, message", [
    # caught before the run starts: preflight lets every policy act on the first observation
    ("OutOfRange", "agents[0].type: 'badpol:OutOfRange' fails on the first observation of "
                   "sandbox-v0: PolicyError: policy OutOfRange (agent_0, agent_1) at step 0: "
                   "act_arrays must return dimension 2 in 0..4, got 7 for agent_0"),
    ("Raises", "agents[0].type: 'badpol:Raises' fails on the first observation of sandbox-v0: "
               "RuntimeError: my bug"),
    # caught during the run
    ("LateRaises", "policy LateRaises (agent_0, agent_1) failed at step 2: RuntimeError: my "
                   "late bug"),
])
def test_a_broken_policy_is_one_line_naming_it(tmp_path, cls, message):
    (tmp_path / "badpol.py").write_text(BAD_POLICIES)
    config = tmp_path / "bad.yaml"
    config.write_text(f"name: bad\nagents: [{{type: 'badpol:{cls}', count: 2}}, "
                      "{type: honest, count: 2}]\n"
                      "simulation: {n_epochs: 2, steps_per_epoch: 3, seed: 1}\n")
    env = {**environ(), "PYTHONPATH": f"{ROOT}:{tmp_path}"}
    proc = subprocess.run(command("run", config, "--out", tmp_path / "run", "--quiet"),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (1, 2), proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message in lines[0]


def test_a_governance_summary_that_is_not_finite_numbers_is_refused(tmp_path):
    out = tmp_path / "run"
    proc = distsafe("run", "configs/status_game.yaml", "--out", out, "--quiet",
                    "--log-format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    lines = (out / "events.jsonl").read_text().splitlines(keepends=True)
    for value in ("NaN", '"3"'):
        changed = list(lines)
        k = next(i for i, ln in enumerate(changed) if '"summary":{"' in ln
                 and '"type":"governance"' in ln)
        obj = json.loads(changed[k])
        key = next(iter(obj["data"]["summary"]))
        changed[k] = changed[k].replace(f'"{key}":{json.dumps(obj["data"]["summary"][key])}',
                                        f'"{key}":{value}', 1)
        (tmp_path / "t.jsonl").write_text("".join(changed))
        res = distsafe("replay", tmp_path / "t.jsonl")
        assert res.returncode == 2, value
        assert f"t.jsonl:{k + 1}: data.summary: must map names to finite numbers" in res.stderr


def test_a_torn_last_line_is_one_warning_line_on_replay(tmp_path):
    out = tmp_path / "run"
    assert distsafe("run", "configs/baseline.yaml", "--out", out, "--quiet").returncode == 0
    data = (out / "events.jsonl").read_bytes()
    (out / "events.jsonl").write_bytes(data[:-30])
    res = distsafe("replay", out / "events.jsonl")
    assert res.returncode == 0
    lineno, size = data.count(b"\n"), len(data.splitlines()[-1]) - 29
    assert res.stderr.splitlines() == [
        f"distsafe: warning: {out / 'events.jsonl'}:{lineno}: ignoring a truncated "
        f"final line ({size} bytes)"]
