"""Every scenario in configs/ loads, builds and runs; bad scenarios give one-line errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from baselines.scenario import ConfigError, Scenario, build, load_scenario, parse_scenario
from baselines.scripted import POLICIES

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# populations and settings from shared/REFERENCE.md ("Scenarios")
REFERENCE = {
    "baseline": {
        "agents": {"honest": 3, "opportunistic": 1, "deceptive": 1},
        "n_epochs": 10, "steps_per_epoch": 10, "seed": 42,
    },
    "network_effects": {
        "agents": {"honest": 4, "opportunistic": 3, "deceptive": 2, "adversarial": 1},
        "n_epochs": 20, "steps_per_epoch": 10, "seed": 7,
    },
}
DEFAULT_PAYOFF = {"s_plus": 2.0, "s_minus": 1.0, "h": 2.0, "theta": 0.5, "rho_a": 0.0,
                  "rho_b": 0.0, "w_rep": 1.0}

VALID = """\
name: tiny
agents:
  - type: honest
    count: 2
  - type: adversarial
    count: 1
payoff:
  s_plus: 2.0
simulation:
  n_epochs: 2
  steps_per_epoch: 3
"""


def test_configs_folder_is_not_empty():
    assert {p.stem for p in CONFIGS} >= set(REFERENCE)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_builds_and_runs(path):
    scenario = load_scenario(path)
    env, policies = build(scenario, seed=0)
    assert sorted(policies) == sorted(env.possible_agents)
    assert len(env.possible_agents) == scenario.n_agents
    assert list(env.config.groups) == scenario.agent_types()
    obs, infos = env.reset(seed=0)
    for _ in range(3):
        actions = {a: policies[a].act(obs[a], infos[a]) for a in env.agents}
        for a, act in actions.items():
            assert env.action_space(a).contains(np.asarray(act, dtype=np.int64))
        obs, rewards, terms, truncs, infos = env.step(actions)
        assert set(rewards) == set(env.possible_agents)
    env.close()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_round_trips_through_its_dump(path):
    scenario = load_scenario(path)
    assert Scenario.model_validate(scenario.model_dump(mode="json")) == scenario


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_scenarios_match_reference(name):
    ref = REFERENCE[name]
    s = load_scenario(ROOT / "configs" / f"{name}.yaml")
    assert s.name == name
    assert Counter(s.agent_types()) == Counter(ref["agents"])
    assert s.simulation.n_epochs == ref["n_epochs"]
    assert s.simulation.steps_per_epoch == ref["steps_per_epoch"]
    assert s.simulation.seed == ref["seed"]
    assert s.payoff.model_dump() == DEFAULT_PAYOFF
    assert not s.governance


def test_network_effects_network():
    net = load_scenario(ROOT / "configs" / "network_effects.yaml").network
    assert (net.topology, net.k, net.rewire_probability) == ("small_world", 4, 0.1)
    assert net.dynamic and net.min_weight == 0.2


def test_baseline_network_is_complete():
    assert load_scenario(ROOT / "configs" / "baseline.yaml").network.topology == "complete"


def test_teams_and_groups_follow_agent_order():
    s = parse_scenario({"name": "t", "agents": [
        {"type": "adversarial", "count": 1}, {"type": "honest", "count": 2},
        {"type": "adversarial", "count": 1}], "simulation": {"n_epochs": 1,
                                                            "steps_per_epoch": 1}})
    env, policies = build(s, seed=3)
    assert env.config.teams == (1, -1, -1, 1)
    assert env.config.groups == ("adversarial", "honest", "honest", "adversarial")
    # one policy instance per agents entry
    assert policies["agent_1"] is policies["agent_2"]
    assert policies["agent_0"] is not policies["agent_3"]


def test_policy_params_are_resolved_and_passed():
    s = parse_scenario({"name": "t", "agents": [
        {"type": "honest", "count": 2, "params": {"propose_prob": 0.2}}],
        "simulation": {"n_epochs": 1, "steps_per_epoch": 1}})
    assert s.agents[0].params == POLICIES["honest"].Params(propose_prob=0.2).model_dump()
    _, policies = build(s, seed=0)
    assert policies["agent_0"].params.propose_prob == 0.2


def test_build_is_deterministic_and_seed_dependent():
    s = load_scenario(ROOT / "configs" / "baseline.yaml")

    def first_actions(seed):
        env, policies = build(s, seed=seed)
        obs, infos = env.reset(seed=seed)
        return np.stack([np.asarray(policies[a].act(obs[a], infos[a]))
                         for a in env.agents])

    assert np.array_equal(first_actions(5), first_actions(5))
    assert any(not np.array_equal(first_actions(5), first_actions(s)) for s in (6, 7, 8))


def test_env_params_and_overrides_reach_the_env():
    s = parse_scenario({"name": "t", "agents": [{"type": "honest", "count": 2}],
                        "simulation": {"n_epochs": 1, "steps_per_epoch": 1},
                        "env_params": {"max_neighbors": 3}})
    env, _ = build(s, n_epochs=4)
    assert env.config.max_neighbors == 3 and env.config.n_epochs == 4
    with pytest.raises(ValueError, match="n_agents"):
        build(s, n_agents=5)


# --------------------------------------------------------------------------- bad configs
def _error(tmp_path, text: str) -> str:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    return message.removeprefix(f"{path}: ")


def test_unknown_agent_type(tmp_path):
    msg = _error(tmp_path, VALID.replace("type: honest", "type: honst"))
    assert msg == ("agents[0].type: unknown agent type 'honst'; "
                   "allowed: adversarial, deceptive, honest, opportunistic")


def test_negative_payoff(tmp_path):
    msg = _error(tmp_path, VALID.replace("s_plus: 2.0", "s_plus: -1"))
    assert msg == "payoff.s_plus: Input should be greater than or equal to 0 (got -1)"


def test_negative_probability(tmp_path):
    msg = _error(tmp_path, VALID + "network: {topology: random, edge_probability: -0.1}\n")
    assert msg == "network.edge_probability: Input should be greater than or equal to 0 " \
                  "(got -0.1)"


def test_missing_field(tmp_path):
    msg = _error(tmp_path, VALID.replace("  n_epochs: 2\n", ""))
    assert msg == "simulation.n_epochs: field required"


def test_yaml_syntax_error(tmp_path):
    msg = _error(tmp_path, "name: tiny\nagents: [\n  {type: honest, count: 2}\nfoo: 1\n")
    assert msg == "line 4, column 1: YAML syntax error: expected ',' or ']', but got '<scalar>'"


def test_yaml_bad_indentation(tmp_path):
    msg = _error(tmp_path, "name: tiny\nagents:\n  - type: honest\n    count: 2\n   x: 1\n")
    assert msg == ("line 5, column 4: YAML syntax error: expected <block end>, but found "
                   "'<block mapping start>'")


def test_duplicate_key(tmp_path):
    msg = _error(tmp_path, VALID + "name: again\n")
    assert msg == "line 12, column 1: YAML syntax error: duplicate key 'name'"


def test_unknown_top_level_key(tmp_path):
    msg = _error(tmp_path, VALID + "colour: red\n")
    assert msg == ("colour: unknown key; allowed: agents, description, env, env_params, "
                   "governance, name, network, payoff, simulation")


def test_bad_policy_params(tmp_path):
    msg = _error(tmp_path, VALID.replace("count: 2", "count: 2\n    params: {bogus: 1}"))
    allowed = ", ".join(sorted(POLICIES["honest"].Params.model_fields))
    assert msg == f"agents[0].params.bogus: unknown key; allowed: {allowed}"
    msg = _error(tmp_path, VALID.replace("count: 2", "count: 2\n    params: "
                                                      "{propose_prob: 1.5}"))
    assert msg == ("agents[0].params.propose_prob: Input should be less than or equal to 1 "
                   "(got 1.5)")


def test_bad_env_params(tmp_path):
    msg = _error(tmp_path, VALID + "env_params: {max_neighbors: 0}\n")
    assert msg == "env_params.max_neighbors: Input should be greater than or equal to 1 (got 0)"
    msg = _error(tmp_path, VALID + "env_params: {n_epochs: 3}\n")
    assert msg == "env_params.n_epochs: set by the scenario's 'simulation' block; remove it here"
    assert _error(tmp_path, VALID + "env_params: {foo: 3}\n").startswith(
        "env_params.foo: unknown key; allowed: ")


def test_unknown_env(tmp_path):
    msg = _error(tmp_path, VALID + "env: nope-v0\n")
    assert msg.startswith("env: unknown environment id 'nope-v0'; allowed: sandbox-v0")


def test_too_few_agents(tmp_path):
    msg = _error(tmp_path, VALID.replace("count: 2", "count: 0"))
    assert msg == "agents[0].count: Input should be greater than or equal to 1 (got 0)"
    msg = _error(tmp_path, VALID.replace("count: 2", "count: 1").replace(
        "  - type: adversarial\n    count: 1\n", ""))
    assert msg == "agents: needs at least 2 agents in total, got 1"


def test_more_errors_are_counted(tmp_path):
    msg = _error(tmp_path, VALID.replace("s_plus: 2.0", "s_plus: -1").replace(
        "  n_epochs: 2\n", ""))
    assert msg.endswith("(+1 more)")


def test_top_level_must_be_a_mapping(tmp_path):
    assert _error(tmp_path, "- a\n- b\n") == \
        "top level: expected a mapping (key: value), got list"
    assert _error(tmp_path, "") == "top level: expected a mapping (key: value), got an empty file"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_scenario(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"
