"""``distsafe compare`` and :mod:`baselines.compare`: real runs, the CLI as a process."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

import baselines.compare as C
from baselines.compare import METRICS, VARIANT_FIGURES, compare, interval
from baselines.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "configs" / "baseline.yaml"
STATUS = ROOT / "configs" / "status_game.yaml"
STRICT = ROOT / "configs" / "strict_governance.yaml"
SEEDS = 3


def distsafe(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "baselines.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, tuple[Path, subprocess.CompletedProcess]]:
    """The same comparison with one worker and with two."""
    base = tmp_path_factory.mktemp("compare")
    out = {}
    for jobs in (1, 2):
        d = base / f"j{jobs}"
        out[jobs] = d, distsafe("compare", BASELINE, STRICT, "--seeds", SEEDS, "--jobs", jobs,
                                "--out", d, *(["--plot"] if jobs == 2 else []))
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_prints_the_table_and_the_folder(runs):
    out, proc = runs[1]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    header = lines[0]
    assert header.startswith("config")
    for m in METRICS:
        assert m.title in header, m.title
    assert lines[1].split()[0] == "baseline" and lines[2].split()[0] == "strict_governance"
    assert f"over {SEEDS} seeds" in lines[3] and "deceptive, adversarial" in lines[3]
    assert lines[-1] == str(out)
    assert "[" in lines[1] and "]" in lines[1]  # mean [lo, hi]


def test_csv_and_json_agree_and_intervals_hold(runs):
    out, _ = runs[1]
    rows = read_csv(out / "compare.csv")
    doc = json.loads((out / "compare.json").read_text())
    keys = [m["key"] for m in doc["metrics"]] + [m["key"] for m in doc["extra_metrics"]]
    assert keys[:len(METRICS)] == [m.key for m in METRICS]
    assert [(r["config"], r["metric"]) for r in rows] == [
        (c, k) for c in ("baseline", "strict_governance") for k in keys]
    assert doc["seeds"] == SEEDS
    assert [c["seeds"] for c in doc["configs"]] == [[42, 43, 44], [456, 457, 458]]
    t = sps.t.ppf(0.975, SEEDS - 1)
    for r in rows:
        res = doc["results"][r["config"]][r["metric"]]
        values = np.array([math.nan if v is None else v for v in res["values"]], dtype=float)
        assert len(values) == SEEDS
        finite = values[np.isfinite(values)]
        mean, lo, hi, n = (float(r["mean"]), float(r["lo"]), float(r["hi"]), int(r["n"]))
        assert n == res["n"] == len(finite)
        if n == 0:  # a figure the variant does not keep (the commons' own, on the sandbox)
            assert r["metric"] in {m.key for m in VARIANT_FIGURES} and math.isnan(mean)
            continue
        assert mean == pytest.approx(finite.mean(), rel=1e-12, abs=1e-12)
        assert mean == pytest.approx(res["mean"], rel=1e-12, abs=1e-12)
        half = t * finite.std(ddof=1) / math.sqrt(n)
        assert lo == pytest.approx(mean - half, abs=1e-9) and hi == pytest.approx(mean + half,
                                                                                   abs=1e-9)
        assert lo <= mean <= hi, r
    by = {(r["config"], r["metric"]): r for r in rows}
    assert float(by["baseline", "audits"]["mean"]) == 0.0  # no governance, no audits
    assert float(by["strict_governance", "audits"]["mean"]) > 0
    assert float(by["strict_governance", "tax_revenue"]["mean"]) > 0
    assert doc["failures"] == []
    series = doc["series"]["baseline"]["toxicity"]
    assert len(series["mean"]) == 10 and len(series["values"]) == SEEDS


def test_the_number_of_workers_changes_nothing(runs):
    (one, p1), (two, p2) = runs[1], runs[2]
    assert p2.returncode == 0, p2.stderr
    assert (one / "compare.csv").read_bytes() == (two / "compare.csv").read_bytes()
    assert (one / "compare.json").read_bytes() == (two / "compare.json").read_bytes()
    assert p1.stdout.splitlines()[:-1] == p2.stdout.splitlines()[:-1]


def test_plot_writes_a_png(runs):
    one, _ = runs[1]
    two, _ = runs[2]
    png = two / "compare.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not (one / "compare.png").exists()  # only with --plot


def test_the_api_mirrors_the_cli(runs):
    out, _ = runs[1]
    result = compare([BASELINE, STRICT], SEEDS, jobs=1)
    assert result.csv_text() == (out / "compare.csv").read_text()


def test_a_bad_config_is_exit_2_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASELINE.read_text().replace("s_plus: 2.0", "s_plus: -1"))
    proc = distsafe("compare", BASELINE, bad, "--seeds", 2, "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"distsafe: error: {bad}: payoff.s_plus: Input should be greater than or equal to 0 "
        "(got -1)"]
    assert proc.stdout == "" and not (tmp_path / "o").exists()
    proc = distsafe("compare", tmp_path / "missing.yaml", "--seeds", 2)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"distsafe: error: {tmp_path / 'missing.yaml'}: no such file"]


def test_default_out_folder_is_named_after_the_configs(tmp_path):
    proc = distsafe("compare", BASELINE, "--seeds", 1, "--jobs", 1, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "runs" / "compare-baseline"
    assert proc.stdout.splitlines()[-1] == str(Path("runs") / "compare-baseline")
    assert sorted(p.name for p in folder.iterdir()) == ["compare.csv", "compare.json"]
    # one seed: a mean without an interval
    row = next(r for r in read_csv(folder / "compare.csv") if r["metric"] == "toxicity")
    assert row["n"] == "1" and row["lo"] == "nan" and row["hi"] == "nan"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_run_is_reported_not_dropped(monkeypatch, jobs):
    real = C.run_one

    def flaky(scenario_json, seed, bad_actors=C.BAD_ACTORS):
        if seed == 43:
            raise RuntimeError("boom")
        return real(scenario_json, seed, bad_actors)

    monkeypatch.setattr(C, "run_one", flaky)  # forked workers inherit the patch
    result = compare([BASELINE], 3, jobs=jobs)
    assert result.failures == [{"config": "baseline", "source": str(BASELINE), "seed": 43,
                                "error": "RuntimeError: boom"}]
    stats = result.summary()["baseline"]["toxicity"]
    assert stats.n == 2 and math.isnan(result.values["baseline"]["toxicity"][1])
    assert "FAILED: baseline seed 43: RuntimeError: boom" in result.table()


def test_interval_is_nan_safe():
    s = interval([1.0, 2.0, 3.0, math.nan, math.inf])
    half = sps.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert s.n == 3 and s.mean == 2.0
    assert s.lo == pytest.approx(2 - half) and s.hi == pytest.approx(2 + half)
    one = interval([4.0, math.nan])
    assert one.n == 1 and one.mean == 4.0 and math.isnan(one.lo) and math.isnan(one.hi)
    none = interval([math.nan])
    assert none.n == 0 and math.isnan(none.mean)
    same = interval([0.0, 0.0, 0.0])
    assert (same.mean, same.lo, same.hi) == (0.0, 0.0, 0.0)


def test_scenario_objects_and_no_bad_actors():
    honest_only = load_scenario(BASELINE).model_copy(update={"name": "honest_only"})
    result = compare([honest_only], 2, jobs=1, bad_actors=("nobody",))
    s = result.summary()["honest_only"]
    assert s["bad_actor_payoff"].n == 0 and math.isnan(s["bad_actor_payoff"].mean)
    assert s["honest_payoff"].n == 2
    assert "honest_only" in result.table().splitlines()[1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="seeds"):
        compare([BASELINE], 0)
    with pytest.raises(ValueError, match="jobs"):
        compare([BASELINE], 1, jobs=0)
    with pytest.raises(C.CompareConfigError, match="given more than once"):
        compare([BASELINE, BASELINE], 1)


def test_the_readme_claim_holds_at_20_seeds():
    """README: bad actors profit without governance, not under strict governance (95 %
    intervals apart), and strict governance costs welfare."""
    result = compare([BASELINE, STATUS, STRICT], 20, jobs=2)
    s = result.summary()
    base, strict = s["baseline"], s["strict_governance"]
    assert not result.failures
    assert base["bad_actor_payoff"].lo > 0
    assert strict["bad_actor_payoff"].mean <= 0
    assert strict["bad_actor_payoff"].hi < base["bad_actor_payoff"].lo
    assert strict["welfare_per_epoch"].hi < base["welfare_per_epoch"].lo


def test_one_file_under_two_spellings_is_refused(tmp_path):
    from baselines.compare import CompareConfigError, load_configs

    with pytest.raises(CompareConfigError, match="the same file as configs/baseline.yaml"):
        load_configs(["configs/baseline.yaml", "./configs/baseline.yaml"])


def test_an_output_that_cannot_be_written_is_refused_before_any_run(tmp_path):
    (tmp_path / "out" / "compare.json").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "baselines.cli", "compare",
                           "configs/baseline.yaml", "--seeds", "2", "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2
    assert "compare.json: is not a file" in proc.stderr
    assert not (tmp_path / "out" / "compare.csv").exists()  # nothing ran, nothing written


def test_commons_scenarios_compare_with_their_own_groups_and_figures(tmp_path):
    """A commons scenario's bad actors default to its saboteurs and greedy agents, its
    honest ones to the sustainable agents, and the table adds the commons' own figures;
    a sandbox scenario beside it keeps its own groups and shows '-' for them."""
    result = compare([ROOT / "configs" / "commons_saboteur.yaml", ROOT / BASELINE], 2,
                     jobs=1, out=tmp_path)
    assert result.bad_actors == {"commons_saboteur": ("saboteur", "greedy"),
                                 "baseline": ("deceptive", "adversarial")}
    summ = result.summary()
    sab = summ["commons_saboteur"]
    assert sab["bad_actor_payoff"].n == 2 and sab["honest_payoff"].n == 2
    assert sab["bad_actor_payoff"].mean > sab["honest_payoff"].mean  # the saboteur profits
    assert sab["honesty"].mean < 1.0 and sab["survival_time"].n == 2
    assert summ["baseline"]["honesty"].n == 0
    table = result.table()
    head = table.splitlines()[0]
    assert "honesty" in head and "survival" in head
    assert "commons_saboteur: saboteur, greedy; baseline: deceptive, adversarial" in table
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["bad_actors"]["commons_saboteur"] == ["saboteur", "greedy"]
