"""Calibration of the commons with its scripted policies, in real runs: under each regrowth
rule (the logistic defaults of the LLM common-pool study, and the doubling benchmark) an
all-sustainable population keeps the commons standing for the whole horizon on 10 of 10
seeds, and an all-greedy one collapses it early on every seed. And the committed
saboteur / monitor experiment: its claim, and two seeds re-run to the recorded figures."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from baselines.runner import rollout
from baselines.scenario import Scenario, build, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SEEDS = range(10)
EARLY = 3   # "early": the commons is gone within the first 3 rounds


def summaries(scenario: Scenario) -> list[dict[str, float]]:
    out = []
    for seed in SEEDS:
        env, policies = build(scenario, seed=seed)
        rollout(env, policies, seed=seed)
        out.append(env.unwrapped.summary())
    return out


def with_agents(path: str, agents: list[dict]) -> Scenario:
    data = load_scenario(ROOT / "configs" / path).model_dump(mode="json")
    data["agents"] = agents
    return Scenario.model_validate(data)


def horizon(s: Scenario) -> int:
    return s.simulation.n_epochs * s.simulation.steps_per_epoch


@pytest.mark.parametrize("config", ["commons_sustainable.yaml", "commons_doubling.yaml"])
def test_all_sustainable_survives_the_whole_horizon_on_every_seed(config):
    s = load_scenario(ROOT / "configs" / config)
    assert {a.type for a in s.agents} == {"sustainable"}
    for r in summaries(s):
        assert r["survived"] == 1.0 and r["survival_time"] == horizon(s)
        assert r["final_stock"] >= s.env_params["initial_stock"] * 0.9
        assert r["honesty"] == 1.0 and r["accusations"] == 0 and r["eliminations"] == 0
        assert r["over_use_rate"] == 0.0


@pytest.mark.parametrize("scenario", ["logistic", "logistic_defaults", "doubling"])
def test_all_greedy_collapses_early_on_every_seed(scenario):
    if scenario == "logistic":   # the shipped config: 3 a round each
        s = load_scenario(ROOT / "configs" / "commons_greedy.yaml")
    elif scenario == "logistic_defaults":   # the policy's defaults: the most it can
        s = with_agents("commons_sustainable.yaml", [{"type": "greedy", "count": 5}])
    else:   # the benchmark's lake, with greedy fishers (whole fish)
        s = with_agents("commons_doubling.yaml", [
            {"type": "greedy", "count": 5}])
    assert s.env_params["regrowth"] == scenario.split("_")[0]
    for r in summaries(s):
        assert r["survived"] == 0.0 and r["survival_time"] <= EARLY
        assert r["final_stock"] < 5.0


def test_the_regrowth_rules_are_the_ones_the_configs_claim():
    """The doubling benchmark's facts: S <- min(100, 2 S), share (S // 2) // n."""
    s = load_scenario(ROOT / "configs" / "commons_doubling.yaml")
    env, policies = build(s, seed=0)
    rollout(env, policies, seed=0)
    hist = env.unwrapped.history
    assert len(hist) == 12
    for r in hist:
        assert r["fair_share"] == (r["stock_before"] // 2) // 5
        assert r["stock"] == min(100.0, 2 * r["stock_after_harvest"])
        assert r["taken"] == [10.0] * 5


# ------------------------------------------------------------------ the experiment
def _experiment_module():
    path = ROOT / "benchmarks" / "commons_saboteur.py"
    spec = importlib.util.spec_from_file_location("commons_saboteur_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", ["commons_saboteur", "commons_saboteur_noisy"])
def test_the_committed_saboteur_experiment_holds_and_reproduces(folder):
    recorded = json.loads((ROOT / "benchmarks" / "results" / folder
                           / "summary.json").read_text())
    assert len(recorded["seeds"]) == 20
    claim = recorded["claim"]
    assert claim["holds"] is True and claim["lowered"]["honesty"]
    lowered = [k for k in ("survival_time", "efficiency") if claim["lowered"][k]]
    assert lowered and all(claim["recovered"][k] >= 0.5 for k in ["honesty", *lowered])
    # the claim follows from the recorded per-seed figures
    per = recorded["per_seed"]
    mean = {arm: {k: sum(r[k] for r in per[arm]) / len(per[arm]) for k in ("honesty",
                                                                          *lowered)}
            for arm in per}
    for k in ("honesty", *lowered):
        a, b, c = (mean[arm][k] for arm in ("sustainable", "saboteur", "monitors"))
        assert a > b and (c - b) / (a - b) == pytest.approx(recorded["recovered"][k])
        assert (c - b) / (a - b) >= 0.5
    assert recorded["summary"]["monitors"]["detection_rate"]["mean"] == 1.0
    # two seeds, re-run: the same figures, exactly
    module = _experiment_module()
    scenarios = module.arm_scenarios(recorded["growth_noise"])
    for arm in module.ARMS:
        for row in per[arm][:2]:
            got = module.run_one(scenarios[arm], row["seed"])
            for k, v in got.items():
                want = row[k]
                assert (want is None and math.isnan(v)) or v == want, (arm, row["seed"], k)


@pytest.mark.parametrize("folder", ["commons_saboteur", "commons_saboteur_noisy"])
def test_readme_shows_the_recorded_saboteur_experiment(folder):
    """README's tables are the committed table.md files, word for word."""
    table = (ROOT / "benchmarks" / "results" / folder / "table.md").read_text()
    readme = (ROOT / "README.md").read_text()
    body = table.split("\n\nClaim:")[0].split("\n", 2)[2]  # the two tables
    assert body.strip() in readme
