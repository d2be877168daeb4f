"""Every scenario in configs/ loads, builds and runs; bad scenarios give one line per problem,
all problems of a file at once; preflight refuses what would fail or produce garbage."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from baselines.scenario import (
    ConfigError,
    Scenario,
    build,
    load_scenario,
    parse_scenario,
    preflight,
)
from baselines.scripted import POLICIES
from baselines.train import learner_entry

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# populations and settings from docs/reference.md ("The shipped scenarios")
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
    for policy in policies.values():  # LLM agents: no provider here, the dry path
        policy.bind_run(None, dry_run=True)
    assert sorted(policies) == sorted(env.possible_agents)
    assert len(env.possible_agents) == scenario.n_agents
    assert list(env.config.groups) == scenario.agent_groups()
    obs, infos = env.reset(seed=0)
    # a training config's learners have no model yet: they take random allowed actions
    learning = set(learner_entry(scenario)[1]) if scenario.train is not None else set()
    for _ in range(3):
        if not env.agents:  # an episode may end early (the commons' collapse)
            break
        actions = {a: (env.action_space(a).sample(mask=obs[a]["action_mask"])
                       if a in learning else policies[a].act(obs[a], infos[a]))
                   for a in env.agents}
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
    assert s.payoff == DEFAULT_PAYOFF
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


def test_an_exponent_without_a_dot_is_a_number(tmp_path):
    """YAML 1.1 reads ``1e-1`` as a string; a scenario reads it as the number it is (a
    quoted one stays text)."""
    path = tmp_path / "x.yaml"
    path.write_text(VALID.replace("s_plus: 2.0", "s_plus: 25e-1"))
    assert load_scenario(path).payoff["s_plus"] == 2.5
    path.write_text(VALID.replace("s_plus: 2.0", "s_plus: '25e-1'"))
    with pytest.raises(ConfigError, match="payoff.s_plus"):
        load_scenario(path)


def test_unknown_top_level_key(tmp_path):
    msg = _error(tmp_path, VALID + "colour: red\n")
    assert msg == ("colour: unknown key; allowed: agents, description, env, env_params, "
                   "governance, name, network, payoff, simulation, train")


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
    assert msg.startswith("env: unknown environment id 'nope-v0'; allowed: commons-v0, "
                          "dilemma-v0, sandbox-v0")


def test_too_few_agents(tmp_path):
    msg = _error(tmp_path, VALID.replace("count: 2", "count: 0"))
    assert msg == "agents[0].count: Input should be greater than or equal to 1 (got 0)"
    msg = _error(tmp_path, VALID.replace("count: 2", "count: 1").replace(
        "  - type: adversarial\n    count: 1\n", ""))
    assert msg == "agents: needs at least 2 agents in total, got 1"


def _errors(tmp_path, text: str) -> list[str]:
    """Every problem line of a bad file, without the file name."""
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    err = info.value
    lines = str(err).split("\n")
    assert len(lines) == len(err.problems)
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert [line.removeprefix(f"{path}: ") for line in lines] == [
        f"{p}: {q}" if p else q for p, q in err.problems]
    return [line.removeprefix(f"{path}: ") for line in lines]


def test_every_problem_is_listed(tmp_path):
    msgs = _errors(tmp_path, VALID.replace("s_plus: 2.0", "s_plus: -1").replace(
        "  n_epochs: 2\n", "").replace("count: 1", "count: 0"))
    assert msgs == [
        "agents[1].count: Input should be greater than or equal to 1 (got 0)",
        "payoff.s_plus: Input should be greater than or equal to 0 (got -1)",
        "simulation.n_epochs: field required",
    ]


def test_every_problem_within_a_level_is_listed(tmp_path):
    msgs = _errors(tmp_path, VALID + "env_params:\n  max_neighbors: 0\n  n_epochs: 3\n"
                   "  foo: 1\n  effort_levels: [0, 2, 0.5, -1]\n  signals: {q_min: .nan}\n")
    assert msgs[0] == ("env_params.n_epochs: set by the scenario's 'simulation' block; "
                       "remove it here")
    assert msgs[1].startswith("env_params.foo: unknown key; allowed: ")
    assert set(msgs[2:]) == {
        "env_params.max_neighbors: Input should be greater than or equal to 1 (got 0)",
        "env_params.effort_levels[1]: Input should be less than or equal to 1 (got 2)",
        "env_params.effort_levels[3]: Input should be greater than or equal to 0 (got -1)",
        "env_params.signals.q_min: Input should be a finite number (got nan)",
    }


def test_all_policy_param_problems_are_listed(tmp_path):
    msgs = _errors(tmp_path, VALID.replace(
        "count: 2", "count: 2\n    params: {propose_prob: 1.5, bogus: 1, trust_weight: .inf}"))
    assert msgs[0] == ("agents[0].params.propose_prob: Input should be less than or equal to 1 "
                       "(got 1.5)")
    assert msgs[1] == "agents[0].params.trust_weight: Input should be a finite number (got inf)"
    assert msgs[2].startswith("agents[0].params.bogus: unknown key; allowed: ")


def test_from_validation_error_keeps_every_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        Scenario.model_validate({"name": "x", "agents": [], "simulation": {}})
    err = ConfigError.from_validation_error(info.value, "f.yaml", Scenario)
    assert err.source == "f.yaml"
    assert [p for p, _ in err.problems] == ["agents", "simulation.n_epochs",
                                            "simulation.steps_per_epoch"]
    assert (err.path, err.problem) == err.problems[0]


# --------------------------------------------------------------------------- nan and infinity
NAN_INF = [
    ("payoff", "payoff: {s_plus: .nan}", "payoff.s_plus"),
    ("payoff-inf", "payoff: {h: .inf}", "payoff.h"),
    ("payoff-neg-inf", "payoff: {w_rep: -.inf}", "payoff.w_rep"),
    ("network", "network: {topology: random, edge_probability: .nan}",
     "network.edge_probability"),
    ("network-weight", "network: {dynamic: true, max_weight: .inf}", "network.max_weight"),
    ("cost", "env_params: {effort_cost: .nan}", "env_params.effort_cost"),
    ("resources", "env_params: {initial_resources: .inf}", "env_params.initial_resources"),
    ("level", "env_params: {transfer_levels: [0, .inf]}", "env_params.transfer_levels[1]"),
    ("range", "env_params: {signals: {good_progress: {low: .nan, high: 1}}}",
     "env_params.signals.good_progress.low"),
    ("proxy-weight", "env_params: {proxy: {weights: {rework: .inf}}}",
     "env_params.proxy.weights.rework"),
    ("proxy-k", "env_params: {proxy: {k: .inf}}", "env_params.proxy.k"),
]


@pytest.mark.parametrize(("block", "path"), [(b, p) for _, b, p in NAN_INF],
                         ids=[i for i, _, _ in NAN_INF])
def test_nan_and_infinity_are_rejected(tmp_path, block, path):
    msgs = _errors(tmp_path, VALID.replace("payoff:\n  s_plus: 2.0\n", "") + block + "\n")
    assert len(msgs) == 1
    assert msgs[0].startswith(f"{path}: Input should be a finite number (got ")


def test_nan_in_policy_params_is_rejected(tmp_path):
    msgs = _errors(tmp_path, VALID.replace("count: 2", "count: 2\n    params: "
                                                        "{accept_threshold: .nan}"))
    assert msgs == ["agents[0].params.accept_threshold: Input should be a finite number "
                    "(got nan)"]


# --------------------------------------------------------------------------- no coercion
COERCION = [
    ("count-str", VALID.replace("count: 2", "count: '2'"), "agents[0].count",
     "Input should be a valid integer (got '2')"),
    ("count-float", VALID.replace("count: 2", "count: 2.0"), "agents[0].count",
     "Input should be a valid integer (got 2.0)"),
    ("epochs-str", VALID.replace("n_epochs: 2", "n_epochs: '3'"), "simulation.n_epochs",
     "Input should be a valid integer (got '3')"),
    ("seed-bool", VALID + "  seed: true\n", "simulation.seed",
     "Input should be a valid integer (got True)"),
    ("float-str", VALID.replace("s_plus: 2.0", "s_plus: '2.0'"), "payoff.s_plus",
     "Input should be a valid number (got '2.0')"),
    ("float-bool", VALID.replace("s_plus: 2.0", "s_plus: true"), "payoff.s_plus",
     "Input should be a valid number (got True)"),
    ("bool-str", VALID + "network: {dynamic: 'yes'}\n", "network.dynamic",
     "Input should be a valid boolean (got 'yes')"),
    ("bool-int", VALID + "network: {dynamic: 1}\n", "network.dynamic",
     "Input should be a valid boolean (got 1)"),
    ("k-float", VALID + "network: {topology: small_world, k: 4.0}\n", "network.k",
     "Input should be a valid integer (got 4.0)"),
    ("edge-float", VALID + "network: {topology: custom, edges: [[0, 1.0]]}\n",
     "network.edges[0][1]", "Input should be a valid integer (got 1.0)"),
    ("env-int-str", VALID + "env_params: {max_neighbors: '3'}\n", "env_params.max_neighbors",
     "Input should be a valid integer (got '3')"),
    ("env-bool", VALID + "env_params: {copy_observations: 1}\n",
     "env_params.copy_observations", "Input should be a valid boolean (got 1)"),
    ("level-str", VALID + "env_params: {effort_levels: ['0', 1]}\n",
     "env_params.effort_levels[0]", "Input should be a valid number (got '0')"),
    ("param-int", VALID.replace("type: adversarial\n    count: 1", "type: adversarial\n    "
                                "count: 1\n    params: {cooldown: 2.0}"),
     "agents[1].params.cooldown", "Input should be a valid integer (got 2.0)"),
    ("param-float-str", VALID.replace("count: 2", "count: 2\n    params: {propose_prob: '0.5'}"),
     "agents[0].params.propose_prob", "Input should be a valid number (got '0.5')"),
    ("name-int", VALID.replace("name: tiny", "name: 123"), "name",
     "Input should be a valid string (got 123)"),
]


@pytest.mark.parametrize(("text", "path", "problem"), [c[1:] for c in COERCION],
                         ids=[c[0] for c in COERCION])
def test_no_silent_coercion(tmp_path, text, path, problem):
    assert _errors(tmp_path, text) == [f"{path}: {problem}"]


def test_yaml_lists_for_tuples_and_ints_for_floats_are_accepted(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(VALID.replace("s_plus: 2.0", "s_plus: 3") + (
        "network: {topology: custom, edges: [[0, 1], [1, 2]], initial_weight: 1}\n"
        "env_params: {effort_levels: [0, 0.5, 1], transfer_levels: [0, 1], "
        "effort_cost: 1, signals: {good_progress: [0, 1]}}\n").replace(
        "[0, 1]}}", "{low: 0, high: 1}}}"))
    s = load_scenario(path)
    assert s.payoff["s_plus"] == 3.0 and isinstance(s.payoff["s_plus"], float)
    assert s.network.edges == [(0, 1), (1, 2)]
    env, _ = build(s, seed=0)
    assert env.config.effort_levels == (0.0, 0.5, 1.0)
    assert env.config.transfer_levels == (0.0, 1.0)


# --------------------------------------------------------------------------- custom edges
def test_custom_edge_out_of_range_is_a_config_error_with_its_path(tmp_path):
    msgs = _errors(tmp_path, VALID + "network: {topology: custom, edges: [[0, 1], [1, 2], "
                                     "[0, 2], [2, 3], [7, 0]]}\n")
    assert msgs == [
        "network.edges[3]: agent index out of range: the agents are 0..2, received (2, 3)",
        "network.edges[4]: agent index out of range: the agents are 0..2, received (7, 0)",
    ]


def test_custom_edge_problems_are_listed_with_paths(tmp_path):
    msgs = _errors(tmp_path, VALID + "network: {topology: custom, edges: [[0, 0], [1, -2]]}\n")
    assert msgs == ["network.edges[0]: self-loops are not allowed; received (0, 0)",
                    "network.edges[1]: agent indices must be non-negative; received (1, -2)"]


# --------------------------------------------------------------------------- preflight
def _scenario(**blocks):
    data = {"name": "t", "agents": [{"type": "honest", "count": 3},
                                    {"type": "deceptive", "count": 1}],
            "simulation": {"n_epochs": 1, "steps_per_epoch": 2, "seed": 0}}
    data.update(blocks)
    return data


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_pass_preflight(path):
    preflight(load_scenario(path), str(path))


@pytest.mark.parametrize(("blocks", "path"), [
    # finite but absurd amounts overflowed to inf, and inf - inf gave a nan welfare
    ({"payoff": {"s_plus": 1e308}}, "payoff.s_plus"),
    ({"payoff": {"h": 1e300, "rho_a": 1e300}}, "payoff.h"),
    # a signal range of [-1e308, 1e308] drew nan signals, nan p, and bincount then failed
    # with "'list' argument must have no negative elements"
    ({"env_params": {"signals": {"bad_progress": {"low": -1e308, "high": 1e308}}}},
     "env_params.signals.bad_progress.low"),
    # a probability that rounds 1 - p to 1 divided by zero inside networkx
    ({"network": {"topology": "random", "edge_probability": 1e-300}},
     "network.edge_probability"),
    # sizes beyond what an index can hold overflowed at reset
    ({"env_params": {"max_neighbors": 2**70}}, "env_params.max_neighbors"),
    ({"env_params": {"inbox_size": 2**70}}, "env_params.inbox_size"),
    ({"env_params": {"history_length": 2**70}}, "env_params.history_length"),
    ({"env_params": {"signals": {"dress_counts": 1e308}}}, "env_params.signals.dress_counts"),
    ({"env_params": {"signals": {"bad_rework": 1e6}}}, "env_params.signals.bad_rework"),
    ({"env_params": {"proxy": {"weights": {"rework": 1e308, "verifier": 1e308}}}},
     "env_params.proxy.weights.rework"),
])
def test_configs_that_used_to_validate_but_break_a_run_are_schema_errors(blocks, path):
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario(**blocks), "x.yaml")
    assert info.value.path == path


def test_preflight_refuses_a_network_that_cannot_fit_at_once():
    s = parse_scenario(_scenario(agents=[{"type": "honest", "count": 100_000}]), "big.yaml")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        preflight(s, "big.yaml")
    assert time.perf_counter() - start < 0.5
    err = info.value
    assert err.path == "network.topology"
    assert re.search(r"a complete network on 100000 agents needs about \d+\.\d GB "
                     r"\(estimate\), but only \d+\.\d GB of memory is available; use "
                     r"topology small_world or scale_free, or fewer agents", err.problem)
    assert str(err).startswith("big.yaml: network.topology: a complete network")


def test_reset_refuses_a_network_that_cannot_fit_at_once():
    import envs
    from envs.core.network import NetworkMemoryError

    env = envs.make("sandbox-v0", n_agents=100_000)
    start = time.perf_counter()
    with pytest.raises(NetworkMemoryError, match="use topology small_world or scale_free"):
        env.reset(seed=0)
    assert time.perf_counter() - start < 0.5
    assert isinstance(NetworkMemoryError("x"), ValueError)


def test_preflight_reports_failures_of_the_test_run(monkeypatch):
    from envs.sandbox import SandboxEnv

    def broken(self, actions, validate=True):
        raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(SandboxEnv, "step_arrays", broken)
    with pytest.raises(ConfigError, match="a test run of this scenario fails: OverflowError"):
        preflight(parse_scenario(_scenario(), "x.yaml"), "x.yaml")


def test_preflight_reports_non_finite_rewards(monkeypatch):
    from envs.sandbox import SandboxEnv

    real = SandboxEnv.step_arrays

    def inf_rewards(self, actions, validate=True):
        out = real(self, actions, validate)
        out[0] = np.inf
        return out

    monkeypatch.setattr(SandboxEnv, "step_arrays", inf_rewards)
    with pytest.raises(ConfigError, match="rewards of a test step are not finite"):
        preflight(parse_scenario(_scenario(), "x.yaml"), "x.yaml")


# --------------------------------------------------------------------------- memory estimate
@pytest.mark.parametrize(("network", "n"), [
    ({"topology": "complete"}, 600),
    ({"topology": "random", "edge_probability": 0.3}, 600),
    ({"topology": "small_world", "k": 6}, 4000),
    ({"topology": "scale_free", "m": 3}, 4000),
    ({"topology": "ring"}, 4000),
    ({"topology": "star"}, 4000),
    ({"topology": "custom", "edges": [(i, i + 1) for i in range(999)]}, 1000),
])
def test_memory_estimate_is_an_upper_bound_of_the_measured_peak(network, n):
    import tracemalloc

    import envs
    from envs.core.network import NetworkConfig, estimate_network_bytes

    cfg = NetworkConfig(**network)
    tracemalloc.start()
    try:
        env = envs.make("sandbox-v0", n_agents=n, network=cfg)
        env.reset(seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = estimate_network_bytes(cfg, n, env.config.max_neighbors)
    assert peak <= estimate <= 4 * peak + 16 * 2**20  # honest: above, but not wildly


def test_memory_estimate_counts_edges_per_topology():
    from envs.core.network import NetworkConfig, estimate_network_bytes

    def est(n, **kw):
        return estimate_network_bytes(NetworkConfig(**kw), n)

    assert est(10**5) > 100 * est(10**5, topology="small_world")
    assert est(10**5, topology="random", edge_probability=0.5) > est(10**5) / 4
    assert est(10**4, topology="scale_free", m=10**5) == est(10**4)  # m >= n: complete
    assert est(1000, topology="ring") < est(2000, topology="ring")
    assert est(1000, topology="ring") < estimate_network_bytes(NetworkConfig(topology="ring"),
                                                               1000, max_neighbors=64)
def test_top_level_must_be_a_mapping(tmp_path):
    assert _error(tmp_path, "- a\n- b\n") == \
        "top level: expected a mapping (key: value), got list"
    assert _error(tmp_path, "") == "top level: expected a mapping (key: value), got an empty file"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_scenario(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_a_huge_population_is_checked_without_building_per_agent_lists():
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario(agents=[{"type": "honest", "count": 2**31}]), "x.yaml")
    assert info.value.problems == [
        ("agents", "Input should be less than or equal to 2147483647 (got 2147483648)")]
    s = parse_scenario(_scenario(agents=[{"type": "honest", "count": 10**8}]), "x.yaml")
    with pytest.raises(ConfigError, match="network.topology: a complete network on 100000000"):
        preflight(s, "x.yaml")
    assert time.perf_counter() - start < 1.0
