"""Governance levers (``wrappers/``): API, seeding and determinism of every lever and of the
whole stack, both doors, replayed metrics, and each lever's arithmetic on hand-built and real
interactions. No mocks: every lever runs on a real sandbox through the governance seam.

Sections: helpers and test policies; 1. PettingZoo API, seeding, determinism, doors, runner;
2. one section per lever (tax, reputation decay, vote normalisation, staking, random audit,
circuit breaker, collusion detector, reputation disconnect); events and infos; scenarios.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test
from pydantic import Field, ValidationError

import envs
from baselines.policy import ObsBatch, Policy
from baselines.runner import metrics_from_events, rollout
from baselines.scenario import ConfigError, build, load_scenario
from baselines.scripted import make_policy
from envs.core.events import replay
from envs.core.governance import SUMMARY_KEYS, governance_columns
from envs.core.payoff import SoftPayoffEngine
from envs.core.records import InteractionBatch, InteractionType
from envs.sandbox import INBOX_FEATURES, NEIGHBOR_FEATURES
from wrappers import (
    CircuitBreaker,
    CollusionDetector,
    RandomAudit,
    ReputationDecay,
    ReputationDisconnect,
    Staking,
    TransactionTax,
    VoteNormalization,
)
from wrappers.stack import LEVERS, ORDER, governance_stack, levers

_I = {k: i for i, k in enumerate(INBOX_FEATURES)}
_N = {k: i for i, k in enumerate(NEIGHBOR_FEATURES)}
VOTE = int(InteractionType.VOTE)
TRADE = int(InteractionType.TRADE)

# ------------------------------------------------------------------------ helpers

#: every lever on, tuned so that each gov_* column fires in the mixed population below
ALL_LEVERS = {
    "transaction_tax": {"rate": 0.2, "split": 0.5, "redistribute": True},
    "reputation_decay": {"rate": 0.9},
    "vote_normalization": {"k": 2.0},
    "staking": {"min_stake": 99.0, "slash_fraction": 0.1},
    "circuit_breaker": {"window": 4, "threshold": 0.5, "violations": 2, "freeze_epochs": 1},
    "random_audit": {"probability": 0.3, "penalty_multiplier": 2.0, "mode": "truth",
                     "miss_rate": 0.3},
    "collusion_detector": {"z_threshold": 2.0, "min_interactions": 3, "action": "freeze",
                           "freeze_epochs": 1},
    "reputation_disconnect": {"threshold": -0.05},
}
KINDS = ["honest"] * 4 + ["opportunistic"] * 2 + ["deceptive"] * 2 + ["adversarial"] * 2
DYNAMIC = {"topology": "small_world", "k": 4, "dynamic": True}


def mixed_env(levers_config=None, *, n_epochs=5, steps_per_epoch=6, event_log=None):
    """Ten agents of the four scripted kinds on a dynamic small world, under ``levers``."""
    base = envs.make("sandbox-v0", n_agents=len(KINDS), n_epochs=n_epochs,
                     steps_per_epoch=steps_per_epoch, network=DYNAMIC, groups=tuple(KINDS),
                     teams=tuple(1 if k == "adversarial" else -1 for k in KINDS),
                     event_log=event_log)
    return governance_stack(base, levers_config)


def mixed_policies(seed=0):
    """One policy instance per kind, shared by that kind's agents."""
    cache: dict[str, Policy] = {}
    return {f"agent_{i}": cache.setdefault(k, make_policy(k, seed=seed))
            for i, k in enumerate(KINDS)}


def one_lever(name):
    # alone, staking needs a stake that a few losing steps go below
    return {name: {"min_stake": 100.0} if name == "staking" else ALL_LEVERS[name]}


#: the levers of the sandbox (monitoring is the commons': tests/test_monitoring.py)
SANDBOX_LEVERS = [name for name, cls in LEVERS.items() if cls.refuses("sandbox-v0") is None]
SANDBOX_ORDER = [cls for cls in ORDER if cls.refuses("sandbox-v0") is None]
CASES = {**{name: one_lever(name) for name in SANDBOX_LEVERS}, "stack": ALL_LEVERS}


def act(env, kind=0, slot=0, effort=0, dressing=0, transfer=0, respond=()):
    """One agent's action row (``kind`` 1..5 as in the action space; 0 = none)."""
    a = np.zeros(len(env.unwrapped.nvec), dtype=np.int64)
    a[:5] = kind, slot, effort, dressing, transfer
    for m, r in enumerate(respond):
        a[5 + m] = r
    return a


def batch(**cols):
    """A hand-built interaction batch (missing columns take the record defaults)."""
    return InteractionBatch.from_columns(cols)


def events_of(base):
    """The governance events since the last call, as the runner reads them."""
    return base.pop_governance()


class Fixed(Policy):
    """Every step: proposes ``kind`` (action value) to a random allowed neighbour with fixed
    effort, dressing and transfer levels; accepts every proposal it may accept (or none)."""

    name = "fixed"

    class Params(Policy.Params):
        kind: int = Field(1, ge=0, le=5)
        effort: int = 0
        dressing: int = 0
        transfer: int = 0
        accept: bool = True

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        n, nvec, p = len(obs), obs.nvec, self.params
        a = np.zeros((n, len(nvec)), dtype=np.int64)
        a[:, 0] = np.where(obs.mask(0)[:, p.kind] == 1, p.kind, 0)
        a[:, 1] = np.where(obs.mask(1) == 1, self.rng.random((n, nvec[1])), -1).argmax(axis=1)
        a[:, 2:5] = p.effort, p.dressing, p.transfer
        allowed = np.stack([obs.mask(5 + m)[:, 1] for m in range(len(nvec) - 5)], axis=1)
        a[:, 5:] = (allowed == 1) & p.accept
        return a


class Ring(Policy):
    """A collusion ring: proposes full-effort collaborations to a teammate every step and
    accepts only what its teammates propose."""

    name = "ring"

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        n, nvec = len(obs), obs.nvec
        a = np.zeros((n, len(nvec)), dtype=np.int64)
        mate = (obs.neighbor_mask > 0) & (obs.neighbors[:, :, _N["same_team"]] > 0)
        a[:, 0] = np.where(mate.any(axis=1) & (obs.mask(0)[:, 1] == 1), 1, 0)
        a[:, 1] = np.where(mate, self.rng.random(mate.shape), -1).argmax(axis=1)
        a[:, 2] = nvec[2] - 1
        a[:, 5:] = (obs.inbox[:, :, _I["present"]] > 0) & (
            obs.inbox[:, :, _I["sender_same_team"]] > 0)
        return a


def play(env, policies, seed, door):
    """One episode through ``door`` ("dict": ``env.step``; "arrays": ``step_arrays``).

    Returns one entry per step: the actions, the rewards, the step's interactions (as
    columns) and the governance events, with the ``infos[agent]["governance"]`` entries.
    """
    base = env.unwrapped
    agents = list(base.possible_agents)
    obs, infos = env.reset(seed=seed)
    groups: dict[int, tuple[Policy, list[int]]] = {}
    for i, a in enumerate(agents):
        groups.setdefault(id(policies[a]), (policies[a], []))[1].append(i)
    for k, (pol, _) in enumerate(groups.values()):
        pol.reset(seed=seed * 1000 + k)
    trace = []
    for _ in range(base.max_steps):
        actions = np.zeros((len(agents), len(base.nvec)), dtype=np.int64)
        if door == "dict":
            for pol, rows in groups.values():
                names = [agents[i] for i in rows]
                actions[rows] = pol.act_batch([obs[a] for a in names], [infos[a] for a in names])
            obs, rewards, _, _, infos = env.step(dict(zip(agents, actions)))
            reward = np.array([rewards[a] for a in agents])
        else:
            for pol, rows in groups.values():
                actions[rows] = pol.act_arrays(ObsBatch.from_env(base, np.asarray(rows)))
            reward = base.step_arrays(actions).copy()
        named = {a: repr(base.infos[a]["governance"]) for a in agents}
        events = events_of(base)
        trace.append({"actions": actions.tolist(), "rewards": reward.tolist(),
                      "interactions": base.last_batch.to_json_columns(),
                      "events": events, "governance": repr(events), "infos": named,
                      "frozen": base.frozen_mask().tolist()})
    return trace


def drive(env, actions_fn, steps=None):
    """Step a (wrapped) env with ``actions_fn(t, base) -> (n, dims)`` through ``step_arrays``;
    return per step (rewards, interactions, governance events, frozen mask, reputation)."""
    base = env.unwrapped
    out = []
    for t in range(base.max_steps if steps is None else steps):
        reward = base.step_arrays(actions_fn(t, base)).copy()
        out.append({"reward": reward, "batch": base.last_batch, "events": events_of(base),
                    "frozen": base.frozen_mask(), "reputation": base.get_reputation(),
                    "resources": base.get_resources()})
    return out


# ===================================================================== 1. API, seeds, doors


@pytest.mark.parametrize("case", list(CASES))
def test_parallel_api_test_passes(case):
    parallel_api_test(mixed_env(CASES[case], n_epochs=3, steps_per_epoch=5), num_cycles=40)


@pytest.mark.parametrize("case", list(CASES))
def test_parallel_seed_test_passes(case):
    parallel_seed_test(lambda: mixed_env(CASES[case], n_epochs=3, steps_per_epoch=5))


@pytest.mark.parametrize("case", list(CASES))
def test_whole_episode_is_a_function_of_the_seed(case, tmp_path):
    runs = []
    for k in range(2):
        path = tmp_path / f"events{k}.jsonl"
        env = mixed_env(CASES[case], event_log=path)
        trace = play(env, mixed_policies(), seed=5, door="dict")
        env.close()
        logged = [(e.step, e.epoch, e.lever, e.data) for e in replay(path).governance]
        runs.append((trace, logged))
    assert runs[0][0] == runs[1][0]  # rewards, interactions, events, infos: step by step
    assert runs[0][1] == runs[1][1]
    assert len(runs[0][1]) > 0, "the lever never acted: the test would prove nothing"


def test_stack_differs_between_seeds():
    a = play(mixed_env(ALL_LEVERS), mixed_policies(), seed=5, door="dict")
    b = play(mixed_env(ALL_LEVERS), mixed_policies(), seed=6, door="dict")
    assert a != b


@pytest.mark.parametrize("case", list(CASES))
def test_dict_and_array_doors_give_the_same_episode(case):
    by_dict = play(mixed_env(CASES[case]), mixed_policies(), seed=11, door="dict")
    by_arrays = play(mixed_env(CASES[case]), mixed_policies(), seed=11, door="arrays")
    assert len(by_dict) == len(by_arrays)
    for t, (d, a) in enumerate(zip(by_dict, by_arrays)):
        assert d == a, f"step {t}"


def test_recorded_dict_actions_replayed_through_step_arrays_match():
    recorded = play(mixed_env(ALL_LEVERS), mixed_policies(), seed=2, door="dict")
    env = mixed_env(ALL_LEVERS)
    env.reset(seed=2)
    base = env.unwrapped
    for t, step in enumerate(recorded):
        reward = base.step_arrays(np.asarray(step["actions"]))
        assert reward.tolist() == step["rewards"], f"step {t}"
        assert base.last_batch.to_json_columns() == step["interactions"], f"step {t}"
        assert repr(events_of(base)) == step["governance"], f"step {t}"


def test_rollout_rows_are_the_same_through_both_doors():
    arrays = rollout(mixed_env(ALL_LEVERS), mixed_policies(), seed=3, use_arrays=True)
    dicts = rollout(mixed_env(ALL_LEVERS), mixed_policies(), seed=3, use_arrays=False)
    assert repr(arrays) == repr(dicts)


def test_default_rollout_takes_the_array_door_under_levers():
    env = mixed_env(ALL_LEVERS)
    calls = []
    original = env.unwrapped.step_arrays
    env.unwrapped.step_arrays = lambda *a, **k: calls.append(1) or original(*a, **k)
    rollout(env, mixed_policies(), seed=3)
    assert len(calls) == env.unwrapped.max_steps


def test_replayed_metrics_equal_live_rows_gov_columns_included(tmp_path):
    path = tmp_path / "events.jsonl"
    env = mixed_env(ALL_LEVERS, event_log=path)
    live = rollout(env, mixed_policies(), seed=3)
    env.close()
    assert repr(metrics_from_events(path)) == repr(live)
    for key in SUMMARY_KEYS:  # every column is exercised by this run
        assert sum(r[f"gov_{key}"] for r in live) > 0, key
    assert any(r["frozen_agents"] > 0 for r in live)


def test_stack_is_built_in_the_fixed_order_whatever_the_key_order():
    env = mixed_env(dict(reversed(list(ALL_LEVERS.items()))))
    assert [type(w) for w in levers(env)] == SANDBOX_ORDER
    for w in levers(env):
        assert w.lever_config() == {w.lever: {**w.Params(**ALL_LEVERS[w.lever]).model_dump()}}


def test_a_reset_clears_every_lever():
    env = mixed_env(ALL_LEVERS)
    first = play(env, mixed_policies(), seed=8, door="arrays")
    second = play(env, mixed_policies(), seed=8, door="arrays")  # same env object
    assert first == second


def test_each_lever_freezes_for_its_own_reason():
    base = envs.make("sandbox-v0", n_agents=3, n_epochs=2, steps_per_epoch=3,
                     initial_resources=5.0)
    env = governance_stack(base, {"staking": {"min_stake": 10.0},
                                  "circuit_breaker": {"window": 1, "threshold": 0.5,
                                                      "violations": 1, "freeze_epochs": 0}})
    env.reset(seed=0)
    staking, breaker = levers(env)
    breaker._check(batch(initiator=[0, 1], p=[0.0, 0.0]))  # trips agents 0 and 1
    staking._check(batch())  # everyone is below the stake
    breaker._release(0)  # the breaker's release does not lift the staking freeze
    assert base.frozen_mask().tolist() == [True, True, True]


def test_levers_need_an_environment_with_the_seam():
    from pettingzoo import ParallelEnv

    class NoSeam(ParallelEnv):
        possible_agents = ["a", "b"]

    with pytest.raises(TypeError, match="governance seam"):
        TransactionTax(NoSeam(), rate=0.1)


def test_bad_lever_parameters_are_rejected():
    with pytest.raises(ValidationError):
        TransactionTax(envs.make("sandbox-v0", n_agents=2), rate=1.5)
    with pytest.raises(ValidationError):
        RandomAudit(envs.make("sandbox-v0", n_agents=2), probability=float("nan"))
    with pytest.raises(ValidationError):
        governance_stack(envs.make("sandbox-v0", n_agents=2), {"tax": {"rate": 0.1}})


# ===================================================================== 2. transaction tax


class TestTransactionTax:
    def lever(self, **params):
        env = TransactionTax(envs.make("sandbox-v0", n_agents=4, n_epochs=2,
                                       steps_per_epoch=3), **params)
        env.reset(seed=0)
        return env

    def test_charges_rate_times_transfer_split_on_accepted_only(self):
        tax = self.lever(rate=0.1, split=0.3)
        b = batch(initiator=[0, 1, 2, 3], counterparty=[1, 2, 3, 0],
                  tau=[0.5, 0.1, 0.5, 0.0], accepted=[True, True, False, True])
        c_a, c_b = tax._tax(b)
        assert c_a.tolist() == pytest.approx([0.1 * 0.5 * 0.3, 0.1 * 0.1 * 0.3, 0.0, 0.0],
                                             rel=1e-12, abs=0)
        assert c_b.tolist() == pytest.approx([0.1 * 0.5 * 0.7, 0.1 * 0.1 * 0.7, 0.0, 0.0],
                                             rel=1e-12, abs=0)
        assert tax.revenue == pytest.approx(0.1 * 0.6, rel=1e-12)

    def test_split_zero_and_one_put_it_all_on_one_side(self):
        b = batch(tau=[0.5], accepted=[True])
        assert [x.tolist() for x in self.lever(rate=0.2, split=1.0)._tax(b)] == [[0.1], [0.0]]
        assert [x.tolist() for x in self.lever(rate=0.2, split=0.0)._tax(b)] == [[0.0], [0.1]]

    def test_epoch_end_reports_the_revenue_and_starts_afresh(self):
        tax = self.lever(rate=0.5)
        base = tax.unwrapped
        events_of(base)
        tax._tax(batch(tau=[0.5, 0.1], accepted=[True, True]))
        tax._tax(batch(tau=[0.5], accepted=[True]))
        tax._epoch_end(0)
        cols = governance_columns(events_of(base))
        assert cols["gov_tax_revenue"] == pytest.approx(0.55, rel=1e-12)
        assert cols["gov_redistributed"] == 0.0
        assert tax.revenue == 0.0 and tax.total_revenue == pytest.approx(0.55, rel=1e-12)

    def test_redistribution_pays_equal_shares_at_each_epoch_end(self):
        def run(redistribute):
            env = TransactionTax(envs.make("sandbox-v0", n_agents=4, n_epochs=3,
                                           steps_per_epoch=4), rate=0.3,
                                 redistribute=redistribute)
            env.reset(seed=1)
            return drive(env, lambda t, base: trades(base, t))

        kept, paid = run(False), run(True)
        spe, n = 4, 4
        revenue = 0.0
        for t, (k, p) in enumerate(zip(kept, paid)):
            assert k["batch"].equals(p["batch"])
            revenue += float((0.3 * np.abs(p["batch"].tau) * p["batch"].accepted).sum())
            if (t + 1) % spe == 0:
                assert revenue > 0
                np.testing.assert_allclose(p["reward"] - k["reward"], revenue / n,
                                           rtol=1e-9, atol=1e-12)
                ev = [e for e in p["events"] if "redistributed" in e]
                assert ev[0]["redistributed"] == pytest.approx(revenue, rel=1e-12)
                revenue = 0.0
            else:
                assert p["reward"].tolist() == k["reward"].tolist()


def trades(base, t):
    """Every agent offers a trade with the top transfer to neighbour slot ``t % degree`` and
    accepts every other inbox slot pattern (slot m accepted when ``m + t`` is even)."""
    n = base.config.n_agents
    a = np.zeros((n, len(base.nvec)), dtype=np.int64)
    a[:, 0] = TRADE + 1
    a[:, 1] = t % int(base.slot_mask.sum(axis=1).min())
    a[:, 2] = t % len(base.config.effort_levels)
    a[:, 4] = len(base.config.transfer_levels) - 1
    a[:, 5:] = (np.arange(base.M) + t) % 2 == 0
    return a


@pytest.mark.parametrize("lever,params", [
    (TransactionTax, {"rate": 0.25, "split": 0.3}),
    (RandomAudit, {"probability": 0.5, "penalty": 1.5, "penalty_multiplier": 2.0}),
    (RandomAudit, {"probability": 0.5, "mode": "proxy", "threshold": 0.6,
                   "penalty_multiplier": 3.0}),
])
def test_costs_land_on_records_and_rewards_in_the_same_step(lever, params):
    def make(governed):
        base = envs.make("sandbox-v0", n_agents=5, n_epochs=2, steps_per_epoch=5)
        env = lever(base, **params) if governed else base
        env.reset(seed=4)
        return env

    plain, gov = make(False), make(True)
    engine = SoftPayoffEngine(plain.config.payoff)
    charged = 0
    for t in range(plain.max_steps):
        a = trades(plain, t)
        r_plain = plain.step_arrays(a).copy()
        r_gov = gov.unwrapped.step_arrays(a).copy()
        bp, bg = plain.last_batch, gov.unwrapped.last_batch
        for k in InteractionBatch.FIELDS:
            if k not in ("c_a", "c_b", "payoff_a", "payoff_b"):
                assert np.array_equal(getattr(bp, k), getattr(bg, k)), k
        assert not bp.c_a.any() and not bp.c_b.any()
        assert not (bg.c_a[~bg.accepted].any() or bg.c_b[~bg.accepted].any())
        if lever is TransactionTax:
            np.testing.assert_allclose(bg.c_a, 0.25 * np.abs(bg.tau) * bg.accepted * 0.3,
                                       rtol=1e-12)
            np.testing.assert_allclose(bg.c_b, 0.25 * np.abs(bg.tau) * bg.accepted * 0.7,
                                       rtol=1e-12)
        elif params.get("mode") == "proxy":
            hit = bg.c_a > 0
            assert (bg.p[hit] < 0.6).all()
            np.testing.assert_allclose(bg.c_a[hit], (0.6 - bg.p[hit]) * 3.0, rtol=1e-12)
        else:
            hit = bg.c_a > 0
            assert (bg.v[hit] == -1).all() and (bg.c_a[hit] == 3.0).all()
        charged += int((bg.c_a > 0).sum())
        pi_a, pi_b = engine.payoffs(bg.p, bg.tau * bg.accepted, bg.c_a, bg.c_b, bg.r_a, 0.0)
        np.testing.assert_allclose(bg.payoff_a, pi_a * bg.accepted, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bg.payoff_b, pi_b * bg.accepted, rtol=1e-12, atol=1e-12)
        n = plain.config.n_agents
        cost = (np.bincount(bg.initiator, bg.c_a * bg.accepted, minlength=n)
                + np.bincount(bg.counterparty, bg.c_b * bg.accepted, minlength=n))
        np.testing.assert_allclose(r_gov - r_plain, -cost, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gov.unwrapped.resources - plain.resources,
                                   gov.unwrapped.cumulative_reward - plain.cumulative_reward,
                                   atol=1e-9)
    assert charged > 0


# ===================================================================== reputation decay


class TestReputationDecay:
    def test_multiplies_reputation_at_epoch_end(self):
        env = ReputationDecay(envs.make("sandbox-v0", n_agents=4), rate=0.9)
        env.reset(seed=0)
        base = env.unwrapped
        before = np.array([1.0, -2.0, 0.5, 0.0])
        base.set_reputation(before)
        env._decay(0)
        assert base.get_reputation().tolist() == (before * 0.9).tolist()

    def test_real_run_decays_only_at_epoch_ends(self):
        env = ReputationDecay(envs.make("sandbox-v0", n_agents=4, n_epochs=3,
                                        steps_per_epoch=4), rate=0.5)
        env.reset(seed=2)
        base = env.unwrapped
        expected = base.get_reputation()
        for t in range(base.max_steps):
            base.step_arrays(trades(base, t))
            b = base.last_batch
            expected = expected + np.bincount(b.initiator, b.r_a, minlength=4)
            if (t + 1) % 4 == 0:
                expected = expected * 0.5
            np.testing.assert_allclose(base.get_reputation(), expected, rtol=1e-12,
                                       atol=1e-15)
        assert np.abs(expected).sum() > 0


# ===================================================================== vote normalisation


class TestVoteNormalization:
    def lever(self, k):
        env = VoteNormalization(envs.make("sandbox-v0", n_agents=4), k=k)
        env.reset(seed=0)
        return env

    def test_successive_votes_weigh_one_over_one_plus_prior_over_k(self):
        vn = self.lever(k=4.0)
        kinds = [VOTE, VOTE, TRADE, VOTE, VOTE, VOTE]
        b = batch(initiator=[0, 1, 0, 0, 0, 1], kind=kinds, accepted=[True] * 6)
        w = vn._weigh(b)  # agent 0's votes: rows 0, 3, 4 (three in one step)
        assert w.tolist() == pytest.approx(
            [1.0, 1.0, 1.0, 1 / (1 + 1 / 4), 1 / (1 + 2 / 4), 1 / (1 + 1 / 4)], rel=1e-15)
        w = vn._weigh(batch(initiator=[1, 0], kind=[VOTE, VOTE]))  # the count goes on
        assert w.tolist() == pytest.approx([1 / (1 + 2 / 4), 1 / (1 + 3 / 4)], rel=1e-15)
        assert vn._weigh(batch(initiator=[0], kind=[TRADE])) is None
        vn._epoch_end(0)  # a new epoch: everyone's first vote weighs 1 again
        w = vn._weigh(batch(initiator=[0, 0, 0], kind=[VOTE] * 3))
        assert w.tolist() == pytest.approx([1.0, 1 / (1 + 1 / 4), 1 / (1 + 2 / 4)],
                                           rel=1e-15)

    def test_epoch_event_reports_votes_and_mean_weight(self):
        vn = self.lever(k=1.0)
        base = vn.unwrapped
        events_of(base)
        vn._weigh(batch(initiator=[2, 2], kind=[VOTE, VOTE]))
        vn._epoch_end(0)
        (ev,) = events_of(base)
        assert ev == {"votes": 2, "mean_weight": pytest.approx(0.75, rel=1e-15)}

    def test_weight_scales_payoff_and_reputation_change_in_a_real_step(self):
        spe = 5

        def make(governed):
            base = envs.make("sandbox-v0", n_agents=2, n_epochs=2, steps_per_epoch=spe)
            env = VoteNormalization(base, k=1.0) if governed else base
            env.reset(seed=3)
            return env

        plain, gov = make(False), make(True)
        base = gov.unwrapped
        engine = SoftPayoffEngine(base.config.payoff)
        a = np.stack([act(base, kind=VOTE + 1, effort=2), act(base, respond=[1])])
        weights = []
        for _ in range(base.max_steps):
            rep_before = base.get_reputation()
            plain.step_arrays(a)
            reward = base.step_arrays(a)
            b, bp = base.last_batch, plain.last_batch
            if not len(b):
                continue
            (w,) = b.weight
            weights.append(w)
            assert bp.weight.tolist() == [1.0] and b.p.tolist() == bp.p.tolist()
            assert b.r_a[0] == pytest.approx((b.p[0] - 0.5) * w, rel=1e-15)
            pi_a, pi_b = engine.payoffs(b.p, 0.0, 0.0, 0.0, (b.p - 0.5) * w, 0.0, w)
            assert b.payoff_a[0] == pytest.approx(float(pi_a[0]), rel=1e-12)
            assert b.payoff_b[0] == pytest.approx(float(pi_b[0]), rel=1e-12)
            assert reward[1] == pytest.approx(float(pi_b[0]), rel=1e-12)
            assert base.get_reputation()[0] - rep_before[0] == pytest.approx(b.r_a[0],
                                                                              rel=1e-12)
            s = engine.expected_surplus(b.p[0])
            assert b.payoff_b[0] - bp.payoff_b[0] == pytest.approx(0.5 * s * (w - 1),
                                                                   abs=1e-12)
        # votes resolve from step 1; the count starts afresh at each epoch end
        assert weights == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4] + [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5],
                                        rel=1e-15)


# ===================================================================== staking


class TestStaking:
    def test_freezes_below_min_stake_and_releases_at_or_above(self):
        base = envs.make("sandbox-v0", n_agents=2, n_epochs=2, steps_per_epoch=4,
                         initial_resources=10.0)
        env = Staking(base, min_stake=10.0, slash_fraction=0.0)
        env.reset(seed=0)
        # a source of money on the seam: credits agent_0 at step 2 (Staking checks last)
        base.add_step_hook(lambda b: base.add_rewards([1.0, 0.0]) if base.clock[0] == 2
                           else None)
        top = len(base.config.effort_levels) - 1
        frozen, events, infos = [], [], []
        for t in range(6):
            a = np.stack([act(base, kind=1, effort=top) if t == 0 else act(base), act(base)])
            base.step_arrays(a)
            frozen.append(base.frozen_mask().tolist())
            events.append(events_of(base))
            infos.append([(g["lever"], g["step"]) for g in base.infos["agent_0"]["governance"]])
        # effort 1.0 costs 0.2: 9.8 < 10 -> frozen at step 0; +1.0 at step 2 -> 10.8 >= 10:
        # released by the check at the end of step 2 (it runs after every other hook)
        assert frozen == [[True, False]] * 2 + [[False, False]] * 4
        assert events[0] == [{"frozen": [0], "released": [],
                              "summary": {"freezes": 1, "releases": 0}}]
        assert events[2] == [{"frozen": [], "released": [0],
                              "summary": {"freezes": 0, "releases": 1}}]
        assert [bool(e) for e in events] == [True, False, True, False, False, False]
        assert infos[0] == [("staking", 0)] and infos[2] == [("staking", 2)]
        assert infos[1] == []
        assert base.obs_arrays.action_mask[0, 1:6].all()  # may propose again

    def test_exactly_the_minimum_stake_is_enough(self):
        base = envs.make("sandbox-v0", n_agents=2, n_epochs=1, steps_per_epoch=2,
                         initial_resources=10.0)
        env = Staking(base, min_stake=10.0)
        env.reset(seed=0)
        base.step_arrays(np.stack([act(base), act(base)]))
        assert not base.frozen_mask().any() and events_of(base) == []

    def test_frozen_agent_may_not_propose_or_accept(self):
        base = envs.make("sandbox-v0", n_agents=2, n_epochs=1, steps_per_epoch=4,
                         initial_resources=5.0)
        env = Staking(base, min_stake=10.0)
        env.reset(seed=0)
        base.step_arrays(np.stack([act(base), act(base)]))  # first check: both below
        assert base.frozen_mask().tolist() == [True, True]
        base.step_arrays(np.stack([act(base, kind=1), act(base, kind=1)]))
        assert base.step_stats["proposals"] == 0 and base.step_stats["invalid"] == 2

    def test_slashes_slash_fraction_per_caught_harm(self):
        base = envs.make("sandbox-v0", n_agents=3, n_epochs=1, steps_per_epoch=3)
        env = Staking(base, min_stake=0.0, slash_fraction=0.25)
        env.reset(seed=0)
        base.set_reputation([0.0, 0.0, 0.0])
        # a real step: agent_0 caught twice, agent_1 once (as RandomAudit would report)
        base.add_step_hook(lambda b: env._on_event("random_audit",
                                                   {"hit_initiators": [0, 1, 0]}))
        before = base.get_resources()
        events_of(base)
        reward = base.step_arrays(np.stack([act(base)] * 3)).copy()
        slash = before * np.array([1 - 0.75 ** 2, 0.25, 0.0])
        np.testing.assert_allclose(reward, -slash, rtol=1e-12)
        np.testing.assert_allclose(base.get_resources(), before - slash, rtol=1e-12)
        (ev,) = events_of(base)
        assert ev["slashed_agents"] == [0, 1]
        assert ev["amounts"] == pytest.approx(slash[:2].tolist(), rel=1e-12)
        assert ev["summary"]["slashed"] == pytest.approx(slash.sum(), rel=1e-12)
        assert [g["lever"] for g in base.infos["agent_0"]["governance"]] == ["staking"]
        assert base.infos["agent_2"]["governance"] == []

    def test_audit_hits_are_slashed_in_the_same_step(self):
        # zero effort is always harmful here (q_min = 0): every accepted proposal is caught
        base = envs.make("sandbox-v0", n_agents=2, n_epochs=1, steps_per_epoch=5,
                         signals={"q_min": 0.0, "q_max": 1.0})
        env = governance_stack(base, {"random_audit": {"probability": 1.0, "penalty": 1.0,
                                                       "penalty_multiplier": 2.0},
                                      "staking": {"min_stake": 0.0, "slash_fraction": 0.1}})
        env.reset(seed=0)
        engine = SoftPayoffEngine(base.config.payoff)
        a = np.stack([act(base, kind=1), act(base, respond=[1])])
        for t in range(base.max_steps):
            before = base.get_resources()
            reward = base.step_arrays(a).copy()
            events = events_of(base)
            b = base.last_batch
            if t == 0:
                assert len(b) == 0 and events == []
                continue
            assert b.v.tolist() == [-1] and b.accepted.tolist() == [True]
            assert b.c_a.tolist() == [2.0] and b.c_b.tolist() == [0.0]
            slash = 0.1 * before[0]
            pi_a, pi_b = engine.payoffs(b.p, 0.0, 2.0, 0.0, b.r_a, 0.0)
            assert reward[0] == pytest.approx(float(pi_a[0]) - slash, rel=1e-12)
            assert reward[1] == pytest.approx(float(pi_b[0]), rel=1e-12)
            assert [e["summary"] for e in events] == [
                {"audits": 1, "audit_hits": 1, "audit_misses": 0, "penalties": 2.0},
                {"slashed": pytest.approx(slash, rel=1e-12)}]


def test_an_epoch_end_debit_below_the_stake_freezes_before_the_agent_acts_again():
    n, spe = 20, 10
    base = envs.make("sandbox-v0", n_agents=n, n_epochs=2, steps_per_epoch=spe,
                     max_neighbors=n - 1, teams=(0, 0) + (-1,) * (n - 2))
    env = governance_stack(base, {
        "staking": {"min_stake": 50.0, "slash_fraction": 0.0},
        "collusion_detector": {"z_threshold": 5.0, "action": "penalize", "penalty": 80.0}})
    honest, ring = make_policy("honest"), Ring()
    trace = play(env, {a: ring if i < 2 else honest
                       for i, a in enumerate(base.possible_agents)}, seed=9, door="arrays")
    end = spe - 1  # the ring is flagged and charged 80 each at the end of epoch 0
    assert [ev["summary"]["penalties"] for ev in trace[end]["events"] if "pairs" in ev] == [
        160.0]
    resources = 100.0 + np.cumsum([s["rewards"][:2] for s in trace[:end + 1]], axis=0)[-1]
    assert (resources < 50.0).all()
    assert trace[end]["frozen"][:2] == [True, True]


# ===================================================================== random audit


class TestRandomAudit:
    def lever(self, **params):
        env = RandomAudit(envs.make("sandbox-v0", n_agents=4), **params)
        env.reset(seed=0)
        return env

    # rows: accepted harmful, accepted beneficial, rejected harmful, rejected beneficial,
    # accepted harmful (another initiator)
    ROWS = dict(initiator=[0, 1, 2, 3, 3], counterparty=[1, 2, 3, 0, 1],
                accepted=[True, True, False, False, True], v=[-1, 1, -1, 1, -1],
                p=[0.2, 0.7, 0.1, 0.4, 0.55])

    def test_truth_mode_charges_penalty_times_multiplier_on_accepted_harm_only(self):
        audit = self.lever(probability=1.0, penalty=1.5, penalty_multiplier=2.0)
        base = audit.unwrapped
        events_of(base)
        c_a, c_b = audit._audit(batch(**self.ROWS))
        assert c_a.tolist() == [3.0, 0.0, 0.0, 0.0, 3.0] and c_b == 0.0
        (ev,) = events_of(base)
        assert ev["audited"] == 3 and ev["hits"] == [[0, 1], [3, 1]]
        assert ev["hit_initiators"] == [0, 3]
        assert ev["summary"] == {"audits": 3, "audit_hits": 2, "audit_misses": 0,
                                 "penalties": 6.0}
        assert {a for a in base.possible_agents if base.infos[a]["governance"]} == {
            "agent_0", "agent_1", "agent_3"}  # the audited initiators

    def test_truth_mode_ignores_the_proxy(self):
        audit = self.lever(probability=1.0, penalty=1.0, penalty_multiplier=1.0)
        c_a, _ = audit._audit(batch(accepted=[True, True], v=[-1, 1], p=[0.99, 0.01]))
        assert c_a.tolist() == [1.0, 0.0]  # dressed-up harm caught, honest low p spared

    def test_a_missed_harm_costs_nothing_and_is_counted(self):
        audit = self.lever(probability=1.0, miss_rate=1.0)
        base = audit.unwrapped
        events_of(base)
        c_a, _ = audit._audit(batch(**self.ROWS))
        assert c_a.tolist() == [0.0] * 5
        (ev,) = events_of(base)
        assert ev["summary"] == {"audits": 3, "audit_hits": 0, "audit_misses": 2,
                                 "penalties": 0.0}
        assert ev["hit_initiators"] == []

    def test_proxy_mode_charges_threshold_minus_p_times_multiplier(self):
        audit = self.lever(probability=1.0, mode="proxy", threshold=0.6,
                           penalty_multiplier=2.0)
        c_a, c_b = audit._audit(batch(**self.ROWS))
        assert c_a.tolist() == pytest.approx([(0.6 - 0.2) * 2, 0.0, 0.0, 0.0,
                                              (0.6 - 0.55) * 2], rel=1e-12)
        assert c_b == 0.0

    def test_probability_zero_audits_nothing(self):
        audit = self.lever(probability=0.0)
        assert audit._audit(batch(**self.ROWS)) is None
        assert audit._audit(batch()) is None

    def test_audits_fire_at_the_configured_rate(self):
        prob, miss = 0.2, 0.25
        env = envs.make("sandbox-v0", n_agents=12, n_epochs=20, steps_per_epoch=10,
                        groups=("honest",) * 6 + ("opportunistic",) * 6)
        env = RandomAudit(env, probability=prob, miss_rate=miss)
        hon, opp = make_policy("honest"), make_policy("opportunistic")
        rows = rollout(env, {a: hon if i < 6 else opp
                             for i, a in enumerate(env.possible_agents)}, seed=7)
        accepted = sum(r["n_accepted"] for r in rows)
        audits = sum(r["gov_audits"] for r in rows)
        hits = sum(r["gov_audit_hits"] for r in rows)
        misses = sum(r["gov_audit_misses"] for r in rows)
        assert accepted > 1000
        sd = np.sqrt(accepted * prob * (1 - prob))
        assert abs(audits - prob * accepted) <= 4 * sd, (audits, accepted)
        harms = hits + misses
        assert harms > 30
        assert abs(misses - miss * harms) <= 4 * np.sqrt(harms * miss * (1 - miss))
        assert sum(r["gov_penalties"] for r in rows) == pytest.approx(hits * 2.0)

    def test_rejected_interactions_are_never_audited_in_a_real_run(self):
        env = RandomAudit(envs.make("sandbox-v0", n_agents=4, n_epochs=2,
                                    steps_per_epoch=5), probability=1.0)
        env.reset(seed=0)
        base = env.unwrapped
        out = drive(env, lambda t, b: trades(b, t))
        for step in out:
            b = step["batch"]
            audits = sum(e["summary"]["audits"] for e in step["events"])
            assert audits == int(b.accepted.sum())
            assert not b.c_a[~b.accepted].any()
        assert sum(len(s["batch"]) - int(s["batch"].accepted.sum()) for s in out) > 0
        assert base.t == base.max_steps


# ===================================================================== circuit breaker


def breaker_oracle(batches, n, *, window, threshold, violations, freeze_epochs, spe):
    """The breaker's rule restated in plain Python: who is frozen after each step."""
    hist = [deque(maxlen=window) for _ in range(n)]
    strikes, release_after, frozen, masks = [0] * n, [-1] * n, set(), []
    for t, b in enumerate(batches):
        epoch = t // spe
        for i in sorted(set(b.initiator.tolist())):
            if i in frozen:
                continue
            hist[i].extend((1.0 - b.p[b.initiator == i]).tolist())
            if sum(hist[i]) / len(hist[i]) >= threshold:
                strikes[i] += 1
            if strikes[i] >= violations:
                frozen.add(i)
                release_after[i], strikes[i] = epoch + freeze_epochs, 0
                hist[i].clear()
        if (t + 1) % spe == 0:
            for i in sorted(frozen):
                if release_after[i] <= epoch:
                    frozen.discard(i)
                    hist[i].clear()
                    strikes[i] = 0
        masks.append([i in frozen for i in range(n)])
    return masks


class TestCircuitBreaker:
    def lever(self, **params):
        env = CircuitBreaker(envs.make("sandbox-v0", n_agents=4, n_epochs=3,
                                       steps_per_epoch=4), **params)
        env.reset(seed=0)
        return env

    def test_window_mean_violations_and_trip(self):
        cb = self.lever(window=3, threshold=0.6, violations=2, freeze_epochs=1)
        base = cb.unwrapped
        events_of(base)
        cb._check(batch(initiator=[0, 1], p=[0.2, 0.9]))  # means 0.8 (strike), 0.1
        assert cb.strikes.tolist() == [1, 0, 0, 0]
        cb._check(batch(initiator=[0], p=[0.9]))  # (0.8 + 0.1) / 2 = 0.45: no strike
        assert cb.strikes.tolist() == [1, 0, 0, 0] and not base.frozen_mask().any()
        # two rows in one step; the window keeps the last three: 0.1, 0.7, 0.9 -> 0.5667
        cb._check(batch(initiator=[0, 0], p=[0.3, 0.1]))
        assert cb.strikes.tolist() == [1, 0, 0, 0]
        cb._check(batch(initiator=[0], p=[0.0]))  # 0.7, 0.9, 1.0 -> 0.8667: trips
        assert base.frozen_mask().tolist() == [True, False, False, False]
        assert cb.strikes[0] == 0 and cb.count[0] == 0  # a clean slate
        (ev,) = events_of(base)
        assert ev == {"frozen": [0], "release_after_epoch": 1,
                      "summary": {"freezes": 1}}
        cb._release(0)
        assert base.frozen_mask()[0]
        cb._release(1)
        assert not base.frozen_mask().any()
        assert events_of(base) == [{"released": [0], "summary": {"releases": 1}}]

    @pytest.mark.parametrize("freeze_epochs", [0, 1, 2])
    def test_freezes_for_exactly_the_configured_epochs(self, freeze_epochs):
        spe, n_epochs = 4, 9
        params = dict(window=3, threshold=0.5, violations=2, freeze_epochs=freeze_epochs)
        base = envs.make("sandbox-v0", n_agents=4, n_epochs=n_epochs, steps_per_epoch=spe,
                         signals={"q_min": 0.0, "q_max": 1.0})
        env = CircuitBreaker(base, **params)
        # agent_0 always proposes harmful work (zero effort, no dressing) and everyone
        # accepts everything; the others propose full-effort work
        shirker = Fixed(kind=1, effort=0)
        worker = Fixed(kind=1, effort=len(base.config.effort_levels) - 1)
        policies = {a: shirker if i == 0 else worker
                    for i, a in enumerate(base.possible_agents)}
        trace = play(env, policies, seed=1, door="arrays")
        masks = [s["frozen"] for s in trace]
        batches = [InteractionBatch.from_columns(s["interactions"]) for s in trace]
        assert masks == breaker_oracle(batches, 4, spe=spe, **params)
        assert not any(m[1] or m[2] or m[3] for m in masks)
        # a trip at step s of epoch e freezes agent_0 for the rest of epoch e and the
        # freeze_epochs whole epochs after it: its mask is set after step s and cleared by the
        # release at the end of epoch e + freeze_epochs (the last step it may not act in)
        trips = [t for t, s in enumerate(trace)
                 if any(ev.get("frozen") == [0] for ev in s["events"])]
        assert len(trips) >= 2, trips
        expected = [False] * len(trace)
        for s in trips:
            release = (s // spe + freeze_epochs + 1) * spe - 1
            for t in range(s, min(release, len(trace))):
                expected[t] = True
        assert [m[0] for m in masks] == expected
        releases = [t for t, s in enumerate(trace)
                    if any(ev.get("released") == [0] for ev in s["events"])]
        assert releases == [(s // spe + freeze_epochs + 1) * spe - 1 for s in trips
                            if (s // spe + freeze_epochs + 1) * spe <= len(trace)]

    def test_released_agent_starts_with_a_clean_slate(self):
        cb = self.lever(window=2, threshold=0.5, violations=1, freeze_epochs=0)
        base = cb.unwrapped
        cb._check(batch(initiator=[0], p=[0.0]))  # mean 1 - p = 1.0: trips at once
        assert base.frozen_mask()[0]
        # the proposal it made in the step it tripped resolves while it is frozen
        cb._check(batch(initiator=[0], p=[0.0]))
        cb._release(0)
        assert not base.frozen_mask()[0]
        # after the release only new work counts: mean 0.2, not (1.0 + 0.2) / 2 = 0.6
        cb._check(batch(initiator=[0], p=[0.8]))
        assert not base.frozen_mask()[0] and cb.strikes[0] == 0


# ===================================================================== collusion detector


class TestCollusionDetector:
    def lever(self, **params):
        env = CollusionDetector(envs.make("sandbox-v0", n_agents=12, n_epochs=3,
                                          steps_per_epoch=4), **params)
        env.reset(seed=0)
        return env

    def epoch_batch(self):
        # pair (0, 1): 6 accepted (and 4 rejected, which do not count); 10 other pairs once
        others = [(2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (2, 4), (3, 5), (6, 8), (7, 9),
                  (10, 2)]
        ini = [0, 1, 0, 1, 0, 1] + [0, 1, 0, 1] + [a for a, _ in others]
        cp = [1, 0, 1, 0, 1, 0] + [1, 0, 1, 0] + [b for _, b in others]
        acc = [True] * 6 + [False] * 4 + [True] * 10
        return batch(initiator=ini, counterparty=cp, accepted=acc, tau=[0.1] * 20)

    def test_flags_a_pair_far_above_the_population(self):
        # 11 pairs, one with 6 and ten with 1 interaction: its z-score is sqrt(10) >= 3
        cd = self.lever(z_threshold=3.0, min_interactions=3, action="freeze",
                        freeze_epochs=1)
        base = cd.unwrapped
        events_of(base)
        cd._collect(self.epoch_batch())
        cd._detect(0)
        (ev,) = events_of(base)
        assert ev == {"pairs": [[0, 1, 6]], "groups": [[0, 1]],
                      "summary": {"flags": 1, "freezes": 2}}
        assert np.flatnonzero(base.frozen_mask()).tolist() == [0, 1]
        cd._detect(1)  # frozen for one whole epoch after the flag, then released
        assert not base.frozen_mask().any()
        assert events_of(base) == [{"released": [0, 1], "summary": {"releases": 2}}]

    def test_flags_a_pair_on_its_transfers_alone(self):
        # eleven pairs with three interactions each (count z-scores all 0); one pays 0.5 a
        # time, the others nothing: its transfer z-score is sqrt(10)
        pairs = [(0, 1)] + [(2 + k % 10, 2 + (k + 1) % 10) for k in range(10)]
        ini = [a for a, _ in pairs for _ in range(3)]
        cp = [b for _, b in pairs for _ in range(3)]
        tau = [0.5] * 3 + [0.0] * 30
        cd = self.lever(z_threshold=3.0, min_interactions=3, action="freeze")
        events_of(cd.unwrapped)
        cd._collect(batch(initiator=ini, counterparty=cp, accepted=[True] * 33, tau=tau))
        cd._detect(0)
        (ev,) = events_of(cd.unwrapped)
        assert ev["pairs"] == [[0, 1, 3]]

    def test_below_threshold_or_min_interactions_nothing_is_flagged(self):
        for params in ({"z_threshold": 3.2}, {"min_interactions": 7}):
            cd = self.lever(action="freeze", **params)
            events_of(cd.unwrapped)
            cd._collect(self.epoch_batch())
            cd._detect(0)
            assert events_of(cd.unwrapped) == [] and not cd.unwrapped.frozen_mask().any()

    def test_freeze_epochs_zero_freezes_no_whole_epoch(self):
        cd = self.lever(z_threshold=3.0, action="freeze", freeze_epochs=0)
        base = cd.unwrapped
        cd._collect(self.epoch_batch())
        cd._detect(0)
        assert not base.frozen_mask().any(), "frozen for a whole epoch with freeze_epochs=0"

    def test_freeze_epochs_zero_still_reports_the_flag(self):
        cd = self.lever(z_threshold=3.0, action="freeze", freeze_epochs=0)
        events_of(cd.unwrapped)
        cd._collect(self.epoch_batch())
        cd._detect(0)
        (ev,) = events_of(cd.unwrapped)
        assert ev["pairs"] == [[0, 1, 6]] and ev["summary"]["flags"] == 1

    N_RING, SPE = 20, 10

    def ring_run(self, ring, penalty=1.5, seed=9):
        # 20 agents who all see each other; agents 0 and 1 form the ring when ``ring``. The
        # z-score of a pair among m interacting pairs is at most sqrt(m - 1), and honest
        # pairs' counts are small and skewed: z >= 3 flags honest pairs in most epochs of
        # this population, z >= 5 separates the ring (z about 10) from them
        n = self.N_RING
        teams = (0, 0) + (-1,) * (n - 2) if ring else (-1,) * n
        base = envs.make("sandbox-v0", n_agents=n, n_epochs=4, steps_per_epoch=self.SPE,
                         max_neighbors=n - 1, teams=teams)
        env = CollusionDetector(base, z_threshold=5.0, min_interactions=3,
                                action="penalize", penalty=penalty)
        honest = make_policy("honest")
        ringp = Ring()
        policies = {a: ringp if ring and i < 2 else honest
                    for i, a in enumerate(base.possible_agents)}
        return play(env, policies, seed=seed, door="arrays")

    def test_a_ring_is_flagged_and_penalised_an_honest_pair_is_not(self):
        trace = self.ring_run(ring=True)
        flagged = [ev for s in trace for ev in s["events"] if "pairs" in ev]
        assert len(flagged) == 4  # every epoch, and only the ring
        for ev in flagged:
            assert [p[:2] for p in ev["pairs"]] == [[0, 1]] and ev["groups"] == [[0, 1]]
            assert ev["pairs"][0][2] >= 2 * self.SPE - 2
            assert ev["summary"] == {"flags": 1, "penalties": 3.0}
        # the penalty lands in the epoch-end step's rewards of the pair, and only there
        unpenalised = self.ring_run(ring=True, penalty=0.0)
        for t, (s, u) in enumerate(zip(trace, unpenalised)):
            assert s["interactions"] == u["interactions"]
            diff = np.subtract(s["rewards"], u["rewards"])
            expected = np.zeros(self.N_RING)
            if (t + 1) % self.SPE == 0:
                expected[:2] = -1.5
                assert "'lever': 'collusion_detector'" in s["infos"]["agent_0"]
                assert s["infos"]["agent_5"] == "[]"
            np.testing.assert_allclose(diff, expected, atol=1e-12)

    def test_an_honest_population_is_not_flagged(self):
        trace = self.ring_run(ring=False)
        assert not [ev for s in trace for ev in s["events"] if "pairs" in ev]


# ===================================================================== reputation disconnect


class TestReputationDisconnect:
    def test_refuses_a_static_network(self):
        with pytest.raises(ValueError, match="dynamic network"):
            ReputationDisconnect(envs.make("sandbox-v0", n_agents=4), threshold=-1.0)

    def test_cuts_every_edge_of_low_reputation_agents(self):
        base = envs.make("sandbox-v0", n_agents=5, network={"dynamic": True})
        env = ReputationDisconnect(base, threshold=-1.0)
        env.reset(seed=0)
        events_of(base)
        base.set_reputation([-2.0, 0.0, -1.0, -1.5, 3.0])  # -1.0 is not below the threshold
        env._cut(0)
        assert base.network.degree.tolist() == [0, 2, 2, 0, 2]
        (ev,) = events_of(base)
        assert ev == {"agents": [0, 3], "summary": {"edges_cut": 7}}  # 4 + 4 - 1 shared
        env._cut(1)  # nothing left to cut: no event
        assert events_of(base) == []

    def test_a_harmful_agent_is_cut_off_at_epoch_end(self):
        spe = 4
        base = envs.make("sandbox-v0", n_agents=4, n_epochs=3, steps_per_epoch=spe,
                         network={"dynamic": True}, signals={"q_min": 0.0, "q_max": 1.0})
        env = ReputationDisconnect(base, threshold=-0.2)
        env.reset(seed=0)
        top = len(base.config.effort_levels) - 1
        a = np.stack([act(base, kind=1, respond=[1] * base.M)] + [
            act(base, kind=1, effort=top, respond=[1] * base.M)] * 3)
        out = drive(env, lambda t, b: a)
        cut_at = [t for t, s in enumerate(out) if s["events"]]
        assert cut_at and cut_at[0] % spe == spe - 1  # at an epoch end
        t = cut_at[0]
        assert out[t]["reputation"][0] < -0.2
        assert out[t]["events"][0]["agents"] == [0]
        assert out[t]["events"][0]["summary"]["edges_cut"] == 3
        assert base.network.degree[0] == 0 and not base.obs_arrays.neighbor_mask[0].any()
        later = [s["batch"] for s in out[t + 2:]]
        assert all(((b.initiator != 0) & (b.counterparty != 0)).all() for b in later)

    def test_decay_runs_before_the_disconnect_at_the_same_epoch_end(self):
        base = envs.make("sandbox-v0", n_agents=3, n_epochs=2, steps_per_epoch=2,
                         network={"dynamic": True})
        env = governance_stack(base, {"reputation_disconnect": {"threshold": -1.0},
                                      "reputation_decay": {"rate": 0.9}})
        env.reset(seed=0)
        noop = np.stack([act(base)] * 3)
        base.step_arrays(noop)
        base.set_reputation([-1.05, -1.2, 0.0])  # decayed: -0.945 (kept), -1.08 (cut)
        base.step_arrays(noop)  # the epoch's end
        np.testing.assert_allclose(base.get_reputation(), [-0.945, -1.08, 0.0], rtol=1e-12)
        assert base.network.degree.tolist() == [1, 0, 1]

    def test_scenario_with_a_static_network_is_a_config_error(self, tmp_path):
        path = tmp_path / "s.yaml"
        path.write_text(
            "name: cut\nagents: [{type: honest, count: 3}]\n"
            "simulation: {n_epochs: 1, steps_per_epoch: 2, seed: 0}\n"
            "governance: {reputation_disconnect: {threshold: -1.0}}\n")
        with pytest.raises(ConfigError, match="dynamic network"):
            load_scenario(path)


# ===================================================================== events, infos


def test_governance_events_reach_the_log_and_the_named_agents_infos(tmp_path):
    path = tmp_path / "events.jsonl"
    base = envs.make("sandbox-v0", n_agents=3, n_epochs=1, steps_per_epoch=3,
                     event_log=path, signals={"q_min": 0.0, "q_max": 1.0})
    env = RandomAudit(base, probability=1.0)
    obs, infos = env.reset(seed=0)
    a0, a1, a2 = base.possible_agents
    noop = act(base)
    env.step({a0: act(base, kind=1), a1: noop, a2: noop})
    accept = act(base, respond=[1] * base.M)
    _, rewards, _, _, infos = env.step({a0: noop, a1: accept, a2: accept})
    (rec,) = infos[a0]["interactions"]
    assert rec.c_a == 2.0 and rewards[a0] == pytest.approx(rec.payoff_a)
    (entry,) = infos[a0]["governance"]  # the audited initiator is named, no one else
    assert (entry["lever"], entry["step"]) == ("random_audit", 1)
    assert entry["data"]["hit_initiators"] == [0]
    assert infos[a1]["governance"] == [] and infos[a2]["governance"] == []
    _, _, _, _, infos = env.step({a0: noop, a1: noop, a2: noop})
    assert infos[a0]["governance"] == []  # per step, like every info entry
    env.close()
    (ev,) = replay(path).governance
    assert (ev.step, ev.epoch, ev.lever) == (1, 0, "random_audit")
    assert ev.data["hit_initiators"] == [0] and ev.data["summary"]["penalties"] == 2.0


# ===================================================================== scenarios


def test_yaml_governance_block_builds_the_stack(tmp_path):
    path = tmp_path / "governed.yaml"
    path.write_text("""\
name: governed
agents:
  - {type: honest, count: 4}
  - {type: deceptive, count: 2}
network: {topology: small_world, dynamic: true}
simulation: {n_epochs: 3, steps_per_epoch: 5, seed: 2}
governance:
  reputation_disconnect: {threshold: -1.0}
  transaction_tax: {rate: 0.05, split: 0.5, redistribute: false}
  reputation_decay: {rate: 0.95}
  vote_normalization: {k: 10}
  staking: {min_stake: 10.0, slash_fraction: 0.1}
  circuit_breaker: {window: 10, threshold: 0.6, violations: 3, freeze_epochs: 2}
  random_audit: {probability: 0.15, penalty_multiplier: 2.0, mode: truth}
  collusion_detector: {z_threshold: 3.0, min_interactions: 3, action: penalize}
""")
    scenario = load_scenario(path)
    env, policies = build(scenario)
    assert [type(w) for w in levers(env)] == SANDBOX_ORDER
    tax = levers(env)[ORDER.index(TransactionTax)]
    assert tax.params.rate == 0.05 and tax.params.redistribute is False
    rows = rollout(env, policies, seed=2)
    assert len(rows) == 3 and all(f"gov_{k}" in rows[0] for k in SUMMARY_KEYS)
    assert sum(r["gov_tax_revenue"] for r in rows) >= 0

    path.write_text(path.read_text().replace("rate: 0.95", "rate: 1.5"))
    with pytest.raises(ConfigError, match="reputation_decay.rate"):
        load_scenario(path)


# ===================================================================== review fixes
def test_bankruptcy_is_marked_even_for_an_agent_a_lever_has_frozen():
    """Money running out while a lever holds the agent frozen is still bankruptcy: no
    lever's release (nor staking's) may let a broke agent act again."""
    base = envs.make("sandbox-v0", n_agents=3, n_epochs=1, steps_per_epoch=4,
                     initial_resources=5.0)
    base.reset(seed=0)
    base.set_frozen([0], True, lever="circuit_breaker")
    base.add_step_hook(lambda b: base.add_rewards([-10.0, 0.0, 0.0]) if base.clock[0] == 0
                       else None)
    noop = np.zeros((3, len(base.nvec)), dtype=np.int64)
    base.step_arrays(noop)
    base.set_frozen([0], False, lever="circuit_breaker")
    assert base.frozen_mask().tolist() == [True, False, False]  # bankrupt, for good
    assert not base.obs_arrays.action_mask[0, 1:6].any()


def test_no_lever_can_set_or_lift_a_bankruptcy():
    base = envs.make("sandbox-v0", n_agents=2, n_epochs=1, steps_per_epoch=2)
    base.reset(seed=0)
    with pytest.raises(ValueError, match="'bankrupt' is the environment's own"):
        base.set_frozen([0], False, lever="bankrupt")


def test_a_rejected_interaction_carries_no_cost_whatever_a_hook_returns():
    base = envs.make("sandbox-v0", n_agents=6, n_epochs=1, steps_per_epoch=6)
    base.add_cost_hook(lambda batch: (0.5, 0.25))  # scalars: every row, accepted or not
    base.reset(seed=3)
    pol = make_policy("opportunistic", seed=0)
    rows = np.arange(6)
    seen_rejected = 0
    for _ in range(6):
        base.step_arrays(pol.act_arrays(ObsBatch.from_env(base, rows)))
        b = base.last_batch
        seen_rejected += int((~b.accepted).sum())
        assert (b.c_a[~b.accepted] == 0).all() and (b.c_b[~b.accepted] == 0).all()
        assert (b.c_a[b.accepted] == 0.5).all() and (b.c_b[b.accepted] == 0.25).all()
    assert seen_rejected > 0, "no rejected interaction: the test would prove nothing"
