"""``distsafe bench``: suites of scenarios with a focal policy in k seats, real runs (no
mocks): schema errors with paths, the focal rule, scripted and trained-RL focal policies
through the command, intervals, files, ``--rerun``, resume, local vs Ray, failed runs."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from baselines import suite as S
from baselines.cli import _Failure
from baselines.scenario import ConfigError
from baselines.scripted import Honest

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "configs" / "suites"


def _tiny(name: str, epochs: int = 4, steps: int = 10, seed: int = 3, **extra) -> dict:
    return {"name": name, "agents": [{"type": "honest", "count": 3},
                                     {"type": "opportunistic", "count": 1}],
            "network": {"topology": "complete"},
            "simulation": {"n_epochs": epochs, "steps_per_epoch": steps, "seed": seed},
            **extra}


AUDIT = {"random_audit": {"probability": 0.5, "penalty": 2.0, "mode": "truth"},
         "transaction_tax": {"rate": 0.1}}
SMALL = {"name": "small", "seeds": 3, "scenarios": [
    {"scenario": _tiny("free")},
    {"scenario": _tiny("free"), "label": "governed", "overrides": {"governance": AUDIT}},
]}


def _write(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bench(*argv: str) -> int:
    """``distsafe bench ...`` through a parser built from :func:`baselines.suite.register`,
    errors handled as ``distsafe``'s main does (exit 2)."""
    parser = argparse.ArgumentParser(prog="distsafe")
    S.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    try:
        return args.func(args)
    except (ConfigError, _Failure) as e:
        for line in str(e).splitlines():
            print(f"distsafe: error: {line}")
        return 2


def _same(a: dict, b: dict) -> bool:
    """Per-run figures equal, exactly (nan equal to nan, as bench.json writes it: null)."""
    return S._jsonable(a) == S._jsonable(b)


def _runs(folder: Path) -> dict:
    return json.loads((folder / "bench.json").read_text())["runs"]


# --------------------------------------------------------------------------- schema
def test_schema_errors_name_their_paths(tmp_path):
    bad = {"name": "bad name", "seeds": 0, "extra": 1, "scenarios": [
        {"config": "x.yaml", "scenario": {"name": "y"}},
        {"scenario": {"name": "z"}, "seeds": [1, 1]},
        {"config": "x.yaml", "focal_entry": -1, "label": "a b"},
    ]}
    with pytest.raises(ConfigError) as err:
        S.load_suite(_write(tmp_path, "bad.yaml", bad))
    text = str(err.value)
    for path in ("name:", "seeds:", "extra: unknown key", "scenarios[0]: give exactly one of",
                 "scenarios[1].seeds: seeds must be distinct", "scenarios[2].focal_entry:",
                 "scenarios[2].label:"):
        assert path in text, (path, text)
    assert all(line.startswith(str(tmp_path / "bad.yaml")) for line in text.splitlines())
    with pytest.raises(ConfigError, match="scenarios: field required"):
        S.parse_suite({"name": "x"}, "s.yaml")
    (tmp_path / "syntax.yaml").write_text("name: [x\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: YAML syntax error"):
        S.load_suite(tmp_path / "syntax.yaml")


def test_scenario_problems_are_found_before_anything_runs(tmp_path):
    suite = {"name": "broken", "scenarios": [
        {"config": "missing.yaml"},
        {"scenario": _tiny("dup")},
        {"scenario": _tiny("dup")},
        {"scenario": _tiny("short"), "label": "over",
         "overrides": {"simulation": {"n_epochs": 0}}},
        {"scenario": {**_tiny("inl"), "agents": [{"type": "honst", "count": 2}]}},
        {"scenario": _tiny("few"), "label": "few", "focal_entry": "opportunistic"},
    ]}
    path = _write(tmp_path, "broken.yaml", suite)
    with pytest.raises(S.SuiteError) as err:
        S.bench(path, "deceptive", 2, out=tmp_path / "out")
    text = str(err.value)
    assert "scenarios[0].config: no such file" in text
    assert "scenarios[2].label: 'dup' is also scenarios[1]'s label" in text
    assert "scenarios[3].overrides.simulation.n_epochs: (over)" in text
    assert "scenarios[4].scenario.agents[0].type: unknown agent type 'honst'" in text
    assert "scenarios[5].focal_entry: few: focal_entry 'opportunistic': the entry has 1 agents" \
        in text
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_the_focal_rule():
    s = {"agents": [{"type": "honest", "count": 2, "params": {}},
                    {"type": "opportunistic", "count": 1, "params": {}},
                    {"type": "deceptive", "count": 1, "params": {}}]}
    spec = {"type": "adversarial", "params": {}}
    # default: the last k seats, taken from the trailing entries
    out, seats = S.with_focal(s, spec, 2)
    assert [(a["type"], a["count"]) for a in out["agents"]] == [("honest", 2),
                                                                ("adversarial", 2)]
    assert seats == [2, 3]
    # focal_entry (index or type): the last k seats of that entry, the order kept
    out, seats = S.with_focal(s, spec, 1, 0)
    assert [(a["type"], a["count"]) for a in out["agents"]] == [
        ("honest", 1), ("adversarial", 1), ("opportunistic", 1), ("deceptive", 1)]
    assert seats == [1]
    out, seats = S.with_focal(s, spec, 1, "deceptive")
    assert out["agents"][-1]["type"] == "adversarial" and seats == [3]
    with pytest.raises(ValueError, match="at least one must stay"):
        S.with_focal(s, spec, 4)
    with pytest.raises(ValueError, match="no agents entry of that type"):
        S.with_focal(s, spec, 1, "random")
    assert s["agents"][0]["count"] == 2  # the input is not changed


def test_focal_specs():
    f = S.parse_focal("deceptive")
    assert f.specs["*"]["type"] == "deceptive" and f.slug == "deceptive"
    f = S.parse_focal("baselines.scripted:Honest")
    assert f.specs["*"]["type"] == "baselines.scripted:Honest" and f.slug == "Honest"
    f = S.parse_focal("{type: honest, params: {propose_prob: 0.1}}")
    assert f.specs["*"]["params"]["propose_prob"] == 0.1
    f = S.parse_focal('{"sandbox": "deceptive", "dilemma": {"type": "always_defect"}}')
    assert f.for_variant("dilemma")["type"] == "always_defect"
    for bad, msg in (("rl:/no/such/model.zip", "no such model file"),
                     ("{type: honest, count: 2}", "no count in a focal spec"),
                     ("{sandbox: honest, foo: 1}", "a mapping is an agents entry"),
                     ("honst", "unknown agent type 'honst'")):
        with pytest.raises(S.FocalError, match=msg):
            S.parse_focal(bad)


def test_shipped_suites_resolve():
    sandbox = S.resolve_suite(S.load_suite(SUITES / "sandbox.yaml"), SUITES / "sandbox.yaml",
                              S.parse_focal("deceptive"), check=False)
    labels = [s.label for s in sandbox]
    for ref in ("baseline", "status_game", "strict_governance", "network_effects"):
        assert ref in labels and any(x != ref and x.startswith(ref) for x in labels)
    strict = next(s for s in sandbox if s.label == "baseline_strict")
    assert strict.scenario["governance"]["random_audit"]["probability"] == 0.25
    assert next(s for s in sandbox if s.label == "baseline").scenario["governance"] is None
    assert all(len(s.seeds) == 5 for s in sandbox)
    dilemma = S.resolve_suite(S.load_suite(SUITES / "dilemma.yaml"), SUITES / "dilemma.yaml",
                              S.parse_focal("always_defect"), check=False)
    assert {s.variant for s in dilemma} == {"dilemma"} and len(dilemma) >= 2
    mixed = S.load_suite(SUITES / "mixed.yaml")
    with pytest.raises(S.SuiteError) as err:  # one sandbox policy cannot play the dilemma
        S.resolve_suite(mixed, SUITES / "mixed.yaml", S.parse_focal("deceptive"))
    lines = err.value.lines()
    assert sum("cannot play it: 'deceptive' plays sandbox, not dilemma" in x
               for x in lines) == 2
    assert "dilemma_network_audited" in "\n".join(lines)
    assert "one policy per variant" in lines[-1]


# --------------------------------------------------------------------------- the command
def test_scripted_focal_table_files_rerun_and_resume(tmp_path, capsys):
    path = _write(tmp_path, "small.yaml", SMALL)
    out = tmp_path / "out"
    assert _bench(str(path), "--focal", "deceptive", "--out", str(out), "--workers", "1") == 0
    printed = capsys.readouterr().out
    rows = {line.split()[0]: line for line in printed.splitlines() if line.strip()}
    assert set(rows) >= {"scenario", "free", "governed", "overall"}
    assert rows["free"].count("[") == 8  # every figure with its interval
    assert "focal return" in rows["scenario"] and "focal penalties" in rows["scenario"]
    names = {p.name for p in out.iterdir()}
    assert {"bench.csv", "summary.csv", "bench.json", "jobs.jsonl"} <= names
    data = json.loads((out / "bench.json").read_text())
    assert data["provenance"]["distsafe"] and "git_commit" in data["provenance"]
    assert data["focal"]["specs"]["*"]["type"] == "deceptive" and data["focal_count"] == 1
    assert data["command"].startswith(f"distsafe bench {path} --focal deceptive")
    assert [s["focal_agents"] for s in data["scenarios"]] == [[3], [3]]
    assert data["scenarios"][0]["seeds"] == [3, 4, 5]  # run k: the scenario's seed + k
    assert data["scenarios"][0]["scenario"]["agents"][-1]["type"] == "deceptive"
    free = data["runs"]["free"]
    gov = data["runs"]["governed"]
    assert all(r["metrics"]["focal_penalties"] == 0.0 for r in free)  # no levers
    assert all(r["metrics"]["focal_penalties"] >= r["metrics"]["focal_costs"] > 0 for r in gov)
    assert sum(r["metrics"]["focal_harm"] for r in free) > 0  # a deceiver does harm
    s = data["summary"]["overall"]["focal_return"]
    assert s["lo"] <= s["mean"] <= s["hi"] and s["n"] == 6
    with (out / "bench.csv").open() as fh:
        per_run = list(csv.DictReader(fh))
    assert len(per_run) == 6 and float(per_run[0]["focal_return"]) == free[0]["metrics"][
        "focal_return"]
    with (out / "summary.csv").open() as fh:
        assert {r["scenario"] for r in csv.DictReader(fh)} == {"free", "governed", "overall"}
    if (out / "bench.html").exists():
        page = (out / "bench.html").read_text()
        assert "overall" in page and "<script" not in page

    # --rerun repeats it from the recorded configs and seeds: identical per-run figures
    again = tmp_path / "again"
    assert _bench("--rerun", str(out / "bench.json"), "--out", str(again)) == 0
    assert "reproduced: all 6 runs' figures are identical" in capsys.readouterr().out
    assert _runs(again) == data["runs"]

    # resume: the same command reuses every finished run ...
    assert _bench(str(path), "--focal", "deceptive", "--out", str(out), "--workers", "1") == 0
    assert "resumed: 6 of 6 runs reused" in capsys.readouterr().err
    # ... and after an interruption (2 runs kept, the third cut short) runs only the rest
    lines = (out / "jobs.jsonl").read_text().splitlines(keepends=True)
    (out / "jobs.jsonl").write_text("".join(lines[:2]) + lines[2][:40])
    result = S.bench(path, "deceptive", out=out, workers=1)
    assert result.reused == 2 and _runs(out) == data["runs"]
    assert len((out / "jobs.jsonl").read_text().splitlines()) == 6
    # another focal in the same folder is not served the first one's runs
    assert S.bench(path, "adversarial", out=out, workers=1).reused == 0


def test_rerun_reports_a_difference(tmp_path, capsys):
    path = _write(tmp_path, "small.yaml", {**SMALL, "seeds": 2})
    out = tmp_path / "out"
    S.bench(path, "deceptive", out=out, workers=1)
    data = json.loads((out / "bench.json").read_text())
    data["runs"]["free"][0]["metrics"]["toxicity"] += 0.5
    (out / "bench.json").write_text(json.dumps(data))
    assert _bench("--rerun", str(out / "bench.json"), "--out", str(tmp_path / "r")) == 1
    err = capsys.readouterr().err
    assert "differs from" in err and "free: seed 3: toxicity" in err
    assert _bench("--rerun", str(tmp_path / "nope.json")) == 2
    assert _bench(str(path), "--rerun", str(out / "bench.json")) == 2
    assert _bench(str(path)) == 2  # no --focal


class Boom(Honest):
    """Honest, until its agents have acted ``fail_after`` times since its last reset."""

    name = "boom"

    class Params(Honest.Params):
        fail_after: int = 4

    def reset(self, seed=None):
        super().reset(seed)
        self.calls = 0

    def act_arrays(self, obs):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls > self.params.fail_after:
            raise RuntimeError(f"boom at call {self.calls}")
        return super().act_arrays(obs)


def test_a_failed_run_is_retried_and_reported(tmp_path, capsys):
    suite = {"name": "fails", "seeds": 2, "scenarios": [
        {"scenario": _tiny("short", epochs=1, steps=3)},   # 3 steps: fine
        {"scenario": _tiny("long", epochs=2, steps=5)},    # 10 steps: fails at step 5
    ]}
    path = _write(tmp_path, "fails.yaml", suite)
    out = tmp_path / "out"
    status = _bench(str(path), "--focal", f"{__name__}:Boom", "--out", str(out),
                    "--workers", "1", "--retries", "2")
    assert status == 1
    captured = capsys.readouterr()
    assert captured.err.count("long: seed") == 2 and "failed after 3 attempt(s)" in captured.err
    assert "RuntimeError: boom at call 5" in captured.err or "boom at call 5" in captured.err
    data = json.loads((out / "bench.json").read_text())
    assert [f["scenario"] for f in data["failures"]] == ["long", "long"]
    assert all(r["metrics"] is None for r in data["runs"]["long"])
    assert all(r["metrics"] for r in data["runs"]["short"])
    row = next(x for x in captured.out.splitlines() if x.startswith("long"))
    assert "[" not in row and " - " in f" {row} "  # no figures for it
    assert "2 run(s) failed" in captured.out


# --------------------------------------------------------------------------- backends
def test_local_workers_and_ray_give_identical_runs(tmp_path):
    path = _write(tmp_path, "small.yaml", {**SMALL, "seeds": 2})
    one = S.bench(path, "deceptive", workers=1)
    two = S.bench(path, "deceptive", workers=2)
    assert _same(one.runs, two.runs) and not one.failures and not two.failures
    assert one.table() == two.table()
    pytest.importorskip("ray")
    ray = S.bench(path, "deceptive", backend="ray", workers=2)
    assert _same(ray.runs, one.runs) and not ray.failures
    assert ray.table() == one.table()


# --------------------------------------------------------------------------- a trained focal
TRAIN = {
    "name": "tiny_bench_train", "env": "sandbox-v0",
    "agents": [{"type": "honest", "count": 2}, {"type": "opportunistic", "count": 1},
               {"type": "rl", "count": 1, "learn": True}],
    "network": {"topology": "complete"},
    "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 7},
    "governance": {"random_audit": {"probability": 0.3, "penalty": 2.0}},
    "train": {"algorithm": "maskable_ppo", "total_timesteps": 80, "copies": 2, "seed": 3,
              "net_arch": [16], "hyperparams": {"n_steps": 40, "batch_size": 40,
                                                "n_epochs": 1}},
}


def test_a_trained_model_as_the_focal_policy(tmp_path, capsys):
    pytest.importorskip("sb3_contrib")
    from baselines.cli import main

    cfg = _write(tmp_path, "train.yaml", TRAIN)
    trained = tmp_path / "trained"
    assert main(["train", str(cfg), "--out", str(trained), "--quiet", "--no-eval"]) == 0
    model = trained / "model.zip"
    capsys.readouterr()
    path = _write(tmp_path, "small.yaml", {**SMALL, "seeds": 2})  # the layout it was trained on
    out = tmp_path / "out"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the preflight's forward pass on 2 threads, then a forked pool:
    try:  # the workers run their models on one thread (no hang in the inherited pool)
        assert _bench(str(path), "--focal", f"rl:{model}", "--out", str(out),
                      "--workers", "2") == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert next(x for x in printed.splitlines() if x.startswith("overall")).count("[") == 8
    data = json.loads((out / "bench.json").read_text())
    spec = data["focal"]["specs"]["*"]
    assert spec["type"] == "rl" and spec["params"]["model"] == str(model.resolve())
    assert data["scenarios"][0]["scenario"]["agents"][-1]["type"] == "rl"
    assert all(math.isfinite(r["metrics"]["focal_return"]) for r in data["runs"]["free"])
    # a path ending in .zip is a model too; the same numbers
    assert _same(S.bench(path, str(model), workers=1).runs, data["runs"])
    assert _bench("--rerun", str(out / "bench.json"), "--out", str(tmp_path / "r")) == 0
    # a model cannot play another layout: refused before anything runs, naming the scenario
    dilemma = {"name": "d", "seeds": 1, "scenarios": [{"scenario": {
        "name": "pd", "env": "dilemma-v0", "agents": [{"type": "tit_for_tat", "count": 4}],
        "network": {"topology": "complete"},
        "simulation": {"n_epochs": 1, "steps_per_epoch": 3}}}]}
    assert _bench(str(_write(tmp_path, "d.yaml", dilemma)), "--focal", str(model),
                  "--out", str(tmp_path / "d")) == 2
    text = capsys.readouterr().out
    assert "scenarios[0]: pd: the focal policy" in text and "cannot play it" in text


def test_the_mixed_suite_with_one_focal_per_variant(tmp_path):
    result = S.bench(SUITES / "mixed.yaml", "{sandbox: deceptive, dilemma: always_defect}",
                     seeds=2, workers=2, out=tmp_path / "mixed")
    by_variant = {s.label: s.variant for s in result.scenarios}
    assert set(by_variant.values()) == {"sandbox", "dilemma"}
    summ = result.summary()
    for label, variant in by_variant.items():
        qg = summ[label]["quality_gap"]
        assert math.isnan(qg.mean) == (variant == "dilemma")  # nothing is rejected there
        assert summ[label]["focal_harm"].mean > 0
    # an always-defector's harm is its defections; the audit fines them
    assert summ["dilemma_network_audited"]["focal_penalties"].mean > 0
    assert summ["dilemma_network"]["focal_penalties"].mean == 0
    assert np.isfinite(summ["overall"]["quality_gap"].mean)  # over the sandbox rows only


def test_an_llm_focal_plays_both_variants(tmp_path):
    """An llm block (dry run: its documented fallback action, no provider called) is a focal
    policy that plays the sandbox and the dilemma alike."""
    pytest.importorskip("litellm")
    mixed = {"name": "both", "seeds": 2, "scenarios": [
        {"scenario": _tiny("sb", epochs=1, steps=4)},
        {"scenario": {"name": "pd", "env": "dilemma-v0",
                      "agents": [{"type": "tit_for_tat", "count": 4}],
                      "network": {"topology": "complete"},
                      "simulation": {"n_epochs": 1, "steps_per_epoch": 4, "seed": 1}}}]}
    result = S.bench(_write(tmp_path, "both.yaml", mixed),
                     "{type: llm, llm: {model: openai/gpt-4o-mini, dry_run: true}}", workers=1)
    assert not result.failures and {s.variant for s in result.scenarios} == {"sandbox",
                                                                               "dilemma"}
    assert result.focal.describe() == "llm:openai/gpt-4o-mini"
