"""dilemma-v0, the iterated prisoner's dilemma on a network: PettingZoo conformance, seeding
and determinism, both doors (with and without governance levers), the game's payoffs, the
observations and masks, execution and perception noise with their posterior labels, soft and
realized rewards, the records, mutual neighbour slots, dynamic networks, errors and the event
log. No mocks: every test drives a real ``envs.make("dilemma-v0", ...)``.

Sections: helpers; 1. API and seeding; 2. determinism and doors; 3. payoffs; 4. observations
and masks; 5. noise and labels; 6. rewards and records; 7. mutual slots; 8. dynamic networks;
9. errors; 10. event log.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from envcheck import assert_same_trace, random_episode_in_space
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from pydantic import ValidationError

import envs
from envs.core.api import ActionError
from envs.core.events import replay
from envs.core.records import InteractionBatch, InteractionType
from envs.dilemma import NEIGHBOR_FEATURES, PAYOFF_PRESETS, SELF_FEATURES, DilemmaConfig
from envs.dilemma import env as aec_env
from wrappers.stack import governance_stack

C, D = 0, 1
_S = {k: i for i, k in enumerate(SELF_FEATURES)}
_N = {k: i for i, k in enumerate(NEIGHBOR_FEATURES)}
GAME = int(InteractionType.GAME)

#: configs for the API, seed, determinism and door tests
CONFIGS = {
    "two": {"n_epochs": 2, "steps_per_epoch": 5},
    "ring": {"n_agents": 6, "network": {"topology": "ring"}, "n_epochs": 2,
             "steps_per_epoch": 4},
    "small_world_noisy": {"n_agents": 12, "network": {"topology": "small_world", "k": 4},
                          "noise": 0.1, "perception_noise": 0.2, "n_epochs": 2,
                          "steps_per_epoch": 4},
    # hubs with up to ~15 neighbours but K = 3: mutual slot selection decides who plays
    "scale_free_capped": {"n_agents": 40, "max_neighbors": 3, "noise": 0.05,
                          "network": {"topology": "scale_free", "m": 2},
                          "n_epochs": 2, "steps_per_epoch": 3},
    "copying": {"n_agents": 5, "copy_observations": True, "n_epochs": 1, "steps_per_epoch": 4},
    "dynamic_realized": {"n_agents": 10, "reward_mode": "realized", "perception_noise": 0.1,
                         "network": {"topology": "small_world", "k": 4, "dynamic": True,
                                     "decay": 0.3, "min_weight": 0.3},
                         "n_epochs": 3, "steps_per_epoch": 3},
}


def make(**config):
    return envs.make("dilemma-v0", **config)


def obs_copy(base) -> dict[str, np.ndarray]:
    """Every observation array of every agent (a copy: the env updates them in place)."""
    out = {k: v.copy() for k, v in base.obs_arrays.named().items()}
    out["action_mask"] = base.obs_arrays.action_mask.copy()
    return out


def record_rewards(batch: InteractionBatch, n: int) -> np.ndarray:
    """Per agent: payoff_a of the records it initiated plus payoff_b of those it received."""
    return (np.bincount(batch.initiator, weights=batch.payoff_a, minlength=n)
            + np.bincount(batch.counterparty, weights=batch.payoff_b, minlength=n))


def play(env, seed: int, door: str, action_seed: int = 7, actions_fn=None) -> list[dict]:
    """One whole episode through ``door`` ("dict": ``env.step``; "arrays": ``step_arrays``).

    Actions are drawn with ``sample_actions`` from a generator seeded with ``action_seed``
    (or given by ``actions_fn(t, base)``). Returns per step: the actions, the rewards, every
    observation array, the step's records (as columns) and the frozen mask.
    """
    base = env.unwrapped
    agents = list(base.possible_agents)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(action_seed)
    trace: list[dict] = [{"obs": obs_copy(base)}]
    # the dict door's observations are views of the batched door's arrays
    for name in ("self", "neighbors", "their_moves", "my_moves"):
        assert np.array_equal(obs[agents[-1]][name], trace[0]["obs"][name][-1])
    for t in range(base.max_steps):
        actions = base.sample_actions(rng) if actions_fn is None else actions_fn(t, base)
        frozen_before = base.frozen_mask()
        if door == "dict":
            obs, rewards, terms, truncs, _ = env.step(dict(zip(agents, actions)))
            reward = np.array([rewards[a] for a in agents])
            assert not any(terms.values())
            assert all(truncs.values()) == (t == base.max_steps - 1)
            i = len(agents) // 2
            assert np.array_equal(obs[agents[i]]["my_moves"], base.obs_arrays.my_moves[i])
        else:
            reward = base.step_arrays(actions).copy()
        trace.append({"actions": actions.copy(), "reward": reward,
                      "obs": obs_copy(base), "batch": base.last_batch.columns(),
                      "frozen_before": frozen_before, "frozen": base.frozen_mask(),
                      "reputation": base.get_reputation()})
    assert base.agents == []
    return trace


def slot_of(base, i: int, j: int) -> int:
    """The slot in which agent ``i`` shows agent ``j``."""
    ks = np.flatnonzero(base.slots.mask[i] & (base.slots.nb[i] == j))
    assert len(ks) == 1, (i, j)
    return int(ks[0])


def toward(base, moves: dict[tuple[int, int], int], default: int = C) -> np.ndarray:
    """An action array: agent i plays ``moves[(i, j)]`` toward neighbour j (else ``default``)
    in every slot that holds a neighbour; empty slots play 0."""
    slots = base.slots
    a = np.zeros(slots.mask.shape, dtype=np.int64)
    for i, k in zip(*np.nonzero(slots.mask)):
        a[i, k] = moves.get((int(i), int(slots.nb[i, k])), default)
    return a


def pairs_of(batch: InteractionBatch) -> set[tuple[int, int]]:
    return set(zip(batch.initiator.tolist(), batch.counterparty.tolist()))


# ===================================================================== 1. API and seeding

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parallel_api(name):
    env = make(**CONFIGS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the API test reports some problems as warnings only
        parallel_api_test(env, num_cycles=10 * env.max_steps)
    assert env.agents == [] and env.t == env.max_steps  # it ran to truncation


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parallel_seed(name):
    parallel_seed_test(lambda: make(**CONFIGS[name]))


def test_aec_api():
    api_test(aec_env(n_agents=4, network={"topology": "ring"}, n_epochs=1, steps_per_epoch=6),
             num_cycles=100)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_observations_in_space_and_truncation(name):
    env = make(**CONFIGS[name])
    random_episode_in_space(env, seed=3)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


# ===================================================================== 2. determinism, doors

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_whole_episode_is_deterministic(name):
    env = make(**CONFIGS[name])
    first = play(env, seed=11, door="arrays")
    again = play(env, seed=11, door="arrays")  # the same env object, reset again
    fresh = play(make(**CONFIGS[name]), seed=11, door="arrays")
    assert_same_trace(first, again)
    assert_same_trace(first, fresh)
    assert sum(len(s["batch"]["p"]) for s in first[1:]) > 0


def test_different_seed_differs_under_noise():
    """Same actions every round (all C), two agents: only the noise draws can differ."""
    def moves(seed):
        env = make(noise=0.3, n_epochs=1, steps_per_epoch=40)
        trace = play(env, seed=seed, door="arrays",
                     actions_fn=lambda t, b: np.zeros((2, b.K), dtype=np.int64))
        return np.concatenate([s["batch"]["v"] for s in trace[1:]])

    a, b, a_again = moves(1), moves(2), moves(1)
    assert np.array_equal(a, a_again)
    assert not np.array_equal(a, b)
    assert (a == -1).any() and (b == -1).any()  # the all-C actions did flip


def test_no_noise_no_seed_dependence():
    """Without noise the two-agent game has nothing random: any seed plays alike."""
    a = play(make(n_epochs=1, steps_per_epoch=6), seed=1, door="arrays")
    b = play(make(n_epochs=1, steps_per_epoch=6), seed=2, door="arrays")
    assert_same_trace(a, b)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_both_doors_agree(name):
    by_dict = play(make(**CONFIGS[name]), seed=5, door="dict")
    by_arrays = play(make(**CONFIGS[name]), seed=5, door="arrays")
    assert_same_trace(by_dict, by_arrays)


#: every lever that applies to the dilemma, tuned so that each acts on a 16-agent dilemma
#: within a few epochs (transaction tax, vote normalisation and the collusion detector act
#: on transfers, votes and partner choice, which the dilemma does not have: refused)
LEVERS = {
    "reputation_decay": {"rate": 0.8},
    "staking": {"min_stake": 2.0, "slash_fraction": 0.2},
    "circuit_breaker": {"window": 4, "threshold": 0.6, "violations": 2, "freeze_epochs": 1},
    "random_audit": {"probability": 0.3, "penalty_multiplier": 2.0, "mode": "truth",
                     "miss_rate": 0.2},
    "reputation_disconnect": {"threshold": -0.3},
}
GOVERNED = {"n_agents": 16, "payoff": {"preset": "llm_study"}, "initial_resources": 4.0,
            "noise": 0.05, "perception_noise": 0.1, "n_epochs": 4, "steps_per_epoch": 4,
            "network": {"topology": "small_world", "k": 4, "dynamic": True}}


def governed(levers=LEVERS, **overrides):
    env = governance_stack(make(**{**GOVERNED, **overrides}), levers)
    fired: list[str] = []
    env.unwrapped.add_listener(lambda lever, data: fired.append(lever))
    return env, fired


def defectors(t, base):
    """Agents 0-3 defect on everyone, the rest cooperate (so the levers have work)."""
    a = np.zeros(base.slots.mask.shape, dtype=np.int64)
    a[:4] = base.slots.mask[:4]
    return a & base.obs_arrays.action_mask[:, 1::2]


def test_governance_stack_both_doors_agree_and_every_lever_acts():
    env_d, fired_d = governed()
    env_a, fired_a = governed()
    by_dict = play(env_d, seed=3, door="dict", actions_fn=defectors)
    by_arrays = play(env_a, seed=3, door="arrays", actions_fn=defectors)
    assert_same_trace(by_dict, by_arrays)
    assert fired_d == fired_a
    # every lever acted
    acted = set(fired_d)
    for lever in LEVERS:
        assert lever in acted, lever
    # an agent frozen when a round starts plays no game in it
    froze = False
    for s in by_dict[1:]:
        who = np.flatnonzero(s["frozen_before"])
        froze |= len(who) > 0
        b = s["batch"]
        assert not np.isin(b["initiator"], who).any()
        assert not np.isin(b["counterparty"], who).any()
        assert (s["obs"]["action_mask"][s["frozen"], 1::2] == 0).all()
    assert froze
    # the same episode without levers differs (the levers did something)
    plain = play(make(**GOVERNED), seed=3, door="arrays", actions_fn=defectors)
    assert not all(np.array_equal(x["reward"], y["reward"])
                   for x, y in zip(plain[1:], by_arrays[1:]))


def test_audit_charges_executed_defections_in_the_records():
    """Truth-mode audits see the executed move: costs only on records with v = -1, and the
    rewards still equal the per-agent sums of the records (no lever adds rewards here)."""
    env, fired = governed({"random_audit": {"probability": 0.5, "penalty_multiplier": 2.0},
                           "circuit_breaker": {"window": 2, "threshold": 0.9,
                                               "violations": 1, "freeze_epochs": 0},
                           "reputation_decay": {"rate": 0.5}})
    trace = play(env, seed=4, door="arrays", actions_fn=defectors)
    n = env.unwrapped.config.n_agents
    charged = 0
    for s in trace[1:]:
        b = InteractionBatch(**s["batch"])
        assert (b.c_a[b.v > 0] == 0).all() and (b.c_b == 0).all()
        assert set(np.unique(b.c_a)) <= {0.0, 2.0}
        charged += int((b.c_a > 0).sum())
        np.testing.assert_allclose(record_rewards(b, n), s["reward"], rtol=0, atol=1e-12)
    assert charged > 0 and "circuit_breaker" in fired


def test_lever_state_resets_with_the_env():
    env, _ = governed()
    a = play(env, seed=8, door="arrays", actions_fn=defectors)
    b = play(env, seed=8, door="arrays", actions_fn=defectors)
    assert_same_trace(a, b)


# ===================================================================== 3. payoffs

PAYOFFS = {  # config block -> (R, S, T, P)
    "default": (None, (3.0, 0.0, 5.0, 1.0)),
    "classic": ({"preset": "classic"}, (3.0, 0.0, 5.0, 1.0)),
    "llm_study": ({"preset": "llm_study"}, (2.0, -1.0, 3.0, 0.0)),
    "prison_years": ({"preset": "prison_years"}, (-1.0, -10.0, 0.0, -5.0)),
    "numbers": ({"T": 4.0, "R": 2.5, "P": -1.0, "S": -3.0}, (2.5, -3.0, 4.0, -1.0)),
}


@pytest.mark.parametrize("name", sorted(PAYOFFS))
@pytest.mark.parametrize("mode", ["soft", "realized"])
def test_two_agent_payoffs_exact(name, mode):
    block, (R, S, T, P) = PAYOFFS[name]
    expected = {(C, C): (R, R), (C, D): (S, T), (D, C): (T, S), (D, D): (P, P)}
    cfg = {"reward_mode": mode} if block is None else {"payoff": block, "reward_mode": mode}
    env = make(n_epochs=1, steps_per_epoch=4, **cfg)
    env.reset(seed=0)
    total = np.zeros(2)
    for m0, m1 in expected:
        obs, rewards, *_ = env.step({"agent_0": np.array([m0]), "agent_1": np.array([m1])})
        got = (rewards["agent_0"], rewards["agent_1"])
        assert got == expected[(m0, m1)], (m0, m1)
        total += got
        b = env.last_batch
        assert b.payoff_a.tolist() == list(got)  # rows: agent_0's move, then agent_1's
    assert obs["agent_0"]["self"][_S["payoff_so_far"]] == np.float32(total[0])


def test_presets_and_framing():
    assert DilemmaConfig(payoff={"preset": "prison_years"}).payoff.framing == "prison_years"
    assert DilemmaConfig().payoff.is_dilemma
    assert all(DilemmaConfig(payoff={"preset": p}).payoff.is_dilemma for p in PAYOFF_PRESETS)
    env = make(payoff={"preset": "prison_years"})
    env.reset(seed=0)
    text = env.payoff_text()
    assert text["CC"] == "you get 1 year in prison, they get 1 year in prison"
    assert text["CD"] == "you get 10 years in prison, they get 0 years in prison"
    assert make().payoff_text()["DC"] == "you get 5 points, they get 0 points"


def test_preset_with_numbers_is_a_config_error():
    with pytest.raises(ValidationError, match="not both") as exc:
        make(payoff={"preset": "llm_study", "T": 1})
    assert "payoff" in str(exc.value) and "T" in str(exc.value)


def test_unknown_preset_lists_the_allowed_names():
    with pytest.raises(ValidationError) as exc:
        make(payoff={"preset": "chicken"})
    msg = str(exc.value)
    assert "chicken" in msg and "payoff" in msg
    for name in PAYOFF_PRESETS:
        assert name in msg


# ===================================================================== 4. observations

def test_move_windows_shift_most_recent_last():
    H = 3
    env = make(history_length=H, n_epochs=1, steps_per_epoch=6)
    obs, _ = env.reset(seed=0)
    mine_seq = [C, D, D, C, D, C]
    theirs_seq = [D, C, D, D, C, C]
    o0 = obs["agent_0"]
    assert (o0["their_moves"] == 0).all() and o0["neighbors"][0, _N["rounds"]] == 0
    for t, (m0, m1) in enumerate(zip(mine_seq, theirs_seq), start=1):
        obs, rewards, *_ = env.step({"agent_0": np.array([m0]), "agent_1": np.array([m1])})
        o0, o1 = obs["agent_0"], obs["agent_1"]
        r = min(t, H)
        want_theirs = [0] * (H - r) + theirs_seq[t - r:t]
        want_mine = [0] * (H - r) + mine_seq[t - r:t]
        assert o0["their_moves"][0].tolist() == want_theirs, t
        assert o0["my_moves"][0].tolist() == want_mine, t
        assert o1["their_moves"][0].tolist() == want_mine, t   # the partner's mirror view
        assert o1["my_moves"][0].tolist() == want_theirs, t
        assert (o0["their_moves"][1:] == 0).all()              # empty slots stay zero
        nb = o0["neighbors"][0]
        assert nb[_N["rounds"]] == t
        assert nb[_N["their_cooperation"]] == pytest.approx(theirs_seq[:t].count(C) / t)
        assert nb[_N["my_cooperation"]] == pytest.approx(mine_seq[:t].count(C) / t)
        assert nb[_N["their_defected"]] == float(D in theirs_seq[:t])
        assert nb[_N["edge_weight"]] == pytest.approx(0.5)
        assert nb[_N["reputation"]] == pytest.approx(env.reputation[1])
        assert (o0["neighbors"][1:] == 0).all()
        assert o0["self"][_S["last_reward"]] == rewards["agent_0"]
        assert o0["self"][_S["episode_progress"]] == pytest.approx(t / 6)
        view = env.view("agent_0")["neighbors"][0]
        assert view["their_moves"] == ["CD"[m] for m in theirs_seq[max(0, t - H):t]]
    # a partner that only ever cooperated is never marked as having defected
    env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step({"agent_0": np.zeros(1, np.int64), "agent_1": np.zeros(1, np.int64)})
    assert obs["agent_0"]["neighbors"][0, _N["their_defected"]] == 0
    assert obs["agent_0"]["neighbors"][0, _N["their_cooperation"]] == 1


def test_action_mask_allows_defection_only_where_a_game_is():
    env = make(n_agents=6, max_neighbors=4, network={"topology": "ring"})
    obs, _ = env.reset(seed=0)
    for i, a in enumerate(env.possible_agents):
        o = obs[a]
        assert o["neighbor_mask"].tolist() == [1, 1, 0, 0]
        assert [m.tolist() for m in o["action_mask"]] == [[1, 1], [1, 1], [1, 0], [1, 0]]
        assert sorted(env.slots.nb[i, :2].tolist()) == sorted([(i - 1) % 6, (i + 1) % 6])
        assert o["self"][_S["partners"]] == 2
    assert env.action_masks().shape == (6, 8)
    # D in an empty slot is masked; it plays nothing (only the two real slots make games)
    env.step_arrays(np.ones((6, 4), dtype=np.int64))
    assert len(env.last_batch) == 12 and (env.last_batch.v == -1).all()


def test_frozen_agent_plays_nothing_and_partners_masks_follow():
    env = make(n_agents=6, max_neighbors=4, network={"topology": "ring"}, n_epochs=1,
               steps_per_epoch=5)
    obs, _ = env.reset(seed=0)
    base = env.unwrapped
    env.step({a: np.array([D, C, 0, 0]) for a in env.possible_agents})  # some history first
    k12 = slot_of(base, 1, 2)
    before = (obs["agent_1"]["their_moves"][k12].copy(), obs["agent_1"]["my_moves"][k12].copy(),
              obs["agent_1"]["neighbors"][k12].copy())
    assert before[0][-1] == [D, C][slot_of(base, 2, 1)]
    base.set_frozen(["agent_2"], lever="x")
    # masks follow at once, before any step
    assert [m.tolist() for m in obs["agent_2"]["action_mask"]] == [[1, 0]] * 4
    assert obs["agent_2"]["self"][_S["frozen"]] == 1
    assert obs["agent_2"]["self"][_S["partners"]] == 0
    for i in (1, 3):
        k = slot_of(base, i, 2)
        assert obs[f"agent_{i}"]["action_mask"][k].tolist() == [1, 0]
        assert obs[f"agent_{i}"]["action_mask"][1 - k].tolist() == [1, 1]
        assert obs[f"agent_{i}"]["self"][_S["partners"]] == 1
        assert obs[f"agent_{i}"]["neighbor_mask"][k] == 1  # still shown, just not played
    obs, rewards, *_ = env.step({a: np.ones(4, dtype=np.int64) for a in env.possible_agents})
    b = env.last_batch
    assert 2 not in b.initiator and 2 not in b.counterparty
    assert len(b) == 2 * 4  # the ring's 6 edges less agent_2's two
    assert rewards["agent_2"] == 0.0 and rewards["agent_1"] == 1.0  # one DD game
    # the frozen pair's history stands still (the other pair's moved on)
    assert np.array_equal(obs["agent_1"]["their_moves"][k12], before[0])
    assert np.array_equal(obs["agent_1"]["my_moves"][k12], before[1])
    assert np.array_equal(obs["agent_1"]["neighbors"][k12], before[2])
    assert obs["agent_1"]["their_moves"][1 - k12, -2:].tolist() == [
        [D, C][slot_of(base, 0, 1)], D]
    assert env.infos["agent_2"]["interactions"] == []
    # another lever's freeze is its own: lifting "y" leaves "x" in force
    base.set_frozen(["agent_2"], lever="y")
    base.set_frozen(["agent_2"], False, lever="y")
    assert base.frozen[2]
    base.set_frozen(["agent_2"], False, lever="x")
    assert not base.frozen[2]
    assert [m.tolist() for m in obs["agent_2"]["action_mask"]][:2] == [[1, 1], [1, 1]]
    env.step({a: np.ones(4, dtype=np.int64) for a in env.possible_agents})
    assert len(env.last_batch) == 12


def test_sample_actions_respect_the_masks():
    env = make(n_agents=60, max_neighbors=3, network={"topology": "scale_free", "m": 2})
    env.reset(seed=1)
    env.set_frozen([0, 1, 2], lever="x")
    rng = np.random.default_rng(0)
    draws = np.stack([env.sample_actions(rng) for _ in range(200)])
    can_defect = env.obs_arrays.action_mask[:, 1::2] == 1
    assert can_defect.any() and not can_defect.all()
    assert (draws[:, ~can_defect] == 0).all()
    assert abs(draws[:, can_defect].mean() - 0.5) < 0.02  # uniform over {C, D}
    assert (draws[:, :3] == 0).all()


def test_bankruptcy_freezes_for_good_when_on():
    def run(bankruptcy):
        env = make(n_agents=3, payoff={"preset": "llm_study"}, initial_resources=1.0,
                   bankruptcy=bankruptcy, n_epochs=1, steps_per_epoch=3)
        env.reset(seed=0)
        # agents 1 and 2 defect on agent 0, who cooperates: S + S = -2 for it
        env.step_arrays(toward(env, {(1, 0): D, (2, 0): D}))
        assert env.resources.tolist() == [-1.0, 6.0, 6.0]
        env.step_arrays(np.ones((3, 2), dtype=np.int64))
        return env

    env = run(True)
    assert env.frozen.tolist() == [True, False, False]
    assert pairs_of(env.last_batch) == {(1, 2), (2, 1)}
    assert (env.obs_arrays.action_mask[0, 1::2] == 0).all()
    with pytest.raises(ValueError, match="bankrupt"):
        env.set_frozen([0], False, lever="bankrupt")
    env = run(False)  # the default: payoffs are scores, nobody is frozen
    assert not env.frozen.any() and len(env.last_batch) == 6


def test_copy_observations_render_and_state():
    env = make(n_agents=4, copy_observations=True, render_mode="ansi")
    env.reset(seed=0)
    first, *_ = env.step({a: np.ones(3, dtype=np.int64) for a in env.possible_agents})
    kept = first["agent_0"]["their_moves"].copy()
    assert not np.shares_memory(first["agent_0"]["their_moves"], env.obs_arrays.their_moves)
    second, *_ = env.step({a: np.zeros(3, dtype=np.int64) for a in env.possible_agents})
    assert np.array_equal(first["agent_0"]["their_moves"], kept)  # a copy: left alone
    assert second["agent_0"]["their_moves"][:, -2:].tolist() == [[D, C]] * 3
    assert env.render() == ("round 2/200 epoch 0 | games 6 | cooperation 1.000 | mean p "
                            "1.000 | mean reward 9.000")
    assert env.state().shape == (4, 3)
    # without copies, the dicts are views updated in place
    env = make(n_agents=4)
    obs, _ = env.reset(seed=0)
    again, *_ = env.step({a: np.ones(3, dtype=np.int64) for a in env.possible_agents})
    assert again["agent_0"] is obs["agent_0"]
    assert obs["agent_0"]["their_moves"][:, -1].tolist() == [D] * 3


def test_infos_are_this_rounds_records():
    env = make(n_agents=4, network={"topology": "ring"}, n_epochs=1, steps_per_epoch=3)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({a: np.zeros(env.K, dtype=np.int64)
                                  for a in env.possible_agents})
    recs = infos["agent_0"]["interactions"]
    assert len(recs) == 4  # two games, two records each
    assert all("agent_0" in (r.initiator, r.counterparty) for r in recs)
    assert all(r.kind is InteractionType.GAME and r.accepted for r in recs)
    assert infos["agent_0"]["view"]["agent"] == "agent_0"
    assert infos["agent_0"]["governance"] == []


# ===================================================================== 5. noise and labels

def noisy_records(steps=40, **config) -> InteractionBatch:
    """Records of ``steps`` rounds of random play (P(C) = 0.5 per game) on a 100-agent ring
    lattice: 200 games, 400 records a round."""
    env = make(n_agents=100, network={"topology": "small_world", "k": 4,
                                      "rewire_probability": 0.0},
               n_epochs=1, steps_per_epoch=steps, **config)
    trace = play(env, seed=21, door="arrays", action_seed=22)
    return InteractionBatch.concat(InteractionBatch(**s["batch"]) for s in trace[1:])


def test_execution_noise_flips_about_the_configured_share():
    b = noisy_records(noise=0.2)
    intended_c, executed_c = b.effort == 1.0, b.v == 1
    n = len(b)
    assert n == 40 * 400
    flipped = intended_c != executed_c
    tol = 5 * np.sqrt(0.2 * 0.8 / n)  # five standard errors
    assert abs(flipped.mean() - 0.2) < tol
    for side in (intended_c, ~intended_c):  # both ways: C -> D and D -> C
        assert abs(flipped[side].mean() - 0.2) < 5 * np.sqrt(0.16 / side.sum())
    assert abs(intended_c.mean() - 0.5) < 5 * np.sqrt(0.25 / n)  # random play: P(C) = 0.5
    # without perception noise the label is the executed move itself
    assert np.array_equal(b.p, np.where(executed_c, 1.0, 0.0))
    assert np.array_equal(b.v_hat, b.v.astype(float))


def test_perception_noise_posterior_values_and_calibration():
    b = noisy_records(perception_noise=0.2, prior=0.5)
    n = len(b)
    post = DilemmaConfig(perception_noise=0.2, prior=0.5).posterior()
    assert post.tolist() == pytest.approx([0.8, 0.2], abs=1e-12)
    assert sorted(set(b.p.tolist())) == sorted(post.tolist())  # exactly the two values
    seen_c = b.v_hat == 1.0
    assert np.array_equal(b.p, np.where(seen_c, post[0], post[1]))
    assert set(np.unique(b.v_hat).tolist()) == {-1.0, 1.0}
    # no execution noise: the executed move is the intended one
    assert np.array_equal(b.v == 1, b.effort == 1.0)
    disagree = (b.v_hat != b.v).mean()
    assert abs(disagree - 0.2) < 5 * np.sqrt(0.16 / n)
    # calibration: moves are C with the prior's probability, so P(v = +1 | p) = p
    for value in post:
        rows = b.p == value
        k = rows.sum()
        assert k > 1000
        assert abs((b.v[rows] == 1).mean() - value) < 5 * np.sqrt(value * (1 - value) / k)


def test_posterior_follows_the_prior():
    post = DilemmaConfig(perception_noise=0.1, prior=0.8).posterior()
    assert post[0] == pytest.approx(0.8 * 0.9 / (0.8 * 0.9 + 0.2 * 0.1))
    assert post[1] == pytest.approx(0.8 * 0.1 / (0.8 * 0.1 + 0.2 * 0.9))
    assert DilemmaConfig(perception_noise=0.5).posterior().tolist() == [0.5, 0.5]
    assert DilemmaConfig().posterior().tolist() == [1.0, 0.0]


# ===================================================================== 6. rewards and records

def twin_index(b: InteractionBatch) -> np.ndarray:
    """For each record (i, j), the row of its twin (j, i), looked up independently."""
    row = {(i, j): r for r, (i, j) in enumerate(zip(b.initiator.tolist(),
                                                    b.counterparty.tolist()))}
    return np.array([row[(j, i)] for i, j in zip(b.initiator.tolist(),
                                                 b.counterparty.tolist())], dtype=np.int64)


REWARD_CFG = {"n_agents": 14, "network": {"topology": "small_world", "k": 4},
              "noise": 0.1, "n_epochs": 2, "steps_per_epoch": 5,
              "payoff": {"T": 4.5, "R": 3.0, "P": 0.5, "S": -1.0}}


@pytest.mark.parametrize("mode", ["soft", "realized"])
@pytest.mark.parametrize("perception", [0.0, 0.25])
def test_rewards_from_the_records(mode, perception):
    cfg = {**REWARD_CFG, "reward_mode": mode, "perception_noise": perception}
    env = make(**cfg)
    M = np.array([[3.0, -1.0], [4.5, 0.5]])  # M[my move][their move]
    n = env.config.n_agents
    trace = play(env, seed=9, door="arrays")
    for s in trace[1:]:
        b = InteractionBatch(**s["batch"])
        twin = twin_index(b)
        x = np.where(b.v == 1, C, D)                     # executed moves
        if mode == "soft":
            p_partner = b.p[twin]
            pay = p_partner * M[x, C] + (1 - p_partner) * M[x, D]
        else:
            pay = M[x, x[twin]]
        np.testing.assert_allclose(b.payoff_a, pay, rtol=0, atol=1e-12)
        expect = np.bincount(b.initiator, weights=pay, minlength=n)
        np.testing.assert_allclose(s["reward"], expect, rtol=0, atol=1e-12)


def test_soft_and_realized_coincide_without_perception_noise():
    soft = play(make(**REWARD_CFG), seed=9, door="arrays")
    real = play(make(**REWARD_CFG, reward_mode="realized"), seed=9, door="arrays")
    assert_same_trace(soft, real)
    # with perception noise they differ, though the moves are the same
    soft = play(make(**REWARD_CFG, perception_noise=0.25), seed=9, door="arrays")
    real = play(make(**REWARD_CFG, perception_noise=0.25, reward_mode="realized"), seed=9,
                door="arrays")
    assert all(np.array_equal(a["batch"]["v"], b["batch"]["v"])
               for a, b in zip(soft[1:], real[1:]))
    assert not all(np.array_equal(a["reward"], b["reward"]) for a, b in zip(soft[1:], real[1:]))


@pytest.mark.parametrize("name", ["ring", "small_world_noisy", "scale_free_capped",
                                  "dynamic_realized"])
def test_records_two_per_game(name):
    env = make(**CONFIGS[name])
    n = env.config.n_agents
    trace = play(env, seed=13, door="arrays")
    for t, s in enumerate(trace[1:]):
        b = InteractionBatch(**s["batch"])
        pairs = pairs_of(b)
        assert len(pairs) == len(b)                           # no pair twice
        assert all((j, i) in pairs for i, j in pairs)        # every game has both sides
        assert (b.kind == GAME).all() and b.accepted.all()
        assert (b.initiator != b.counterparty).all()
        assert (b.step == t).all() and (b.epoch == t // env.config.steps_per_epoch).all()
        assert (b.payoff_b == 0).all() and (b.c_a == 0).all() and (b.weight == 1).all()
        assert set(np.unique(b.v).tolist()) <= {-1, 1}
        np.testing.assert_allclose(record_rewards(b, n), s["reward"], rtol=0, atol=1e-12)
        # games per agent match the observation's partner count
        games = np.bincount(b.initiator, minlength=n)
        assert np.array_equal(games, trace[t]["obs"]["self"][:, _S["partners"]])


def test_reputation_moves_by_mean_label():
    env = make(n_agents=6, network={"topology": "ring"}, perception_noise=0.2,
               initial_reputation=1.0, n_epochs=1, steps_per_epoch=4)
    trace = play(env, seed=2, door="arrays")
    rep = np.full(6, 1.0)
    for s in trace[1:]:
        b = InteractionBatch(**s["batch"])
        games = np.bincount(b.initiator, minlength=6)
        rep = rep + np.bincount(b.initiator, weights=b.p - 0.5, minlength=6) / games
        np.testing.assert_allclose(s["reputation"], rep, rtol=0, atol=1e-12)


# ===================================================================== 7. mutual slots

def check_mutual(base) -> None:
    slots, K = base.slots, base.K
    mask, nb = slots.mask, slots.nb
    shown = {(int(i), int(nb[i, k])) for i, k in zip(*np.nonzero(mask))}
    assert all((j, i) in shown for i, j in shown)
    flat = np.flatnonzero(mask.ravel())
    assert (slots.rev[flat] >= 0).all() and np.array_equal(slots.rev[slots.rev[flat]], flat)
    rows = flat // K
    assert np.array_equal(nb.ravel()[slots.rev[flat]], rows)  # the reverse slot shows me
    net = base.network
    assert all(j in net.indices[net.indptr[i]:net.indptr[i + 1]] for i, j in shown)
    assert (mask.sum(axis=1) <= K).all()


def test_mutual_slots_play_every_edge_when_degrees_fit():
    env = make(n_agents=30, max_neighbors=8, network={"topology": "small_world", "k": 4,
                                                      "rewire_probability": 0.3},
               n_epochs=1, steps_per_epoch=2)
    env.reset(seed=4)
    assert env.network.degree.max() <= 8
    check_mutual(env)
    env.step_arrays(env.sample_actions(np.random.default_rng(0)))
    i, j, _ = env.network.edge_list()
    assert pairs_of(env.last_batch) == set(zip(i.tolist(), j.tolist())) | set(
        zip(j.tolist(), i.tolist()))


@pytest.mark.parametrize("K", [1, 2, 4])
def test_mutual_slots_cap_games_on_hubs(K):
    env = make(n_agents=200, max_neighbors=K, network={"topology": "scale_free", "m": 3},
               n_epochs=1, steps_per_epoch=2)
    env.reset(seed=6)
    deg = env.network.degree
    assert deg.max() > 3 * K  # the cap matters
    check_mutual(env)
    env.step_arrays(np.ones((200, K), dtype=np.int64))  # D everywhere: masks keep it valid
    b = env.last_batch
    games = np.bincount(b.initiator, minlength=200)
    assert games.max() == K and (games <= K).all()
    assert np.array_equal(games, env.slots.mask.sum(axis=1))
    # maximal: an edge left out has an end whose slots are all taken
    played = pairs_of(b)
    for i, j, _ in zip(*env.network.edge_list()):
        if (int(i), int(j)) not in played:
            assert games[i] == K or games[j] == K, (i, j)


def test_mutual_slots_prefer_heavier_edges():
    """A star whose hub can play one leaf: the leaf on the heaviest edge is chosen."""
    edges = [(0, j) for j in range(1, 6)]
    env = make(n_agents=6, max_neighbors=1, network={"topology": "custom", "edges": edges,
                                                     "dynamic": True, "decay": 0.0},
               n_epochs=2, steps_per_epoch=3)
    env.reset(seed=0)
    first = int(env.slots.nb[0, 0])
    assert env.slots.mask.sum() == 2
    # the shown pair cooperates: its edge gets heavier, and it keeps the slot
    for _ in range(2):
        env.step_arrays(np.zeros((6, 1), dtype=np.int64))
    assert int(env.slots.nb[0, 0]) == first
    assert env.obs_arrays.neighbors[0, 0, _N["edge_weight"]] == pytest.approx(0.7)
    # raise another leaf's edge above it by hand: the epoch end (next step) chooses again
    leaf = 5 if first != 5 else 4
    net = env.network
    e = net.indptr[0] + (leaf - 1)
    net.weights[[e, net.rev[e]]] = 1.0
    env.step_arrays(np.zeros((6, 1), dtype=np.int64))
    assert int(env.slots.nb[0, 0]) == leaf
    assert env.obs_arrays.neighbors[0, 0, _N["edge_weight"]] == 1.0
    assert env.obs_arrays.neighbors[0, 0, _N["rounds"]] == 0  # a new pair: no history
    env.step_arrays(np.zeros((6, 1), dtype=np.int64))
    assert pairs_of(env.last_batch) == {(0, leaf), (leaf, 0)}


# ===================================================================== 8. dynamic networks

def ring_dynamic(**net):
    return make(n_agents=6, max_neighbors=2, n_epochs=3, steps_per_epoch=2,
                network={"topology": "ring", "dynamic": True, **net})


def test_mutual_cooperation_strengthens_edges():
    env = ring_dynamic(decay=0.0)
    env.reset(seed=0)
    # 0-1: both C; 1-2: C against D; everything else D
    moves = {(0, 1): C, (1, 0): C, (1, 2): C}
    env.step_arrays(toward(env, moves, default=D))
    w = {(int(i), int(j)): float(x) for i, j, x in zip(*env.network.edge_list())}
    assert w[(0, 1)] == pytest.approx(0.6)
    assert w[(1, 2)] == pytest.approx(0.5) and w[(2, 3)] == pytest.approx(0.5)
    assert env.obs_arrays.neighbors[0, slot_of(env, 0, 1), _N["edge_weight"]] == \
        pytest.approx(0.6)
    env.step_arrays(toward(env, moves, default=D))
    w = {(int(i), int(j)): float(x) for i, j, x in zip(*env.network.edge_list())}
    assert w[(0, 1)] == pytest.approx(0.7)


def test_static_network_weights_never_change():
    env = make(n_agents=6, max_neighbors=2, network={"topology": "ring"}, n_epochs=2,
               steps_per_epoch=2)
    env.reset(seed=0)
    while env.agents:
        env.step_arrays(np.zeros((6, 2), dtype=np.int64))
    assert (env.network.weights == 0.5).all() and env.network.n_edges == 6


def test_decay_prune_and_history_carried_across_a_rebuild():
    env = ring_dynamic(decay=0.5, min_weight=0.3)
    env.reset(seed=0)
    friends = {(1, 2), (2, 1), (4, 5), (5, 4)}
    moves = dict.fromkeys(friends, C)
    k12 = slot_of(env, 1, 2)
    assert k12 == 1  # agent 1 shows 0 in slot 0, 2 in slot 1
    for _ in range(2):  # one epoch: friends cooperate, everyone else defects
        env.step_arrays(toward(env, moves, default=D))
    # friends: (0.5 + 2 * 0.1) * 0.5 = 0.35 kept; others 0.25 pruned
    i, j, w = env.network.edge_list()
    assert set(zip(i.tolist(), j.tolist())) == {(1, 2), (4, 5)}
    np.testing.assert_allclose(w, [0.35, 0.35])
    # the slots follow: agent 1 now shows agent 2 in slot 0, with its history
    assert slot_of(env, 1, 2) == 0
    assert env.slots.mask.sum(axis=1).tolist() == [0, 1, 1, 0, 1, 1]
    nb = env.obs_arrays.neighbors
    assert nb[1, 0, _N["rounds"]] == 2 and nb[1, 0, _N["their_cooperation"]] == 1
    assert nb[1, 0, _N["edge_weight"]] == pytest.approx(0.35)
    assert env.obs_arrays.their_moves[1, 0, -2:].tolist() == [C, C]
    assert (nb[1, 1] == 0).all() and (env.obs_arrays.their_moves[1, 1] == 0).all()
    assert env.obs_arrays.action_mask[0].tolist() == [1, 0, 1, 0]  # agent 0: no game
    assert env.obs_arrays.action_mask[1].tolist() == [1, 1, 1, 0]
    env.step_arrays(np.ones((6, 2), dtype=np.int64))
    assert pairs_of(env.last_batch) == friends
    assert env.obs_arrays.neighbors[1, 0, _N["rounds"]] == 3
    assert env.obs_arrays.their_moves[1, 0, -3:].tolist() == [C, C, D]


def test_cut_edges_on_a_dynamic_network():
    env = ring_dynamic()
    obs, _ = env.reset(seed=0)
    env.step_arrays(np.zeros((6, 2), dtype=np.int64))
    assert env.cut_edges(["agent_0"]) == 2
    assert env.network.degree.tolist() == [0, 1, 2, 2, 2, 1]
    check_mutual(env)
    # the masks follow at once (a cut between steps, as a user or a lever makes it)
    assert [m.tolist() for m in obs["agent_0"]["action_mask"]] == [[1, 0], [1, 0]]
    assert obs["agent_1"]["neighbor_mask"].sum() == 1
    assert obs["agent_0"]["self"][_S["partners"]] == 0
    env.step_arrays(np.ones((6, 2), dtype=np.int64))
    b = env.last_batch
    assert len(b) == 8 and 0 not in b.initiator and 0 not in b.counterparty
    # the surviving pairs kept their history (two rounds now)
    k = slot_of(env, 2, 3)
    assert env.obs_arrays.neighbors[2, k, _N["rounds"]] == 2
    assert env.cut_edges([0]) == 0


def test_cut_edges_refuses_a_static_network():
    env = make(n_agents=4, network={"topology": "ring"})
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"dynamic network \(network.dynamic: true\)"):
        env.cut_edges(["agent_0"])


# ===================================================================== 9. errors

def test_action_out_of_space_names_agent_dimension_and_values():
    env = make(n_agents=3, max_neighbors=2, network={"topology": "ring"})
    env.reset(seed=0)
    bad = np.zeros((3, 2), dtype=np.int64)
    bad[1, 1] = 2
    with pytest.raises(ActionError) as exc:
        env.step_arrays(bad)
    msg = str(exc.value)
    assert "'agent_1'" in msg and "dimension 1" in msg and "'move_1'" in msg
    assert "0..1" in msg and "got 2" in msg
    with pytest.raises(ActionError, match=r"'agent_2'.*dimension 0 \('move_0'\).*got -1"):
        env.step({"agent_2": np.array([-1, 0])})
    assert env.t == 0  # nothing was played


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.5])
def test_non_integer_actions_are_refused(value):
    env = make(n_agents=3)
    env.reset(seed=0)
    act = np.zeros(2)
    act[1] = value
    with pytest.raises(ActionError, match=r"'agent_1'.*must be integers.*dimension 1"):
        env.step({"agent_0": np.zeros(2), "agent_1": act})
    with pytest.raises(ActionError, match="agent_1"):
        env.step_arrays(np.stack([np.zeros(2), act, np.zeros(2)]))
    assert env.t == 0


def test_malformed_action_containers():
    env = make(n_agents=5)
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"shape \(5, 4\)"):
        env.step_arrays(np.zeros((5, 3), dtype=np.int64))
    with pytest.raises(ActionError, match="4 entries"):
        env.step({"agent_0": [0, 1]})
    with pytest.raises(ActionError, match="unknown agents"):
        env.step({"agent_7": np.zeros(4, dtype=np.int64)})
    # a missing agent plays the no-op (C everywhere)
    env = make()
    env.reset(seed=0)
    env.step({"agent_0": np.array([1])})
    assert env.last_batch.v.tolist() == [-1, 1]


def test_step_before_reset():
    with pytest.raises(RuntimeError, match="reset"):
        make().step_arrays(np.zeros((2, 1), dtype=np.int64))
    with pytest.raises(RuntimeError, match="reset"):
        make().sample_actions()


@pytest.mark.parametrize("field, value, words", [
    ("noise", 1.5, "less than or equal to 1"),
    ("noise", -0.1, "greater than or equal to 0"),
    ("perception_noise", 0.6, "less than or equal to 0.5"),
    ("prior", 1.0, "less than 1"),
    ("prior", 0.0, "greater than 0"),
    ("n_agents", 1, "greater than or equal to 2"),
    ("max_neighbors", 0, "greater than or equal to 1"),
    ("history_length", 0, "greater than or equal to 1"),
    ("reward_mode", "expected", "soft"),
    ("noise", float("nan"), "finite"),
    ("n_agents", 2.0, "integer"),
    ("bankruptcy", "yes", "bool"),
])
def test_bad_config_names_the_field(field, value, words):
    with pytest.raises(ValidationError) as exc:
        make(**{field: value})
    msg = str(exc.value)
    assert field in msg and words in msg, msg


def test_config_errors_that_need_several_fields():
    with pytest.raises(ValidationError, match="groups"):
        make(n_agents=3, groups=["a", "b"])
    with pytest.raises(ValidationError, match=r"network.edges\[0\].*out of range"):
        make(n_agents=3, network={"topology": "custom", "edges": [(0, 5)]})
    with pytest.raises(ValidationError, match="colour"):
        make(colour="red")


# ===================================================================== 10. event log

def test_event_log_replays_the_interactions(tmp_path):
    path = tmp_path / "run.jsonl"
    cfg = {**CONFIGS["dynamic_realized"], "noise": 0.1}
    env = governance_stack(make(**cfg, event_log=path),
                           {"random_audit": {"probability": 0.3}})
    trace = play(env, seed=17, door="dict")
    env.close()
    produced = InteractionBatch.concat(InteractionBatch(**s["batch"]) for s in trace[1:])
    assert len(produced) > 0
    r = replay(path)
    assert r.complete and r.run_start.env == "dilemma-v0"
    assert r.run_start.agents == env.unwrapped.possible_agents
    assert r.interactions().equals(produced)
    assert len(r.epoch_ends) == cfg["n_epochs"]
    by_epoch = r.by_epoch()
    assert sorted(by_epoch) == list(range(cfg["n_epochs"]))
    for epoch, b in by_epoch.items():
        assert (b.epoch == epoch).all()
    # the last epoch's edges are the network's at the end
    i, j, w = r.edge_lists()[-1]
    ei, ej, ew = env.unwrapped.network.edge_list()
    assert np.array_equal(i, ei) and np.array_equal(j, ej) and np.array_equal(w, ew)
    assert any(g.lever == "random_audit" for g in r.governance)
