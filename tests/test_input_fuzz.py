"""Fuzzing scenario files: extreme values in every field either stop at a ConfigError (at load
or preflight) or give a run whose metrics are finite wherever they are defined."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from baselines.runner import rollout
from baselines.scenario import ConfigError, build, load_scenario, preflight
from envs.core.network import NetworkConfig
from envs.core.payoff import PayoffConfig
from envs.core.proxy import ProxyWeights
from envs.sandbox import SandboxConfig, SignalModel

EXTREME = st.sampled_from([
    0, 1, 2, -1, 0.5, -0.5, 1e-300, 5e-324, 1e-12, 100, 1e6, 1e12, 1e30, 1e308, -1e308,
    2**31, 2**63, 2**70, -(2**70), float("nan"), float("inf"), float("-inf"), "3", "yes",
    True, None, [], [0, 1], {}, "",
])
TOPOLOGIES = ["complete", "random", "small_world", "scale_free", "ring", "star", "custom"]
RANGES = [name for name, f in SignalModel.model_fields.items() if f.annotation is not float]
SANDBOX_FIELDS = [name for name in SandboxConfig.model_fields
                  if name not in ("n_agents", "n_epochs", "steps_per_epoch", "network",
                                  "payoff", "teams", "groups", "proxy", "signals",
                                  "render_mode")]


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A valid small scenario with a few fields replaced by extreme values."""
    data: dict[str, Any] = {
        "name": "fuzz",
        "agents": [{"type": "honest", "count": 3}, {"type": "deceptive", "count": 1},
                   {"type": "adversarial", "count": 1}],
        "network": {"topology": draw(st.sampled_from(TOPOLOGIES)), "dynamic": True},
        "simulation": {"n_epochs": 1, "steps_per_epoch": 2, "seed": 0},
        "env_params": {},
    }
    if data["network"]["topology"] == "custom":
        data["network"]["edges"] = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 0]]
    for _ in range(draw(st.integers(1, 3))):
        value = draw(EXTREME)
        where = draw(st.sampled_from(["payoff", "network", "env", "signals", "range", "proxy",
                                      "weights", "params", "count", "simulation", "edges"]))
        if where == "payoff":
            data.setdefault("payoff", {})[draw(st.sampled_from(list(PayoffConfig.model_fields)))] \
                = value
        elif where == "network":
            key = draw(st.sampled_from([k for k in NetworkConfig.model_fields
                                        if k not in ("topology", "edges")]))
            data["network"][key] = value
        elif where == "env":
            data["env_params"][draw(st.sampled_from(SANDBOX_FIELDS))] = value
        elif where == "signals":
            key = draw(st.sampled_from([k for k in SignalModel.model_fields if k not in RANGES]))
            data["env_params"].setdefault("signals", {})[key] = value
        elif where == "range":
            key = draw(st.sampled_from(RANGES))
            data["env_params"].setdefault("signals", {})[key] = {
                "low": draw(st.sampled_from([-1e308, -1e6, -1.0, 0.0, value])), "high": value}
        elif where == "proxy":
            key = draw(st.sampled_from(["k", "rework_decay", "rejection_decay", "misuse_decay"]))
            data["env_params"].setdefault("proxy", {})[key] = value
        elif where == "weights":
            key = draw(st.sampled_from(list(ProxyWeights.model_fields)))
            data["env_params"].setdefault("proxy", {}).setdefault("weights", {})[key] = value
        elif where == "params":
            key = draw(st.sampled_from(["propose_prob", "accept_threshold", "trust_weight"]))
            data["agents"][0]["params"] = {key: value}
        elif where == "count":
            data["agents"][1]["count"] = value
        elif where == "simulation":
            data["simulation"][draw(st.sampled_from(["n_epochs", "steps_per_epoch", "seed"]))] \
                = value
        else:
            data["network"]["topology"] = "custom"
            data["network"]["edges"] = [[0, 1], [1, value]]
    return data


def _finite_inputs(data: dict[str, Any]) -> bool:
    def walk(x: Any) -> bool:
        if isinstance(x, float):
            return math.isfinite(x)
        if isinstance(x, dict):
            return all(walk(v) for v in x.values())
        if isinstance(x, list):
            return all(walk(v) for v in x)
        return True
    return walk(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_extreme_scenarios_are_config_errors_or_run_finitely(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(yaml.safe_dump(data))  # .nan / .inf in YAML, as a user would write them
    try:
        scenario = load_scenario(path)
        preflight(scenario, str(path))
    except ConfigError as e:
        event("refused")
        lines = str(e).split("\n")
        assert len(lines) == len(e.problems) >= 1
        assert all(line.startswith(f"{path}: ") for line in lines)
        return
    # accepted: a real (two-step) run must complete, with finite metrics where defined
    event("ran")
    assert _finite_inputs(data)
    scenario = scenario.model_copy(update={"simulation": scenario.simulation.model_copy(
        update={"n_epochs": 1, "steps_per_epoch": 2})})
    env, policies = build(scenario, seed=0)
    with np.errstate(all="raise", under="ignore"):
        rows = rollout(env, policies, seed=0)
    assert len(rows) == 1
    row = rows[0]
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            # nan only where a selection can be empty (no interaction, nothing accepted, one
            # class, no rejected, ...); never inf, and never for sums over interactions
            assert math.isnan(value), (key, value)
            assert key not in ("welfare", "transfers", "governance_costs", "n_interactions",
                               "n_accepted", "payoff_gini") and not key.startswith("payoff_"), \
                (key, value)
