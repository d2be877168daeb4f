"""The dilemma through the shared run path: strategies as policies, the runner, scenarios,
the CLI and the log; the sandbox's policies through the same runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import envs
from baselines.policy import ObsBatch, Policy
from baselines.runner import PolicyError, metrics_from_events, rollout
from baselines.scenario import ConfigError, build, parse_scenario
from baselines.scripted import BUILTIN, POLICIES, make_policy, resolve_policy
from baselines.strategies import CLASSIC, STRATEGIES, STRATEGY_POLICIES, make_strategy
from baselines.tournament import play_match, round_robin
from envs.core.records import InteractionType
from envs.dilemma import PAYOFF_PRESETS, DilemmaPayoff

ROOT = Path(__file__).resolve().parents[1]
TURNS = 60


def _moves_of(env, agent: int) -> list[int]:
    """The executed move (0 = C) of ``agent`` in the last round's records."""
    b = env.unwrapped.last_batch
    rows = np.flatnonzero(b.initiator == agent)
    return [0 if v > 0 else 1 for v in b.v[rows]]


def _duel(a: str, b: str, turns: int = TURNS, **config):
    """Two strategies as policies of a two-agent dilemma-v0; their moves and totals."""
    env = envs.make("dilemma-v0", n_epochs=1, steps_per_epoch=turns, **config)
    pa, pb = STRATEGY_POLICIES[a](seed=1), STRATEGY_POLICIES[b](seed=2)
    obs, _ = env.reset(seed=0)
    moves = ([], [])
    totals = np.zeros(2)
    for _ in range(turns):
        act = {"agent_0": pa.act(obs["agent_0"]), "agent_1": pb.act(obs["agent_1"])}
        obs, rewards, *_ = env.step(act)
        totals += [rewards["agent_0"], rewards["agent_1"]]
        moves[0].extend(_moves_of(env, 0))
        moves[1].extend(_moves_of(env, 1))
    return moves, totals


DETERMINISTIC = [c.name for c in STRATEGIES if not c.classifier["stochastic"]]


@pytest.mark.parametrize("a", DETERMINISTIC)
@pytest.mark.parametrize("b", ["always_defect", "tit_for_tat", "suspicious_tit_for_tat",
                               "alternator"])
def test_env_with_strategy_policies_plays_the_tournament_match(a, b):
    """A strategy played in dilemma-v0 through its policy makes the same moves and scores as
    the same match in the vectorised tournament (noise-free, default payoffs)."""
    (ma, mb), totals = _duel(a, b)
    ref = play_match(make_strategy(a), make_strategy(b), turns=TURNS,
                     payoffs=DilemmaPayoff().rstp())
    assert ma == ref.moves_a.tolist() and mb == ref.moves_b.tolist()
    assert totals.tolist() == list(ref.scores)


@pytest.mark.parametrize("preset", list(PAYOFF_PRESETS))
def test_presets_score_alike_in_env_and_tournament(preset):
    (_, _), totals = _duel("tit_for_tat", "suspicious_tit_for_tat",
                           payoff={"preset": preset})
    ref = play_match("TFT", "STFT", turns=TURNS, payoffs=preset)
    assert totals.tolist() == list(ref.scores)


def test_tit_for_tat_against_always_defect_in_the_env():
    (ma, mb), totals = _duel("tit_for_tat", "always_defect", turns=6)
    assert ma == [0, 1, 1, 1, 1, 1] and mb == [1] * 6
    assert totals.tolist() == [5.0, 10.0]  # S + 5 P, T + 5 P


def test_network_round_robin_matches_the_tournament_matrix():
    """Seven strategies, one agent each, on the complete graph of seven: every agent plays
    every other once per round, so its mean payoff per game is its tournament row mean."""
    names = [c.name for c in STRATEGIES if not c.classifier["stochastic"]]
    n = len(names)
    scenario = parse_scenario({
        "name": "rr", "env": "dilemma-v0",
        "agents": [{"type": name, "count": 1} for name in names],
        "network": {"topology": "complete"}, "simulation": {
            "n_epochs": 1, "steps_per_epoch": 50, "seed": 0}})
    env, policies = build(scenario)
    rollout(env, policies, seed=0)
    per_game = env.unwrapped.cumulative_reward / (50 * (n - 1))
    ref = round_robin([make_strategy(x) for x in names], turns=50, repetitions=1)
    off = ~np.eye(n, dtype=bool)
    expected = (ref.payoff_matrix * off).sum(axis=1) / (n - 1)
    np.testing.assert_allclose(per_game, expected, rtol=0, atol=1e-12)


def test_one_runner_for_a_sandbox_policy_and_a_strategy():
    """The same rollout drives a scripted sandbox policy and a dilemma strategy, each through
    the array door by default and identically through the dict door."""
    runs = {}
    for env_id, policy in (("sandbox-v0", make_policy("honest", seed=0)),
                           ("dilemma-v0", STRATEGY_POLICIES["tit_for_tat"](seed=0))):
        rows = {}
        for use_arrays in (True, False):
            env = envs.make(env_id, n_agents=6, n_epochs=2, steps_per_epoch=5,
                            network={"topology": "ring"})
            rows[use_arrays] = rollout(env, dict.fromkeys(env.possible_agents, policy),
                                       seed=3, use_arrays=use_arrays)
        np.testing.assert_equal(rows[True], rows[False])  # nan == nan here
        assert [r["epoch"] for r in rows[True]] == [0, 1]
        runs[env_id] = rows[True]
    assert runs["sandbox-v0"][0]["n_interactions"] > 0
    # six TFT agents on a ring: every game mutual cooperation, 2 records per game, 12 games
    assert runs["dilemma-v0"][0]["n_interactions"] == 5 * 12
    assert runs["dilemma-v0"][0]["toxicity"] == 0.0


def test_strategy_policies_are_builtins_for_the_dilemma_only():
    assert set(STRATEGY_POLICIES) == {c.name for c in STRATEGIES}
    from baselines.commons_policies import COMMONS_POLICIES

    assert set(BUILTIN) == set(POLICIES) | set(STRATEGY_POLICIES) | set(COMMONS_POLICIES)
    assert resolve_policy("grim_trigger") is STRATEGY_POLICIES["grim_trigger"]
    assert all(cls.variants == ("dilemma",) for cls in STRATEGY_POLICIES.values())
    assert all(cls.variants == ("sandbox",) for cls in POLICIES.values())
    gtft = STRATEGY_POLICIES["generous_tit_for_tat"](seed=0, p=0.25)
    assert gtft.strategy.params.p == 0.25 and issubclass(type(gtft), Policy)
    with pytest.raises(Exception, match="less than or equal to 1"):
        STRATEGY_POLICIES["random"](p=1.5)


def _scenario(env: str, agent_type: str, **extra) -> dict:
    return {"name": "s", "env": env, "agents": [{"type": agent_type, "count": 3}],
            "simulation": {"n_epochs": 1, "steps_per_epoch": 2}, **extra}


def test_a_policy_of_another_variant_is_refused_by_the_scenario():
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario("sandbox-v0", "tit_for_tat"), "s.yaml")
    assert info.value.path == "agents[0].type"
    assert "'tit_for_tat' plays dilemma, not sandbox" in info.value.problem
    assert "allowed for sandbox: adversarial, deceptive, honest, opportunistic" in \
        info.value.problem
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario("dilemma-v0", "honest"), "s.yaml")
    assert "'honest' plays sandbox, not dilemma" in info.value.problem


def test_an_unknown_type_lists_the_names_of_the_scenarios_variant():
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario("dilemma-v0", "tft"), "s.yaml")
    assert info.value.problem.startswith("unknown agent type 'tft'; allowed: alternator, "
                                         "always_cooperate, always_defect")
    assert "honest" not in info.value.problem


def test_dilemma_payoffs_in_a_scenario():
    s = parse_scenario(_scenario("dilemma-v0", "tit_for_tat",
                                 payoff={"preset": "llm_study"}))
    assert s.payoff == {"T": 3.0, "R": 2.0, "P": 0.0, "S": -1.0, "framing": "points"}
    env, _ = build(s)
    assert env.config.payoff.rstp() == (2.0, -1.0, 3.0, 0.0)
    assert parse_scenario(_scenario("dilemma-v0", "tit_for_tat")).payoff["T"] == 5.0
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario("dilemma-v0", "tit_for_tat", payoff={"preset": "nope"}),
                       "s.yaml")
    assert info.value.path == "payoff"
    assert "unknown payoff preset 'nope'; allowed: classic, llm_study, prison_years" in \
        info.value.problem
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario("dilemma-v0", "tit_for_tat", payoff={"s_plus": 2.0}),
                       "s.yaml")
    assert (info.value.path, info.value.problem) == ("payoff.s_plus", "unknown key; allowed: "
                                                     "P, R, S, T, framing")
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario("sandbox-v0", "honest", payoff={"T": 5.0}), "s.yaml")
    assert info.value.path == "payoff.T"


def test_a_strategy_that_needs_more_history_than_shown_is_a_policy_error():
    env = envs.make("dilemma-v0", history_length=1, n_epochs=1, steps_per_epoch=3)
    pol = STRATEGY_POLICIES["tit_for_two_tats"](seed=0)
    with pytest.raises(PolicyError, match="reads the last 2 moves; the environment shows 1 "
                                          r"\(set history_length >= 2\)"):
        rollout(env, dict.fromkeys(env.possible_agents, pol), seed=0)


def test_strategy_policy_plays_only_where_a_game_is():
    env = envs.make("dilemma-v0", n_agents=4, network={"topology": "star"}, max_neighbors=3)
    env.reset(seed=0)
    env.unwrapped.set_frozen([1], lever="test")
    batch = ObsBatch.from_env(env.unwrapped)
    act = STRATEGY_POLICIES["always_defect"]().act_arrays(batch)
    mask_d = batch.action_mask[:, 1::2].astype(bool)
    assert (act[~mask_d] == 0).all() and (act[mask_d] == 1).all()
    assert act[1].sum() == 0 and act[0].sum() == 2  # the hub plays leaves 2 and 3 only


def test_governance_stacks_on_a_dilemma_scenario(tmp_path):
    """A truth-mode audit catches executed defections: always-defect pays for it."""
    rows = {}
    for label, gov in (("none", None), ("audit", {"random_audit": {
            "probability": 0.5, "penalty": 2.0, "mode": "truth"}})):
        s = parse_scenario({
            "name": "g", "env": "dilemma-v0",
            "agents": [{"type": "always_defect", "count": 3},
                       {"type": "always_cooperate", "count": 3}],
            "network": {"topology": "complete"}, "governance": gov,
            "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 1}})
        env, policies = build(s)
        rows[label] = rollout(env, policies, seed=1)
    assert rows["audit"][0]["payoff_always_defect"] < rows["none"][0]["payoff_always_defect"]
    assert rows["audit"][0]["payoff_always_cooperate"] == \
        rows["none"][0]["payoff_always_cooperate"]
    assert rows["audit"][0]["gov_audits"] > 0


def test_dilemma_log_replays_to_the_same_metrics(tmp_path):
    s = parse_scenario({
        "name": "log", "env": "dilemma-v0",
        "agents": [{"type": "tit_for_tat", "count": 4}, {"type": "random", "count": 4}],
        "network": {"topology": "small_world", "k": 4},
        "env_params": {"noise": 0.05, "perception_noise": 0.1},
        "simulation": {"n_epochs": 3, "steps_per_epoch": 4, "seed": 5}})
    path = tmp_path / "events.jsonl"
    env, policies = build(s, event_log=path)
    rows = rollout(env, policies, seed=5)
    env.close()
    np.testing.assert_equal(metrics_from_events(path), rows)
    kinds = set(envs.core.events.replay(path).interactions().kind.tolist())
    assert kinds == {int(InteractionType.GAME)}


def _distsafe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "baselines.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_runs_and_replays_the_dilemma_scenario(tmp_path):
    out = tmp_path / "run"
    res = _distsafe("run", str(ROOT / "configs" / "dilemma_network.yaml"), "--out", str(out),
                    "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (out / "metrics.csv").read_text().count("\n") == 11  # header + 10 epochs
    rep = _distsafe("replay", str(out / "events.jsonl"), "--out", str(tmp_path / "r.csv"),
                    cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "r.csv").read_text() == (out / "metrics.csv").read_text()
    again = _distsafe("run", str(ROOT / "configs" / "dilemma_network.yaml"), "--out",
                      str(out), "--resume", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # a complete run resumes to itself
    assert (out / "metrics.csv").read_text() == (tmp_path / "r.csv").read_text()


def test_classic_names_are_strategy_short_names():
    assert [make_strategy(x).label for x in CLASSIC] == CLASSIC


def test_readme_round_robin_table_is_true():
    """README's matrix is what ``distsafe tournament`` computes (the classic seven, 200 turns
    x 10 repetitions, noise-free, default payoffs, seed 0)."""
    text = (ROOT / "README.md").read_text()
    marker = "<!-- round robin: regenerate with `distsafe tournament`; a test checks it -->"
    assert marker in text
    block = text.split(marker, 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    result = round_robin(CLASSIC, turns=200, repetitions=10, noise=0.0, seed=0)
    assert block.strip() == result.table().strip()
    R, S, T, P = result.payoffs
    assert ((result.payoff_matrix >= S) & (result.payoff_matrix <= T)).all()
    assert result.payoff_matrix[CLASSIC.index("AC"), CLASSIC.index("AC")] == R
    assert result.wins[CLASSIC.index("TFT")] == 0


def test_a_freeze_from_a_cost_hook_takes_effect_next_round():
    """A lever may freeze while the round's games are paid (an audit's listener): the round
    is paid to the agents who played it, and the frozen agent sits out from the next."""
    from wrappers.random_audit import RandomAudit

    env = RandomAudit(envs.make("dilemma-v0", n_agents=6, max_neighbors=2,
                                network={"topology": "ring"}), probability=1.0)
    base = env.unwrapped
    env.reset(seed=0)
    base.set_frozen([0], lever="test")

    def swap(lever, data):
        if data.get("hit_initiators"):
            base.set_frozen([0], False, lever="test")
            base.set_frozen([3], True, lever="test")

    base.add_listener(swap)
    actions = np.zeros((6, 2), dtype=np.int64)
    actions[3] = 1                            # agent 3 defects on both neighbours
    rewards = base.step_arrays(actions).copy()
    batch = base.last_batch
    expected = np.bincount(batch.initiator, weights=batch.payoff_a, minlength=6) + \
        np.bincount(batch.counterparty, weights=batch.payoff_b, minlength=6)
    np.testing.assert_array_equal(rewards, expected)
    assert rewards[0] == 0.0 and 0 not in batch.initiator  # agent 0 sat this round out
    assert base.reputation[3] < 0 < base.reputation[2]
    base.step_arrays(np.zeros((6, 2), dtype=np.int64))
    assert 3 not in base.last_batch.initiator and 0 in base.last_batch.initiator


def test_cutting_edges_while_games_are_paid_is_refused():
    env = envs.make("dilemma-v0", n_agents=6, network={"topology": "ring", "dynamic": True})
    env.reset(seed=0)
    env.add_cost_hook(lambda batch: env.cut_edges([0]))
    with pytest.raises(RuntimeError, match="cut_edges\\(\\) from a cost or weight hook"):
        env.step_arrays(np.zeros((6, env.K), dtype=np.int64))


@pytest.mark.parametrize("env_id", ["dilemma-v0", "sandbox-v0"])
def test_a_copied_or_pickled_env_observes_its_own_arrays(env_id):
    import copy
    import pickle

    env = envs.make(env_id, n_agents=3, n_epochs=1, steps_per_epoch=4)
    env.reset(seed=0)
    _ = env.infos["agent_0"]["view"]  # a cached info must not survive the copy
    for twin in (copy.deepcopy(env), pickle.loads(pickle.dumps(env))):
        obs, _, _, _, infos = twin.step(dict(zip(twin.possible_agents,
                                                 twin.sample_actions(np.random.default_rng(1)))))
        for name, arr in twin.obs_arrays.named().items():
            assert all(np.shares_memory(obs[a][name], arr) for a in twin.possible_agents)
        assert infos["agent_0"]["view"]["step"] == 1


@pytest.mark.parametrize("lever, params", [
    ("transaction_tax", {"rate": 0.1}), ("vote_normalization", {"k": 2.0}),
    ("collusion_detector", {"z_threshold": 2.0})])
def test_levers_that_do_not_apply_to_the_dilemma_are_refused(lever, params):
    from wrappers.stack import LEVERS

    with pytest.raises(ValueError, match=f"{lever} acts on .* which dilemma-v0 does not have"):
        LEVERS[lever](envs.make("dilemma-v0"), **params)
    with pytest.raises(ConfigError) as info:
        parse_scenario(_scenario("dilemma-v0", "tit_for_tat", governance={lever: params}),
                       "s.yaml")
    assert info.value.path == f"governance.{lever}"
    assert LEVERS[lever].refuses("sandbox-v0") is None


def test_bankruptcy_needs_positive_initial_resources():
    with pytest.raises(ValueError, match="initial_resources > 0"):
        envs.make("dilemma-v0", bankruptcy=True)
    assert envs.make("dilemma-v0", bankruptcy=True, initial_resources=5.0).config.bankruptcy


def test_validate_catches_a_strategy_that_cannot_read_its_history(tmp_path):
    path = tmp_path / "tf2t.yaml"
    path.write_text("name: tf2t\nenv: dilemma-v0\nagents: [{type: tit_for_two_tats, count: 3}]"
                    "\nenv_params: {history_length: 1}\n"
                    "simulation: {n_epochs: 1, steps_per_epoch: 3}\n")
    res = _distsafe("validate", str(path), cwd=tmp_path)
    assert res.returncode == 2
    assert ("agents[0].type: 'tit_for_two_tats' fails on the first observation of dilemma-v0: "
            "ValueError: tit_for_two_tats reads the last 2 moves") in res.stderr


def test_help_prints():
    res = _distsafe("--help", cwd=ROOT)
    assert res.returncode == 0 and "compare" in res.stdout and "tournament" in res.stdout
