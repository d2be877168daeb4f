"""``distsafe tournament`` run as a real process (``python -m baselines.cli``), real files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baselines.strategies import CLASSIC
from baselines.tournament import round_robin

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def distsafe(*args: str, cwd: Path = ROOT, code: str | None = None
             ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    head = ["-c", code] if code else ["-m", "baselines.cli"]
    return subprocess.run([sys.executable, *head, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("tournament")
    return cwd, distsafe("tournament", "--plot", cwd=cwd)


def test_default_run_prints_the_ranked_classic_seven(default_run):
    cwd, proc = default_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    expected = round_robin(CLASSIC, turns=200, repetitions=10, seed=0)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("round robin of 7 strategies: 200 turns x 10 repetitions")
    assert lines[1].startswith("| rank | strategy | mean payoff |")
    rows = [ln.split("|")[1:3] for ln in lines[3:10]]
    assert [int(r[0]) for r in rows] == list(range(1, 8))
    assert [r[1].strip() for r in rows] == expected.ranked_names
    assert sorted(r[1].strip() for r in rows) == sorted(CLASSIC)
    assert "\n".join(lines[1:10]) == expected.table()
    assert lines[-1] == str(Path("runs") / "tournament")


def test_default_run_writes_the_csv_files_and_png(default_run):
    cwd, proc = default_run
    out = cwd / "runs" / "tournament"
    expected = round_robin(CLASSIC, turns=200, repetitions=10, seed=0)
    table = read_csv(out / "tournament.csv")
    assert table[0] == ["rank", "strategy", "mean_payoff", "cooperation", "wins", *CLASSIC]
    assert len(table) == 1 + 7
    assert [row[1] for row in table[1:]] == expected.ranked_names
    for row in table[1:]:
        i = expected.names.index(row[1])
        assert float(row[2]) == expected.mean_payoff[i]
        assert [float(v) for v in row[5:]] == expected.payoff_matrix[i].tolist()
    matrix = read_csv(out / "payoff_matrix.csv")
    assert matrix[0] == ["strategy", *CLASSIC] and len(matrix) == 1 + 7
    assert [row[0] for row in matrix[1:]] == CLASSIC
    assert [[float(v) for v in row[1:]] for row in matrix[1:]] == \
        expected.payoff_matrix.tolist()
    png = out / "payoff_matrix.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 10_000


def test_options_reach_the_round_robin(tmp_path):
    proc = distsafe("tournament", "--strategies", "tft", "AD", "GTFT", "--turns", "30",
                    "--repetitions", "3", "--noise", "0.05", "--seed", "4", "--payoffs",
                    "llm_study", "--out", tmp_path / "t")
    assert proc.returncode == 0, proc.stderr
    expected = round_robin(["tft", "AD", "GTFT"], turns=30, repetitions=3, noise=0.05, seed=4,
                           payoffs="llm_study")
    assert expected.table() in proc.stdout
    assert "(R, S, T, P) = (2, -1, 3, 0)" in proc.stdout
    matrix = read_csv(tmp_path / "t" / "payoff_matrix.csv")
    assert [[float(v) for v in row[1:]] for row in matrix[1:]] == \
        expected.payoff_matrix.tolist()
    assert not (tmp_path / "t" / "payoff_matrix.png").exists()


def test_custom_payoffs(tmp_path):
    proc = distsafe("tournament", "--strategies", "AC", "AD", "--turns", "5",
                    "--payoffs", "4,1,6,2", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    matrix = read_csv(tmp_path / "payoff_matrix.csv")
    assert matrix == [["strategy", "AC", "AD"], ["AC", "4.0", "1.0"], ["AD", "6.0", "2.0"]]


@pytest.mark.parametrize(("args", "needle"), [
    (["--strategies", "TFT", "tit4tat"], "--strategies: unknown strategy 'tit4tat'; known: "),
    (["--payoffs", "3,0,5"],
     "--payoffs: expected a preset (classic, llm_study, prison_years) or four"),
    (["--payoffs", "generous"], "got 'generous'"),
    (["--noise", "1.5"], "--noise: expected a probability in [0, 1], got 1.5"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    proc = distsafe("tournament", *args, "--out", tmp_path / "t")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("distsafe: error: ")
    assert needle in proc.stderr
    if "tit4tat" in needle:  # the known names are listed
        assert "tit_for_tat (TFT)" in proc.stderr and "always_defect (AD)" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "t").exists()


def test_usage_errors_exit_2(tmp_path):
    proc = distsafe("tournament", "--turns", "0")
    assert proc.returncode == 2 and "expected a positive integer, got 0" in proc.stderr
    target = tmp_path / "file"
    target.write_text("x")
    proc = distsafe("tournament", "--strategies", "AC", "--out", target)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_plot_without_matplotlib_is_a_clear_error(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from baselines.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = distsafe("tournament", "--plot", "--out", tmp_path / "t", code=code)
    assert proc.returncode == 2
    assert "--plot needs matplotlib: pip install 'distsafe[analysis]'" in proc.stderr
    assert not (tmp_path / "t").exists()


# --------------------------------------------------------------------------- distsafe evolve
def test_evolve_moran_one_run_writes_the_shares(tmp_path):
    from baselines.evolution import moran_process

    proc = distsafe("evolve", "--moran", "--strategies", "AD", "AC", "--counts", "2", "8",
                    "--seed", "3", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = moran_process(["AD", "AC"], [2, 8], seed=3)
    assert proc.stdout.startswith(f"Moran process from [2, 8] (N = 10): {expected.summary()}")
    rows = read_csv(tmp_path / "evolution.csv")
    assert rows[0] == ["step", "AD", "AC"] and len(rows) == expected.steps + 2
    assert [[float(v) for v in r[1:]] for r in rows[1:]] == expected.shares.tolist()
    assert proc.stdout.splitlines()[-1] == str(tmp_path / "evolution.csv")


def test_evolve_moran_fixation_table(tmp_path):
    proc = distsafe("evolve", "--moran", "--strategies", "AD", "AC", "--counts", "1", "9",
                    "--runs", "300", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| AD | 1 |" in proc.stdout and "fixation probability" in proc.stdout
    rows = read_csv(tmp_path / "fixation.csv")
    assert rows[0] == ["strategy", "initial", "fixation_probability", "stderr", "neutral"]
    assert [r[0] for r in rows[1:]] == ["AD", "AC"]
    assert sum(float(r[2]) for r in rows[1:]) == pytest.approx(1.0)
    assert float(rows[1][2]) > 0.2  # AD invades AC (neutral: 0.1)


def test_evolve_imitation_and_errors(tmp_path):
    proc = distsafe("evolve", "--imitation", "--counts", "90", "10", "--network",
                    "{topology: small_world, k: 6}", "--rule", "best", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "TFT took every agent" in proc.stdout
    rows = read_csv(tmp_path / "evolution.csv")
    assert rows[0] == ["generation", "TFT", "AD"] and rows[1][1:] == ["0.9", "0.1"]
    assert rows[-1][1:] == ["1.0", "0.0"]
    for args, needle in ((["--imitation", "--beta", "-1"], "--beta: beta must be a finite"),
                         (["--imitation", "--network", "hexagon"],
                          "--network: topology: Input should be"),
                         (["--moran", "--counts", "3"], "--counts: expected one count per "
                                                        "strategy (2), got 1"),
                         (["--moran", "--runs", "5", "--mutation", "0.1"],
                          "--mutation: only for one run")):
        proc = distsafe("evolve", *args, "--out", tmp_path / "bad")
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and not (tmp_path / "bad").exists()
