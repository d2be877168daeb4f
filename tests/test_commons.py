"""commons-v0, the common-pool resource: PettingZoo conformance, seeding and determinism,
both doors (with and without governance levers), the round's arithmetic checked against
hand-computed values (regrowth, fair share, allocation, reports, audits, fines, votes,
accusations, eliminations, messages, collapse), the soft labels, and the event log.
No mocks: every test drives a real ``envs.make("commons-v0", ...)``.

Sections: helpers; 1. API and seeding; 2. determinism and doors; 3. arithmetic; 4. labels
and records; 5. event log; 6. structure.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from envcheck import assert_same_trace, random_episode_in_space
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import envs
from envs.commons import (
    ACTION_DIMS,
    MESSAGE_KINDS,
    OTHER_FEATURES,
    POLICY_PARAMS,
    SELF_FEATURES,
    CommonsConfig,
    CommonsEnv,
    label,
    summary,
    summary_from_log,
    water_fill,
)
from envs.commons import env as aec_env
from envs.core.events import EventLog, LogError, replay
from envs.core.records import InteractionType
from wrappers.stack import governance_stack

A = {k: i for i, k in enumerate(ACTION_DIMS)}
S = {k: i for i, k in enumerate(SELF_FEATURES)}
OF = {k: i for i, k in enumerate(OTHER_FEATURES)}
HARVEST = int(InteractionType.HARVEST)

CONFIGS = {
    "default": {},
    "doubling": {"regrowth": "doubling", "initial_stock": 100.0, "extraction_step": 1.0,
                 "extraction_levels": 31, "n_epochs": 12},
    "noisy_epochs": {"n_agents": 7, "growth_noise": 1.5, "n_epochs": 3, "steps_per_epoch": 4},
    "copying": {"n_agents": 3, "copy_observations": True, "n_epochs": 5},
}


def make(**config) -> CommonsEnv:
    return envs.make("commons-v0", **config)


def act(base, **per_dim) -> np.ndarray:
    """An action array: ``per_dim[name]`` is a scalar or one value per agent."""
    return base.unwrapped.actions_by_name(**per_dim)


def obs_copy(base) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in base.obs_arrays.named().items()}
    out["action_mask"] = base.obs_arrays.action_mask.copy()
    return out


def play(env, seed: int, door: str, action_seed: int = 7) -> list[dict]:
    """One whole episode through ``door`` with masked random actions; per step the actions,
    rewards, observations, records, credits and the stock."""
    base = env.unwrapped
    agents = list(base.possible_agents)
    env.reset(seed=seed)
    rng = np.random.default_rng(action_seed)
    trace: list[dict] = [{"obs": obs_copy(base)}]
    while not base.episode_over:
        actions = base.sample_actions(rng)
        actions[:, A["take"]] //= 4  # mostly modest takes, so episodes last a while
        if door == "dict":
            _, rewards, terms, truncs, _ = env.step(dict(zip(agents, actions)))
            reward = np.array([rewards[a] for a in agents])
            assert all(terms.values()) == base.terminated
            assert all(truncs.values()) == (base.t >= base.max_steps and not base.terminated)
        else:
            reward = base.step_arrays(actions).copy()
        trace.append({"actions": actions.copy(), "reward": reward, "obs": obs_copy(base),
                      "batch": base.last_batch.columns(), "credits": base.credits.copy(),
                      "stock": base.stock, "frozen": base.frozen_mask()})
    assert base.agents == []
    return trace


# ===================================================================== 1. API and seeding

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parallel_api(name):
    env = make(**CONFIGS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=10 * env.max_steps)
    assert env.agents == []


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parallel_seed(name):
    parallel_seed_test(lambda: make(**CONFIGS[name]))


def test_aec_api():
    api_test(aec_env(n_epochs=4), num_cycles=100)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_observations_in_space_until_the_episode_ends(name):
    env = make(**CONFIGS[name])
    # random takes collapse the commons (termination) or the horizon truncates
    random_episode_in_space(env, seed=3)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


# ===================================================================== 2. determinism, doors

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_whole_episode_is_deterministic(name):
    env = make(**CONFIGS[name])
    first = play(env, seed=11, door="arrays")
    again = play(env, seed=11, door="arrays")
    fresh = play(make(**CONFIGS[name]), seed=11, door="arrays")
    assert_same_trace(first, again)
    assert_same_trace(first, fresh)
    assert sum(len(s["batch"]["p"]) for s in first[1:]) > 0


def test_another_seed_differs():
    a = play(make(growth_noise=1.5), seed=1, door="arrays")
    b = play(make(growth_noise=1.5), seed=2, door="arrays")
    assert [s["stock"] for s in a[1:]] != [s["stock"] for s in b[1:]]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_both_doors_agree(name):
    assert_same_trace(play(make(**CONFIGS[name]), seed=5, door="dict"),
                play(make(**CONFIGS[name]), seed=5, door="arrays"))


#: the general levers that apply to the commons, tuned to act within a few rounds
LEVERS = {
    "reputation_decay": {"rate": 0.8},
    "staking": {"min_stake": 1.0, "slash_fraction": 0.2},
    "circuit_breaker": {"window": 3, "threshold": 0.4, "violations": 1, "freeze_epochs": 1},
    "random_audit": {"probability": 0.5, "penalty_multiplier": 2.0, "mode": "truth"},
}
GOVERNED = {"n_agents": 8, "initial_resources": 3.0, "initial_credits": 20.0,
            "growth_noise": 1.0, "n_epochs": 10}


def test_governance_stack_both_doors_agree_and_every_lever_acts():
    traces, fired = [], []
    for door in ("dict", "arrays"):
        env = governance_stack(make(**GOVERNED), LEVERS)
        seen: list[str] = []
        env.unwrapped.add_listener(lambda lever, data, seen=seen: seen.append(lever))
        traces.append(play(env, seed=3, door=door, action_seed=1))
        fired.append(seen)
    assert_same_trace(*traces)
    assert fired[0] == fired[1]
    assert set(LEVERS) <= set(fired[0])
    # an audit's penalty is money in the commons: credits move with the reward
    base = env.unwrapped
    assert base.credits.sum() != pytest.approx(GOVERNED["initial_credits"] * 8)


@pytest.mark.parametrize("lever,params", [
    ("transaction_tax", {"rate": 0.1}), ("vote_normalization", {}),
    ("collusion_detector", {}), ("reputation_disconnect", {"threshold": 0.0})])
def test_levers_that_need_what_the_commons_lacks_are_refused(lever, params):
    with pytest.raises(ValueError, match=lever):
        governance_stack(make(), {lever: params})


def test_a_frozen_agent_sits_the_round_out():
    env = make()
    env.reset(seed=0)
    env.set_frozen([1], lever="test")
    mask = env.obs_arrays.action_mask[1]
    seg = env._seg
    assert mask.sum() == len(ACTION_DIMS) and (mask[seg[:-1]] == 1).all()
    env.step_arrays(act(env, take=2))
    assert env.last_take[1] == 0.0 and env.last_take[0] == 0.5
    assert env.step_invalid[1]  # its take was masked: counted, not silently played


# ===================================================================== 3. arithmetic

def test_logistic_regrowth_matches_hand_computation():
    c = CommonsConfig()
    assert c.regrow(38.0, 0.0) == pytest.approx(38.0 + 0.15 * 38.0 * (1 - 38.0 / 100.0))
    noisy = CommonsConfig(growth_noise=1.5)
    assert noisy.regrow(38.0, 1.0) == pytest.approx(41.534 + 1.5)
    assert noisy.regrow(99.0, 10.0) == 100.0 and noisy.regrow(1.0, -10.0) == 0.0
    env = make(estimate_noise=0.0)
    env.reset(seed=0)
    env.step_arrays(act(env, take=[2, 2, 2, 1, 1]))  # 0.5 * 8 = 2 units
    assert env.round_record()["stock_after_harvest"] == pytest.approx(38.0)
    assert env.stock == pytest.approx(41.534)
    assert env.estimate == env.stock  # no estimate noise


def test_doubling_rule_fair_share_and_collapse():
    env = make(**CONFIGS["doubling"], estimate_noise=0.0)
    env.reset(seed=0)
    assert env.obs_arrays.self_[0, S["fair_share_estimate"]] == 10.0  # (100 // 2) // 5
    env.step_arrays(act(env, take=10))
    assert env.stock == 100.0  # 50 left, doubled
    assert env.last_batch.v.tolist() == [1] * 5  # 10 each: within the fair share
    env.step_arrays(act(env, take=[20, 20, 20, 20, 17]))  # 97 taken: 3 left, below 5
    assert env.terminated and env.collapsed and env.agents == []
    assert env.stock == 3.0  # no regrowth after a collapse
    assert (env.last_batch.v == -1).all()
    assert summary(env.history, env.config)["survival_time"] == 2.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step_arrays(act(env))


def test_requests_beyond_the_stock_are_shared_max_min_fairly():
    assert water_fill(np.array([1.0, 5.0, 5.0]), 7.0).tolist() == [1.0, 3.0, 3.0]
    assert water_fill(np.array([1.0, 2.0]), 10.0).tolist() == [1.0, 2.0]
    assert water_fill(np.array([4.0, 4.0]), 0.0).tolist() == [0.0, 0.0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        req = rng.uniform(0, 10, rng.integers(1, 9))
        cap = float(rng.uniform(0, req.sum()))
        got = water_fill(req, cap)
        assert got.sum() == pytest.approx(cap) and (got <= req + 1e-12).all()
        short = got < req - 1e-9  # everyone cut short gets the same, at least as much
        if short.any():              # as anyone served in full
            assert np.ptp(got[short]) < 1e-9 and got[short].min() >= got[~short].max(
                initial=0.0) - 1e-9
    env = make(initial_stock=6.0, collapse_threshold=0.0, extraction_step=1.0)
    env.reset(seed=0)
    env.step_arrays(act(env, take=[1, 5, 5, 0, 0]))
    assert env.last_take.tolist() == [1.0, 2.5, 2.5, 0.0, 0.0]


def test_audit_fine_and_credits_match_hand_computation():
    env = make(policy={"audit_probability": 1.0}, estimate_noise=0.0)
    env.reset(seed=0)
    # level 5 * 1.1 = 5.5; agent 0 takes 2 and reports 0.5; the rest take 1 each: total 6
    env.step_arrays(act(env, take=[8, 4, 4, 4, 4], underreport=[6, 0, 0, 0, 0]))
    rec = env.round_record()
    assert rec["audit_triggered"] and rec["audited"] == [0, 1, 2, 3, 4]
    assert rec["caught"] == [0]
    assert rec["fines"][0] == pytest.approx((2.0 - 0.5) * 3 + 1)  # (x - r) M + B
    assert env.credits[0] == pytest.approx(4.0 + 2.0 - 5.5 - 0.4)
    assert env.credits[1] == pytest.approx(4.0 + 1.0 - 0.4)
    # at exactly the level nobody is audited
    env.reset(seed=0)
    env.step_arrays(act(env, take=[6, 4, 4, 4, 4], underreport=[6, 0, 0, 0, 0]))
    assert not env.round_record()["audit_triggered"] and env.round_record()["fines"][0] == 0


def test_audit_probability_selects_with_the_game_generator():
    env = make(policy={"audit_probability": 0.5})
    hits = 0
    for seed in range(40):
        env.reset(seed=seed)
        env.step_arrays(act(env, take=8, underreport=8))
        hits += len(env.round_record()["caught"])
    assert 0.35 < hits / 200 < 0.65


def test_policy_vote_is_the_median_and_abstention_keeps_the_policy():
    env = make()
    env.reset(seed=0)
    quota = list(CommonsConfig().vote_grid.quota)
    # votes for quotas 2, 4 and 8 (grid positions 2, 4, 7), two abstain: median 4
    env.step_arrays(act(env, vote_quota=[2, 4, 7, 0, 0]))
    assert env.round_record()["policy"]["quota"] == 4.0 == quota[3]
    assert env.round_record()["votes"] == {"quota": [2.0, 4.0, 8.0, None, None]}
    env.step_arrays(act(env))  # nobody votes: the policy stands
    assert env.round_record()["policy"]["quota"] == 4.0 and env.round_record()["votes"] == {}
    env.step_arrays(act(env, vote_audit_probability=[1, 5, 0, 0, 0]))  # 0.0 and 1.0
    assert env.round_record()["policy"]["audit_probability"] == 0.5
    assert env.obs_arrays.policy[0, 1] == 4.0
    votes_off = make(votes=False)
    votes_off.reset(seed=0)
    votes_off.step_arrays(act(votes_off, vote_quota=12))
    assert votes_off.round_record()["policy"]["quota"] == 5.0
    assert votes_off.step_invalid.all()


def test_accusations_by_half_the_live_agents_eliminate():
    env = make()
    env.reset(seed=0)
    env.step_arrays(act(env, accuse=[5, 5, 0, 0, 0]))  # 2 of 5 accuse agent_4: not enough
    assert not env.eliminated.any()
    env.step_arrays(act(env, accuse=[5, 5, 5, 0, 0]))  # 3 of 5
    assert env.eliminated.tolist() == [False] * 4 + [True]
    assert env.round_record()["eliminated"]["accusation"] == [4]
    mask = env.obs_arrays.action_mask
    assert mask[4].sum() == len(ACTION_DIMS)  # only the no-ops
    seg = env._seg
    assert mask[0, seg[A["accuse"]] + 1 + 4] == 0  # nobody may accuse the eliminated
    assert mask[0, seg[A["accuse"]] + 1 + 0] == 0  # nor themselves
    assert mask[0, seg[A["accuse"]] + 1 + 1] == 1
    # 4 live: 2 accusations are half
    env.step_arrays(act(env, accuse=[2, 1, 0, 0, 0]))  # 0 accuses 1, 1 accuses 0
    assert not env.eliminated[:2].any()
    env.step_arrays(act(env, accuse=[2, 0, 2, 0, 0]))
    assert env.eliminated[1]


def test_maintenance_eliminates_an_agent_out_of_credits():
    env = make(initial_credits=0.5)
    env.reset(seed=0)
    env.step_arrays(act(env, take=[0, 2, 2, 2, 2]))
    assert env.credits[0] == pytest.approx(0.1) and not env.eliminated[0]
    env.step_arrays(act(env, take=[0, 2, 2, 2, 2]))
    assert env.eliminated[0] and env.round_record()["eliminated"]["credits"] == [0]
    env.step_arrays(act(env, take=2))
    assert env.last_take[0] == 0.0 and env.credits[0] == pytest.approx(-0.3)  # no upkeep


def test_messages_cost_and_arrive_the_next_round():
    env = make(estimate_noise=0.0)
    env.reset(seed=0)
    propose, accuse, claim = (MESSAGE_KINDS.index(k) for k in ("propose_quota", "accuse",
                                                                "claim"))
    env.step_arrays(act(env, message=[propose, accuse, claim, 0, 0],
                        message_to=[0, 0, 5, 0, 0], vote_quota=[3, 0, 0, 0, 0],
                        accuse=[0, 4, 0, 0, 0], take=[0, 0, 2, 0, 0]))
    assert env.credits[0] == pytest.approx(4.0 - 0.1 - 0.4)   # a public post
    assert env.credits[2] == pytest.approx(4.0 + 0.5 - 0.15 - 0.4)  # direct, plus its take
    inbox = env.obs_arrays.inbox
    assert inbox[3, 0].tolist() == [propose, 3.0, 1.0]   # agent_0 proposed quota 3, public
    assert inbox[3, 1].tolist() == [accuse, 3.0, 1.0]    # agent_1 accused agent_3
    assert inbox[4, 2].tolist() == [claim, 0.5, 0.0]     # agent_2 claimed 0.5, to agent_4
    assert inbox[3, 2].tolist() == [0.0, 0.0, 0.0]       # a direct message is private
    assert inbox[0, 0].tolist() == [0.0, 0.0, 0.0]
    env.step_arrays(act(env))
    assert not env.obs_arrays.inbox.any()  # one round only


def test_text_messages_are_capped_and_reach_their_recipient():
    env = make(message_max_words=3)
    env.reset(seed=0)
    env.send_text("agent_1", "I took only half a unit, honestly friends", to="agent_2")
    env.step_arrays(act(env))
    rec = env.round_record()["messages"]
    assert rec == [{"from": 1, "to": 2, "kind": "none", "value": 0.0,
                    "text": "I took only [cut]"}]
    assert env.credits[1] == pytest.approx(4.0 - 0.15 - 0.4)
    assert env.view(2)["inbox"][0]["text"] == "I took only [cut]"
    assert env.view(3)["inbox"] == []
    with pytest.raises(ValueError, match="unknown agents"):
        env.send_text("nobody", "hi")


# ===================================================================== 4. labels, records

def test_label_is_the_posterior_of_the_labellers_model():
    """Checked against the model integrated numerically: a truthful report with prior 0.8,
    else an exponential amount withheld (mean: the fair share), seen through N(x, sd)."""
    from scipy.integrate import quad
    from scipy.stats import norm

    def by_quadrature(r, o, f, sd, q=0.8):
        lam = 1 / f
        honest = q * norm.pdf(o, r, sd)
        dens = lambda d: (1 - q) * lam * np.exp(-lam * d) * norm.pdf(o, r + d, sd)  # noqa
        within = quad(dens, 0, max(f - r, 0.0))[0] + (honest if r <= f else 0.0)
        return within / (honest + quad(dens, 0, np.inf)[0])

    r = np.full(5, 0.5)
    o = np.array([0.3, 0.5, 0.8, 1.0, 1.5])
    p = label(r, o, fair=0.75, sd=0.25)
    for k in range(5):
        assert p[k] == pytest.approx(by_quadrature(0.5, o[k], 0.75, 0.25), abs=1e-7)
    assert (np.diff(p) < 0).all()  # the more seen beyond the report, the lower
    assert label(np.array([1.0]), np.array([1.0]), 0.75, 0.25).tolist() == [0.0]  # reported
    assert label(np.array([0.0]), np.array([50.0]), 0.75, 0.25)[0] < 1e-12  # far tails
    assert label(np.array([0.0]), np.array([-50.0]), 0.75, 0.25).tolist() == [1.0]
    assert label(np.array([0.5]), np.array([0.7]), 0.75, 0.0).tolist() == [1.0]  # exact
    assert label(np.array([0.5]), np.array([0.8]), 0.75, 0.0).tolist() == [0.0]


def test_labels_are_calibrated_on_honest_and_lying_agents():
    """Sustainable takes, truthful or withholding: the labels track the truth."""
    from envs.core import metrics as M

    env = make(policy={"audit_probability": 0.0}, accusations=False, n_epochs=15)
    ps, vs = [], []
    rng = np.random.default_rng(0)
    for seed in range(40):
        env.reset(seed=seed)
        while not env.episode_over:
            fair = env.obs_arrays.self_[:, S["fair_share_estimate"]]
            take = np.floor(fair / 0.25).astype(np.int64)
            liar = rng.random(5) < 0.2
            take = np.where(liar, take + 4, take)
            env.step_arrays(act(env, take=take, underreport=np.where(liar, 4, 0)))
            ps.append(env.last_batch.p)
            vs.append(env.last_batch.v)
    p, v = np.concatenate(ps), np.concatenate(vs)
    assert 0.1 < (v == -1).mean() < 0.4
    assert M.expected_calibration_error(p, v) < 0.1
    assert M.auc(p, v) > 0.9


def test_records_rewards_and_reputation():
    env = make(policy={"audit_probability": 0.0}, estimate_noise=0.0)
    env.reset(seed=0)
    r = env.step_arrays(act(env, take=[8, 2, 2, 0, 2], underreport=[6, 0, 0, 0, 0])).copy()
    b = env.last_batch
    assert b.initiator.tolist() == b.counterparty.tolist() == [0, 1, 2, 4]  # no take: none
    assert (b.kind == HARVEST).all() and b.accepted.all()
    fair = env.round_record()["fair_share"]
    assert fair == pytest.approx(0.15 * 40 * 0.6 / 5)
    assert b.v.tolist() == [-1, 1, 1, 1]
    assert b.dressing[0] == pytest.approx(0.75) and b.effort[0] == pytest.approx(fair / 2.0)
    assert np.allclose(b.v_hat, 2 * b.p - 1)
    taken = np.array([2.0, 0.5, 0.5, 0.5])
    assert np.allclose(b.payoff_a, taken - 0.5 * (1 - b.p) * taken)
    # reward = change in credits - externality * (1 - p) * taken
    ext = np.zeros(5)
    ext[[0, 1, 2, 4]] = 0.5 * (1 - b.p) * taken
    assert np.allclose(r, (env.credits - 4.0) - ext)
    assert np.allclose(env.reputation[[0, 1, 2, 4]], b.p - 0.5)
    assert env.reputation[3] == 0.0


def test_observation_tables_are_public_with_the_own_row_marked():
    env = make(estimate_noise=0.0, observe_noise=0.0)
    env.reset(seed=0)
    env.step_arrays(act(env, take=[4, 2, 2, 2, 2], underreport=[2, 0, 0, 0, 0],
                        accuse=[0, 1, 1, 0, 0]))
    o = env.obs_arrays.others
    assert o[3, 0, OF["observed"]] == 1.0 and o[3, 0, OF["reported"]] == 0.5
    assert np.array_equal(o[1, :, OF["observed"]], o[4, :, OF["observed"]])
    assert o[2, 2, OF["is_self"]] == 1 and o[2, 1, OF["is_self"]] == 0
    assert o[0, 1, OF["accused_me"]] == 1 and o[0, 3, OF["accused_me"]] == 0
    assert o[0, 0, OF["accusations_against"]] == 2
    assert env.obs_arrays.self_[0, S["accused_by"]] == 2


# ===================================================================== 5. event log

def test_the_log_replays_to_the_same_rounds_and_metrics(tmp_path):
    from baselines.policy import Policy
    from baselines.runner import metrics_from_events, rollout

    class Random(Policy):
        def act_arrays(self, obs):
            a = np.zeros((len(obs), len(ACTION_DIMS)), dtype=np.int64)
            a[:, A["take"]] = self.rng.integers(0, 4, len(obs))
            a[:, A["underreport"]] = self.rng.integers(0, 2, len(obs))
            return a

    path = tmp_path / "events.jsonl"
    env = make(event_log=EventLog(path, format="arrow"), growth_noise=1.5)
    pol = Random(seed=0)
    rows = rollout(env, {a: pol for a in env.possible_agents}, seed=4)
    env.close()
    assert [r["epoch"] for r in rows] == list(range(12))
    again = metrics_from_events(path)
    assert [list(map(repr, r.values())) for r in rows] == \
        [list(map(repr, r.values())) for r in again]
    assert {"stock", "honesty", "over_use_rate", "audits"} <= rows[0].keys()
    rep = replay(path)
    assert [s.data for s in rep.step_states] == env.history
    assert summary_from_log(path) == summary(env.history, env.config)


def test_a_collapse_ends_the_log_early_and_it_still_checks(tmp_path):
    path = tmp_path / "events.jsonl"
    env = make(event_log=EventLog(path), n_epochs=3, steps_per_epoch=4)
    env.reset(seed=0)
    while not env.episode_over:
        env.step_arrays(act(env, take=20))
    env.close()
    rep = replay(path)
    assert rep.complete and rep.run_end.step == env.t - 1 < env.max_steps - 1
    assert rep.epoch_ends[-1].state["terminated"] is True
    lines = path.read_text().splitlines()
    last_state = next(x for x in reversed(lines) if '"type":"step_state"' in x)
    bad = tmp_path / "bad.jsonl"  # a round logged after the terminal epoch: refused
    bad.write_text("\n".join(lines[:-1] + [last_state, lines[-1]]) + "\n")
    with pytest.raises(LogError, match="after the episode terminated"):
        replay(bad)
    early = tmp_path / "early.jsonl"  # a run_end before the horizon without a termination
    early.write_text("\n".join(
        [x.replace('"terminated":true', '"terminated":false') for x in lines]) + "\n")
    with pytest.raises(LogError):
        replay(early)


# ===================================================================== 6. structure

def test_commons_holds_its_game_not_a_copy_of_the_shared_machinery():
    """The step's bookkeeping, the dict door and the governance seam come from envs/core."""
    from envs.core.api import DictDoor
    from envs.core.kernel import EpisodeKernel

    assert issubclass(CommonsEnv, EpisodeKernel) and issubclass(CommonsEnv, DictDoor)
    own = set(vars(CommonsEnv))
    for shared in ("step", "step_arrays", "set_frozen", "add_cost_hook", "log_governance",
                   "sample_actions", "action_masks", "_build_dicts", "cut_edges", "state"):
        assert shared not in own, shared
    assert POLICY_PARAMS == ("threshold", "quota", "audit_probability", "fine_multiplier",
                             "base_fine")
    assert math.isclose(CommonsConfig().sustainable_total(), 3.75)


def test_a_scenario_that_collapses_at_once_passes_preflight_and_runs(tmp_path):
    """The scenario check steps twice with random actions: a collapse on the first step
    ends its test, not the program."""
    from baselines.cli import main

    cfg = tmp_path / "fragile.yaml"
    cfg.write_text("name: fragile\nenv: commons-v0\nagents:\n  - {type: greedy, count: 5}\n"
                   "env_params: {collapse_threshold: 39.0}\n"
                   "simulation: {seed: 0, n_epochs: 4, steps_per_epoch: 1}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    rep = replay(tmp_path / "run" / "events.jsonl")
    assert rep.complete and rep.epoch_ends[-1].state["terminated"] is True
    assert len(rep.step_states) == 1
