"""``distsafe sweep`` and :mod:`baselines.sweep`: real runs of a small scenario, no mocks.

The same sweep on one worker, a process pool of two and a local Ray gives the same per-run
metrics; a second call resumes from the job store (also after a cut line); a failing setting
is reported; a recorded sweep re-runs to the same numbers; bad paths and values exit 2 naming
the path and the keys allowed there.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as sps

import baselines.sweep as S
from baselines.compare import interval
from baselines.scenario import ConfigError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "configs" / "baseline.yaml"
PARAMS = ["governance.random_audit.probability=0,0.5", "governance.transaction_tax.rate=0,0.1"]
SEEDS = 2
PNG = b"\x89PNG\r\n\x1a\n"


def cli(*argv: object) -> int:
    """``distsafe`` with these arguments: through :func:`baselines.cli.main` once ``sweep``
    is wired into its parser, else through a parser of :func:`baselines.sweep.register`
    with ``main``'s error handling (exit 2 with one ``distsafe: error:`` line per problem)."""
    from baselines import cli as C

    argv = [str(a) for a in argv]
    sub = next(a for a in C.make_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    if "sweep" in sub.choices:
        return C.main(argv)
    parser = argparse.ArgumentParser(prog=C.PROG)
    S.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, C._Failure) as e:
        C._print_error(e)
        return 2


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """configs/baseline.yaml cut to 2 epochs."""
    data = yaml.safe_load(BASELINE.read_text())
    data["simulation"]["n_epochs"] = 2
    path = tmp_path_factory.mktemp("cfg") / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def first(config, tmp_path_factory) -> tuple[S.SweepResult, Path]:
    """The 2 x 2 sweep over 2 seeds, on one worker, with its files."""
    out = tmp_path_factory.mktemp("sweep") / "w1"
    return S.sweep(config, PARAMS, SEEDS, workers=1, out=out), out


def metrics_of(result: S.SweepResult) -> str:
    return json.dumps([{k: v for k, v in r.items() if k != "error"} for r in result.rows],
                      sort_keys=True)


# --------------------------------------------------------------------------- parsing
def test_parse_param_reads_yaml_values():
    assert S.parse_param("governance.random_audit.probability=0,0.1,0.25") == (
        "governance.random_audit.probability", [0, 0.1, 0.25])
    assert S.parse_param("governance.transaction_tax.redistribute=true,false")[1] == [True,
                                                                                      False]
    assert S.parse_param("network.topology=complete, small_world")[1] == ["complete",
                                                                         "small_world"]
    assert S.parse_param("env_params.signals=[1,2],[3, 4],'a,b'")[1] == [[1, 2], [3, 4], "a,b"]
    # YAML 1.1 leaves 1e13 (no dot) a string; an exponent is read as the number it is
    assert S.parse_param("payoff.h=1e1,-2E-1,1.5e0")[1] == [10.0, -0.2, 1.5]
    assert S.parse_param("network.topology=e5,'1e5'")[1] == ["e5", "1e5"]  # quoted: text
    assert S.parse_param("agents[2].count=1,2") == ("agents[2].count", [1, 2])
    assert S.split_path("agents[2].params.p") == ["agents", 2, "params", "p"]
    for bad, says in [("no_equals", "expected PATH=V1,V2"), ("=1", "expected PATH"),
                      ("a.b=1,,2", "value 2 is empty"), ("a=1,1.0", "given twice"),
                      ("a..b=1", "not a parameter path"), ("a=.nan", "not finite"),
                      ("a=[1,", "is not YAML")]:
        with pytest.raises(S.SweepConfigError, match=says):
            S.parse_param(bad)


def test_apply_follows_the_schema_and_creates_optional_blocks():
    base = load_scenario(BASELINE).model_dump(mode="json")
    assert base["governance"] is None
    d = S.apply(base, "governance.random_audit.probability", 0.2)
    assert d["governance"] == {"random_audit": {"probability": 0.2}}
    assert base["governance"] is None  # a copy: the input is untouched
    assert S.apply(base, "agents[2].count", 4)["agents"][2]["count"] == 4
    assert S.apply(base, "agents[0].params.propose_prob", 0.9)["agents"][0]["params"][
        "propose_prob"] == 0.9
    assert S.apply(base, "payoff.h", 3.0)["payoff"]["h"] == 3.0
    cases = {
        "governance.random_audt.probability": "governance.random_audt: unknown key; allowed: "
        "circuit_breaker, collusion_detector, monitoring, random_audit, reputation_decay, "
        "reputation_disconnect, staking, transaction_tax, vote_normalization",
        "governance.random_audit.probabilty": "governance.random_audit.probabilty: unknown "
        "key; allowed: miss_rate, mode, penalty, penalty_multiplier, probability, threshold",
        "simulaton.n_epochs": "simulaton: unknown key; allowed: agents, description, env, "
        "env_params, governance, name, network, payoff, simulation, train",
        "agents[3].count": "agents[3]: index out of range: agents has 3 entries (0 .. 2)",
        "agents.count": "agents: is a list of 3; give an index, e.g. agents[0]",
        "simulation.n_epochs.x": "simulation.n_epochs: is a value, it has no keys",
        "network[0]": "network: is a value, it has no a list",
    }
    for path, says in cases.items():
        with pytest.raises(S.SweepConfigError) as e:
            S.apply(base, path, 1)
        assert str(e.value).startswith(says), (path, str(e.value))


def test_bad_paths_and_values_exit_2_naming_them(config, tmp_path, capsys):
    out = tmp_path / "never"
    code = cli("sweep", config, "--param", "governance.random_audt.probability=0,0.1",
               "--param", "governance.random_audit.probability=0,1.5",
               "--param", "simulation.n_epochs=0,2", "--param", "payoff.s_plsu=1",
               "--seeds", 2, "--out", out)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.splitlines()
    assert all(line.startswith("distsafe: error: ") for line in lines), err
    assert ("distsafe: error: --param governance.random_audt.probability: "
            "governance.random_audt: unknown key; allowed: circuit_breaker, "
            "collusion_detector, monitoring, random_audit,") in err
    assert ("--param governance.random_audit.probability=1.5: "
            "governance.random_audit.probability: Input should be less than or equal to 1 "
            "(got 1.5)") in err
    assert "--param simulation.n_epochs=0: simulation.n_epochs: Input should be greater " \
           "than or equal to 1" in err
    assert "payoff.s_plsu: unknown key; allowed: h, rho_a, rho_b, s_minus, s_plus" in err
    assert len(lines) == 4 and not out.exists()  # every problem, before anything ran
    # usage problems: one line each, exit 2
    assert cli("sweep", config, "--seeds", 2) == 2
    assert "give at least one --param" in capsys.readouterr().err
    assert cli("sweep", config, "--param", "a=1,1", "--seeds", 2) == 2
    assert "--param a=1,1: value 1 is given twice" in capsys.readouterr().err
    assert cli("sweep", config, "--param", "payoff.h=1", "--param", "payoff.h=2",
               "--seeds", 2) == 2
    assert "given more than once" in capsys.readouterr().err
    assert cli("sweep", config, "--param", "payoff.h=1", "--seeds", 1, "--address",
               "x:1") == 2
    assert "--backend ray" in capsys.readouterr().err
    # a combination of valid values that is invalid together is named by its setting
    assert cli("sweep", config, "--param", "governance.transaction_tax.split=0.1",
               "--seeds", 1) == 2
    assert "governance.transaction_tax.rate: field required" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- running
def test_grid_seeds_and_summaries(first):
    result, _ = first
    assert [s.values for s in result.settings] == [(0, 0), (0, 0.1), (0.5, 0), (0.5, 0.1)]
    assert all(s.seeds == [42, 43] for s in result.settings)  # the same seeds everywhere
    assert result.failures == [] and len(result.rows) == 8
    for s in result.settings:
        assert s.scenario["simulation"]["n_epochs"] == 2
        assert s.scenario["governance"]["random_audit"]["probability"] == s.values[0]
        assert s.scenario["governance"]["transaction_tax"]["rate"] == s.values[1]
    summ = result.summary()
    s3 = result.settings[3]
    vals = [r["tax_revenue"] for r in result.rows if r["setting"] == 3]
    assert summ[s3.label]["tax_revenue"] == interval(vals)
    assert summ[s3.label]["tax_revenue"].mean > 0 and summ[result.settings[0].label][
        "tax_revenue"].mean == 0
    assert summ[result.settings[2].label]["audits"].mean > 0
    # seeds matter, and the same seed under a lever that changes nothing behavioural
    # (a tax) leaves toxicity as it was
    rows = {(r["setting"], r["seed"]): r for r in result.rows}
    assert rows[0, 42]["toxicity"] != rows[0, 43]["toxicity"]
    assert rows[0, 42]["toxicity"] == rows[1, 42]["toxicity"]
    assert "bad-actor payoff" in result.table().splitlines()[0]


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
def test_pairwise_tests_are_scipy_with_holm(first):
    result, _ = first
    tests = result.tests()
    assert len(tests) == len(S._TESTED) * 6  # 4 settings: 6 pairs per metric
    got = [t for t in tests if t["metric"] == "audits"]
    a = np.array(result.values(0, "audits"))
    c = np.array(result.values(2, "audits"))
    row = next(t for t in got if t["a"] == result.settings[0].label
               and t["b"] == result.settings[2].label)
    w = sps.ttest_ind(a, c, equal_var=False)
    u = sps.mannwhitneyu(a, c, alternative="two-sided")
    assert math.isclose(row["welch_p"], w.pvalue) and math.isclose(row["mw_p"], u.pvalue)
    assert row["welch_t"] == pytest.approx(w.statistic) and row["mw_u"] == u.statistic
    assert S.holm([t["welch_p"] for t in got]) == [t["welch_p_holm"] for t in got]
    # every pair of every metric (computed in batches) is what scipy gives for it alone
    index = {s.label: s.index for s in result.settings}

    def same(x: float, y: float) -> bool:
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-12)

    for t in tests:
        a = np.array(result.values(index[t["a"]], t["metric"]))
        b = np.array(result.values(index[t["b"]], t["metric"]))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = sps.ttest_ind(a, b, equal_var=False)
            u = sps.mannwhitneyu(a, b, alternative="two-sided")
        assert same(t["welch_t"], w.statistic) and same(t["welch_p"], w.pvalue), t
        assert same(t["mw_u"], u.statistic) and same(t["mw_p"], u.pvalue), t


def test_holm_by_hand():
    # m = 4: 0.005*4 = 0.02; 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> max so far 0.06
    assert S.holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]
    adj = S.holm([0.5, math.nan, 0.01])  # nan is left out: m = 2
    assert adj[0] == 0.5 and math.isnan(adj[1]) and adj[2] == 0.02
    assert S.holm([0.9, 0.8]) == [1.0, 1.0] and S.holm([]) == []  # 2 * 0.8 capped at 1
    assert S.holm([0.4, 0.3, 0.6]) == [0.9, 0.9, 0.9]  # capped at 1 before the running max


def test_one_worker_two_workers_and_ray_give_identical_runs(first, config):
    result, _ = first
    two = S.sweep(config, PARAMS, SEEDS, workers=2)
    assert metrics_of(two) == metrics_of(result)
    pytest.importorskip("ray")
    on_ray = S.sweep(config, PARAMS, SEEDS, backend="ray", workers=2)
    assert on_ray.backend == "ray" and on_ray.failures == []
    assert metrics_of(on_ray) == metrics_of(result)


def test_files(first):
    import pyarrow.parquet as pq

    result, out = first
    with (out / "runs.csv").open(newline="") as fh:
        runs = list(csv.DictReader(fh))
    assert len(runs) == 8
    assert list(runs[0])[:7] == ["setting", "label", "governance.random_audit.probability",
                                 "governance.transaction_tax.rate", "seed", "status", "error"]
    for row, r in zip(runs, result.rows):
        assert float(row["toxicity"]) == r["toxicity"] and int(row["seed"]) == r["seed"]
    table = pq.read_table(out / "runs.parquet").to_pylist()
    assert [t["welfare_per_epoch"] for t in table] == [r["welfare_per_epoch"]
                                                       for r in result.rows]
    assert [t["governance.transaction_tax.rate"] for t in table] == [0, 0, 0.1, 0.1] * 2
    with (out / "summary.csv").open(newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == 4 * len(result.metric_keys)
    with (out / "tests.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6 * len(S._TESTED)
    rec = json.loads((out / "sweep.json").read_text())
    assert rec["kind"] == "distsafe sweep" and rec["seeds"] == SEEDS
    assert rec["provenance"]["distsafe"] and "git_commit" in rec["provenance"]
    assert rec["params"] == [{"path": "governance.random_audit.probability",
                              "values": [0, 0.5]},
                             {"path": "governance.transaction_tax.rate", "values": [0, 0.1]}]
    assert rec["base"]["simulation"]["n_epochs"] == 2 and rec["base"]["governance"] is None
    assert [s["seeds"] for s in rec["settings"]] == [[42, 43]] * 4
    assert [s["scenario"] for s in rec["settings"]] == [s.scenario for s in result.settings]
    assert len(rec["runs"]) == 8 and rec["failures"] == []
    assert rec["command"].startswith("distsafe sweep ")
    for m in S.MAIN_METRICS:
        png = (out / f"heatmap_{m}.png").read_bytes()
        assert png.startswith(PNG), m
    try:
        import baselines.report  # noqa: F401
    except ImportError:
        pass
    else:
        page = (out / "report.html").read_text()
        assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page


def test_resume_reuses_finished_runs_and_recovers_a_cut_line(first, config, tmp_path):
    result, out = first
    again = S.sweep(config, PARAMS, SEEDS, workers=1, out=out)
    assert again.reused == 8 and metrics_of(again) == metrics_of(result)
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    lines = (cut / "jobs.jsonl").read_text().splitlines()
    assert len(lines) == 8
    (cut / "jobs.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:40])
    seen = []
    resumed = S.sweep(config, PARAMS, SEEDS, workers=2, out=cut,
                      on_progress=lambda d, t: seen.append((d, t)))
    assert resumed.reused == 5 and seen[0] == (5, 8) and seen[-1] == (8, 8)
    assert metrics_of(resumed) == metrics_of(result)
    assert len((cut / "jobs.jsonl").read_text().splitlines()) == 8


FAILING = '''
from baselines.scripted import Honest


class Failing(Honest):
    """Honest, until its act_arrays has been called fail_after times."""

    name = "failing"

    class Params(Honest.Params):
        fail_after: int = 1000

    def __init__(self, seed=None, **params):
        super().__init__(seed=seed, **params)
        self.calls = 0

    def act_arrays(self, obs):
        self.calls += 1
        if self.calls > self.params.fail_after:
            raise RuntimeError(f"call {self.calls} fails on purpose")
        return super().act_arrays(obs)
'''


def test_a_failing_setting_is_reported_not_dropped(tmp_path, monkeypatch, capsys):
    (tmp_path / "sweep_failing_policy.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "failing.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "failing", "agents": [{"type": "sweep_failing_policy:Failing", "count": 3},
                                      {"type": "deceptive", "count": 1}],
        "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 7}}))
    out = tmp_path / "out"
    code = cli("sweep", cfg, "--param", "agents[0].params.fail_after=1000,3", "--seeds", 2,
               "--workers", 1, "--retries", 1, "--out", out)
    std = capsys.readouterr()
    assert code == 1, std.err
    why = "RuntimeError: call 4 fails on purpose"
    failed = [line for line in std.out.splitlines() if line.startswith("FAILED: ")]
    assert [line.split(":")[1] for line in failed] == [
        " agents[0].params.fail_after=3 seed 7", " agents[0].params.fail_after=3 seed 8"]
    assert all(why in line and line.endswith("(2 attempts)") for line in failed)
    assert "distsafe: error: agents[0].params.fail_after=3: seed 8: run failed after 2 " \
           "attempt(s): " in std.err and why in std.err
    with (out / "runs.csv").open(newline="") as fh:
        runs = list(csv.DictReader(fh))
    assert [r["status"] for r in runs] == ["ok", "ok", "failed", "failed"]
    assert why in runs[2]["error"] and runs[1]["error"] == ""
    assert runs[2]["toxicity"] == "nan" and runs[0]["toxicity"] != "nan"
    rec = json.loads((out / "sweep.json").read_text())
    assert [(f["label"], f["seed"], f["attempts"]) for f in rec["failures"]] == [
        ("agents[0].params.fail_after=3", 7, 2), ("agents[0].params.fail_after=3", 8, 2)]
    assert rec["summary"]["agents[0].params.fail_after=3"]["toxicity"]["n"] == 0
    assert rec["summary"]["agents[0].params.fail_after=1000"]["toxicity"]["n"] == 2


def test_rerun_reproduces_the_recorded_runs(first, tmp_path, capsys):
    result, out = first
    again = S.rerun(out / "sweep.json", tmp_path / "again", workers=2)
    assert again.rerun_of == str(out / "sweep.json") and again.reused == 0
    assert metrics_of(again) == metrics_of(result)
    assert S.differences(json.loads((out / "sweep.json").read_text())["runs"],
                         again.rows) == []
    changed = [dict(r) for r in again.rows]
    changed[3]["toxicity"] = 0.5
    assert S.differences(result.rows, changed)[0].startswith(
        f"{result.rows[3]['label']} seed 43: toxicity differ")
    with pytest.raises(S.SweepConfigError, match="the folder of the sweep being re-run"):
        S.rerun(out / "sweep.json", out)
    # the command: a rerun prints whether every run matched
    code = cli("sweep", "--rerun", out / "sweep.json", "--workers", 1, "--out",
               tmp_path / "cli")
    std = capsys.readouterr()
    assert code == 0, std.err
    assert f"re-run of {out / 'sweep.json'}: all 8 runs identical to the recorded ones" \
        in std.out
    assert json.loads((tmp_path / "cli" / "sweep.json").read_text())["rerun_of"] == str(
        out / "sweep.json")
    assert cli("sweep", "--rerun", out / "sweep.json", "--seeds", 3) == 2
    assert "give no --seeds with it" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{}")
    assert cli("sweep", "--rerun", tmp_path / "junk.json") == 2
    assert "not a sweep record" in capsys.readouterr().err


def test_cli_prints_the_table_and_the_files(config, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli("sweep", config, "--param", "payoff.h=1,3", "--seeds", 2, "--workers", 2)
    std = capsys.readouterr()
    assert code == 0, std.err
    lines = std.out.splitlines()
    assert lines[0].split()[:3] == ["payoff.h", "bad-actor", "payoff"]
    assert [line.split()[0] for line in lines[1:3]] == ["1", "3"]
    out = Path("runs") / "sweep-baseline"
    assert lines[-1].startswith(f"{out}: runs.csv, runs.parquet, summary.csv, tests.csv, "
                                "sweep.json")
    assert not list(out.glob("heatmap_*"))  # one parameter: no heatmap
    # the same again: everything comes from the store
    assert cli("sweep", config, "--param", "payoff.h=1,3", "--seeds", 2) == 0
    assert "resumed: 4 of 4 runs were already in" in capsys.readouterr().out


def test_settings_are_the_cartesian_product_in_order(config):
    p = S.plan(config, ["payoff.h=1,2,3", ("agents[0].count", [2, 3])], 1)
    assert [s.values for s in p.settings] == list(itertools.product([1, 2, 3], [2, 3]))
    assert p.settings[5].scenario["agents"][0]["count"] == 3
    assert p.settings[5].label == "payoff.h=3, agents[0].count=3"


def test_the_command_as_a_process(config, tmp_path):
    """``python -m baselines.cli sweep``: a bad path is one line and exit 2 (no traceback),
    a good sweep exits 0 and writes its files."""
    import os
    import subprocess
    import sys

    def distsafe(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "baselines.cli", *map(str, args)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    bad = distsafe("sweep", config, "--param", "governance.random_audt.probability=0,1",
                   "--seeds", 2, "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("distsafe: error: --param governance.random_audt."
                                 "probability: governance.random_audt: unknown key; allowed: ")
    good = distsafe("sweep", config, "--param", "payoff.h=1,3", "--seeds", 1, "--workers", 1,
                    "--out", tmp_path / "good")
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "good" / "sweep.json").exists()
