"""The ``distsafe`` command line, run as real processes (``python -m baselines.cli``)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from baselines.cli import MetricsTable, ProgressBar

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "configs/baseline.yaml"


def distsafe(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "baselines.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("runs") / "baseline"
    return out, distsafe("run", BASELINE, "--out", out)


def test_run_writes_the_run_folder(baseline_run):
    out, proc = baseline_run
    assert proc.returncode == 0, proc.stderr
    for name in ("events.jsonl", "metrics.csv", "config.yaml"):
        assert (out / name).is_file(), name
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 10  # header + one row per epoch
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["name"] == "baseline" and config["simulation"]["seed"] == 42
    # stdout: the table (header + 10 rows), then the run folder
    stdout = proc.stdout.splitlines()
    assert stdout[0].split()[:6] == ["epoch", "interactions", "accepted", "toxicity",
                                     "quality_gap", "welfare"]
    assert {"payoff_honest", "payoff_opportunistic", "payoff_deceptive"} <= set(stdout[0].split())
    assert [line.split()[0] for line in stdout[1:11]] == [str(e) for e in range(10)]
    assert stdout[-1] == str(out)
    assert "Traceback" not in proc.stderr


def test_replay_reproduces_metrics_byte_for_byte(baseline_run, tmp_path):
    out, _ = baseline_run
    proc = distsafe("replay", out / "events.jsonl", "--out", tmp_path / "replayed.csv")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "replayed.csv").read_bytes() == (out / "metrics.csv").read_bytes()
    run_table = [line for line in baseline_run[1].stdout.splitlines()[:-1]]
    assert proc.stdout.splitlines() == run_table


def folder_bytes(path: Path) -> dict[str, bytes]:
    """Every file of a run folder (chunks included, the lock file excluded) by name."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_same_seed_gives_identical_runs(baseline_run, tmp_path):
    out, _ = baseline_run
    proc = distsafe("run", BASELINE, "--seed", "42", "--out", tmp_path / "again", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "again")
    assert folder_bytes(tmp_path / "again") == folder_bytes(out)
    assert any(name.startswith("events.interactions/") for name in folder_bytes(out))


def test_seed_flag_overrides_the_scenario_seed(baseline_run, tmp_path):
    out, _ = baseline_run
    proc = distsafe("run", BASELINE, "--seed", "3", "--out", tmp_path / "s3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((tmp_path / "s3" / "config.yaml").read_text())["simulation"][
        "seed"] == 3
    assert (tmp_path / "s3" / "events.jsonl").read_bytes() != (out / "events.jsonl").read_bytes()


def test_a_rerun_is_refused_unless_overwrite_which_replaces_the_folder_whole(baseline_run,
                                                                           tmp_path):
    out, _ = baseline_run
    r = tmp_path / "r"
    assert distsafe("run", BASELINE, "--out", r, "--quiet", "--seed", "1").returncode == 0
    before = folder_bytes(r)
    proc = distsafe("run", BASELINE, "--out", r, "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"distsafe: error: {r}: already holds a run; pass --overwrite to replace it or "
        "--resume to continue it"]
    assert folder_bytes(r) == before  # refused: nothing changed
    (r / ".metrics.csv.tmp").write_text("a crash's leftover")
    proc = distsafe("run", BASELINE, "--out", r, "--quiet", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert folder_bytes(r) == folder_bytes(out)  # the seed-42 run, and nothing else


def test_overwrite_never_clears_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "thesis"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.tex").write_text("precious")
    for flags in ([], ["--overwrite"], ["--resume"]):
        proc = distsafe("run", BASELINE, "--out", folder, "--quiet", *flags)
        assert proc.returncode == 2, flags
        assert proc.stderr.splitlines() == [
            f"distsafe: error: {folder}: is not a run folder (it holds sub, thesis.tex); "
            "distsafe never writes into or clears such a folder: choose another --out"]
    assert sorted(p.name for p in folder.iterdir()) == ["sub", "thesis.tex"]  # no .lock
    assert (folder / "thesis.tex").read_text() == "precious"
    proc = distsafe("run", BASELINE, "--out", folder / "thesis.tex", "--quiet")
    assert proc.returncode == 2 and "is a file, not a run folder" in proc.stderr


def _bad_config(tmp_path: Path) -> Path:
    text = (ROOT / BASELINE).read_text().replace("s_plus: 2.0", "s_plus: -1")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_config_is_one_line_exit_2(tmp_path, command):
    path = _bad_config(tmp_path)
    proc = distsafe(command, path, *(["--out", tmp_path / "o"] if command == "run" else []))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == [f"distsafe: error: {path}: payoff.s_plus: Input should be greater than "
                     "or equal to 0 (got -1)"]
    assert not (tmp_path / "o").exists()


def test_a_bad_config_leaves_an_existing_run_folder_untouched(baseline_run, tmp_path):
    out, _ = baseline_run
    before = folder_bytes(out)
    for flags in ([], ["--overwrite"], ["--resume"]):
        proc = distsafe("run", _bad_config(tmp_path), "--out", out, *flags)
        assert proc.returncode == 2 and "payoff.s_plus" in proc.stderr, flags
        assert folder_bytes(out) == before, flags


def test_missing_files_exit_2(tmp_path):
    proc = distsafe("run", tmp_path / "nope.yaml")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"distsafe: error: {tmp_path / 'nope.yaml'}: no such file"]
    proc = distsafe("replay", tmp_path / "events.jsonl")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"distsafe: error: {tmp_path / 'events.jsonl'}: no such file"]


def test_validate_reports_each_file(tmp_path):
    bad = _bad_config(tmp_path)
    proc = distsafe("validate", BASELINE, bad, "configs/network_effects.yaml")
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [f"ok {BASELINE}", "ok configs/network_effects.yaml"]
    assert len(proc.stderr.splitlines()) == 1 and str(bad) in proc.stderr
    assert distsafe("validate", *sorted(map(str, ROOT.glob("configs/*.yaml")))).returncode == 0


def test_governance_block_is_validated_like_any_config(tmp_path):
    path = tmp_path / "gov.yaml"
    path.write_text((ROOT / BASELINE).read_text().replace(
        "governance: null", "governance: {tax: 0.1, random_audit: {probability: 2}}"))
    proc = distsafe("validate", path)
    assert proc.returncode == 2
    assert sorted(proc.stderr.splitlines()) == [
        f"distsafe: error: {path}: governance.random_audit.probability: Input should be less "
        "than or equal to 1 (got 2)",
        f"distsafe: error: {path}: governance.tax: unknown key; allowed: circuit_breaker, "
        "collusion_detector, monitoring, random_audit, reputation_decay, "
        "reputation_disconnect, staking, transaction_tax, vote_normalization"]
    path.write_text((ROOT / BASELINE).read_text().replace(
        "governance: null", "governance: {transaction_tax: {rate: 0.1}}"))
    proc = distsafe("validate", path)
    assert proc.returncode == 0 and proc.stderr == ""


def test_list():
    proc = distsafe("list")
    assert proc.returncode == 0, proc.stderr
    for word in ("sandbox-v0", "honest", "opportunistic", "deceptive", "adversarial",
                 "baseline.yaml", "network_effects.yaml", "train_adversary_sandbox.yaml"):
        assert word in proc.stdout
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert "llm" in names and "rl" in names  # the extras' policy types are listed too


def test_usage_errors_exit_2():
    assert distsafe().returncode == 2
    assert distsafe("run", BASELINE, "--seed", "-1").returncode == 2


# --------------------------------------------------------------------------- in-process
def test_progress_bar_draws_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(stream, width=10)
        for t in (37, 100):
            bar(t, 100)
        bar.close()
    assert tty.getvalue() == "\r[###.......] 37/100 steps\r[##########] 100/100 steps\n"
    assert pipe.getvalue() == ""


def test_metrics_table_format():
    out = io.StringIO()
    table = MetricsTable(out)
    table({"epoch": 0, "n_interactions": 26.0, "n_accepted": 24.0, "toxicity": 0.25,
           "quality_gap": float("nan"), "welfare": 35.8254, "payoff_honest": 8.4,
           "payoff_gini": 0.1})
    assert out.getvalue().splitlines() == [
        "epoch  interactions  accepted  toxicity  quality_gap    welfare  payoff_honest",
        "    0            26        24     0.250            -     35.825          8.400",
    ]


@pytest.mark.parametrize("fmt", ["arrow", "jsonl"])
def test_resume_after_a_crash_reproduces_the_whole_run(tmp_path, fmt):
    """Cut a finished run's log mid-epoch (as a crash would), resume: identical outputs."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert distsafe("run", "configs/network_effects.yaml", "--out", str(full),
                     "--quiet", "--log-format", fmt).returncode == 0
    shutil.copytree(full, cut)
    lines = (cut / "events.jsonl").read_text().splitlines(keepends=True)
    ends = [i for i, ln in enumerate(lines) if '"type":"epoch_end"' in ln]
    # epoch 6 complete, epoch 7's chunk or lines, then a torn line
    keep = lines[:ends[7]]
    (cut / "events.jsonl").write_text("".join(keep) + lines[ends[7]][:25])
    (cut / "metrics.csv").unlink()
    res = distsafe("run", "configs/network_effects.yaml", "--out", str(cut), "--resume",
                    "--quiet")
    assert res.returncode == 0, res.stderr
    assert "resuming from epoch 7" in res.stderr
    assert folder_bytes(cut) == folder_bytes(full)


def test_resume_refuses_another_run_naming_the_field_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    assert distsafe("run", "configs/baseline.yaml", "--out", str(out), "--quiet",
                     "--seed", "1").returncode == 0
    before = folder_bytes(out)
    res = distsafe("run", "configs/baseline.yaml", "--out", str(out), "--quiet", "--seed",
                    "2", "--resume")
    assert res.returncode == 2
    assert "cannot resume: this command describes another run; seed: the run has 1, this " \
           "command has 2" in res.stderr
    assert "Traceback" not in res.stderr
    longer = tmp_path / "longer.yaml"
    longer.write_text((ROOT / BASELINE).read_text().replace("n_epochs: 10", "n_epochs: 12"))
    res = distsafe("run", longer, "--out", str(out), "--seed", "1", "--resume")
    assert res.returncode == 2
    assert "scenario.simulation.n_epochs: the run has 10, this command has 12" in res.stderr
    assert folder_bytes(out) == before


def test_resume_needs_an_existing_run_folder(tmp_path):
    res = distsafe("run", BASELINE, "--out", tmp_path / "nowhere", "--resume")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"distsafe: error: {tmp_path / 'nowhere'}: no run "
                                       "folder to resume; start the run without --resume"]
    assert not (tmp_path / "nowhere").exists()


def test_resume_completes_a_missing_run_end(baseline_run, tmp_path):
    out, _ = baseline_run
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    lines = (cut / "events.jsonl").read_bytes().splitlines(keepends=True)
    assert lines[-1].startswith(b'{"type":"run_end"')
    (cut / "events.jsonl").write_bytes(b"".join(lines[:-1]))  # killed before run_end
    res = distsafe("run", BASELINE, "--out", cut, "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "resuming from epoch 10" in res.stderr
    assert folder_bytes(cut) == folder_bytes(out)


def test_replay_picks_an_episode_of_a_multi_episode_log(tmp_path):
    from baselines.runner import rollout, write_metrics_csv
    from baselines.scripted import make_policy
    from envs.sandbox import parallel_env

    path = tmp_path / "events.jsonl"
    env = parallel_env(n_agents=4, n_epochs=2, steps_per_epoch=3, event_log=path)
    pols = {a: make_policy("honest", seed=0) for a in env.possible_agents}
    rows = [rollout(env, pols, seed=s) for s in (1, 2)]
    env.close()
    res = distsafe("replay", path)
    assert res.returncode == 2 and "choose one with episode=0..1" in res.stderr
    write_metrics_csv(rows[1], tmp_path / "live.csv")
    res = distsafe("replay", path, "--episode", "1", "--out", tmp_path / "replayed.csv")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "replayed.csv").read_bytes() == (tmp_path / "live.csv").read_bytes()
