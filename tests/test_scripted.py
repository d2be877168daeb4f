"""Scripted policies, Axelrod style: against these fixed observations, these actions."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.policy import ObsBatch
from baselines.scripted import POLICIES, make_policy
from envs.sandbox import INBOX_FEATURES, NEIGHBOR_FEATURES, SELF_FEATURES, parallel_env

K, M = 3, 2
NVEC = np.array([6, K, 5, 3, 3] + [2] * M)
KIND, SLOT, EFFORT, DRESS, TRANSFER = range(5)


def make_obs(self_=None, neighbors=(), inbox=(), n=1):
    """An ObsBatch of ``n`` identical rows built from feature dicts."""
    s = np.zeros((n, len(SELF_FEATURES)), np.float32)
    for k, v in (self_ or {}).items():
        s[:, SELF_FEATURES.index(k)] = v
    nb = np.zeros((n, K, len(NEIGHBOR_FEATURES)), np.float32)
    nmask = np.zeros((n, K), np.int8)
    for j, feats in enumerate(neighbors):
        nmask[:, j] = 1
        for k, v in {"trust": 0.5, "trust_in_me": 0.5, **feats}.items():
            nb[:, j, NEIGHBOR_FEATURES.index(k)] = v
    box = np.zeros((n, M, len(INBOX_FEATURES)), np.float32)
    for j, feats in enumerate(inbox):
        for k, v in {"present": 1, "sender_trust": 0.5, **feats}.items():
            box[:, j, INBOX_FEATURES.index(k)] = v
    mask = np.ones((n, NVEC.sum()), np.int8)
    mask[:, 6:6 + K] = nmask
    return ObsBatch(self_=s, neighbors=nb, neighbor_mask=nmask, inbox=box, action_mask=mask,
                    nvec=NVEC)


class PolicyChecks:
    """Shared checks for every scripted policy (subclasses set ``name``)."""

    name = ""

    def policy(self, **params):
        return make_policy(self.name, seed=0, **params)

    def test_actions_in_space_and_deterministic(self):
        obs = make_obs(neighbors=[{}, {"reputation": 1.0}], inbox=[{"p": 0.9}], n=50)
        a, b = self.policy().act_arrays(obs), self.policy().act_arrays(obs)
        assert np.array_equal(a, b)
        assert a.shape == (50, len(NVEC)) and np.all((a >= 0) & (a < NVEC))
        pol = self.policy()
        first = pol.act_arrays(obs)
        pol.reset()
        assert np.array_equal(pol.act_arrays(obs), first)

    def test_never_targets_an_empty_slot_and_never_accepts_an_empty_inbox(self):
        obs = make_obs(neighbors=[{}], n=200)  # only slot 0 is a neighbour; inbox empty
        a = self.policy().act_arrays(obs)
        assert np.all(a[:, SLOT] == 0)
        assert np.all(a[:, 5:] == 0)

    def test_no_neighbours_means_no_proposal(self):
        a = self.policy().act_arrays(make_obs(n=20))
        assert np.all(a[:, KIND] == 0)

    def test_dict_door_equals_array_door_on_a_real_env(self):
        env = parallel_env(n_agents=6)
        obs, infos = env.reset(seed=1)
        env.step({a: env.action_space(a).sample() for a in env.agents})
        p1, p2 = self.policy(), self.policy()
        arr = p1.act_arrays(ObsBatch.from_env(env))
        dic = p2.act_batch([env._obs_dicts[a] for a in env.agents],
                           [env.infos[a] for a in env.agents])
        assert np.array_equal(arr, dic)
        # one agent at a time draws from the generator in another order, so only validity
        # is comparable here
        one = self.policy().act(env._obs_dicts["agent_0"], env.infos["agent_0"])
        assert env.action_space("agent_0").contains(one)


class TestHonest(PolicyChecks):
    name = "honest"

    def test_full_effort_no_dressing_pays_on_trades(self):
        a = self.policy(propose_prob=1.0).act_arrays(make_obs(neighbors=[{}], n=300))
        assert np.all(a[:, KIND] >= 1) and np.all(a[:, KIND] <= 4)  # never votes
        assert np.all(a[:, EFFORT] == 4) and np.all(a[:, DRESS] == 0)
        assert np.array_equal(a[:, TRANSFER] == 1, a[:, KIND] == 3)

    @pytest.mark.parametrize("kind,p,trust,accept", [
        (1, 0.5, 0.5, True),   # reply: 0.3*0.5 + 0.7*0.5 = 0.50 >= 0.4
        (1, 0.3, 0.5, False),  # reply: 0.15 + 0.21 = 0.36 < 0.4
        (2, 0.4, 0.5, False),  # trade: 0.15 + 0.28 = 0.43 < 0.4 + 0.1
        (2, 0.6, 0.5, True),   # trade: 0.15 + 0.42 = 0.57 >= 0.5
        (0, 0.2, 0.5, False),  # collaboration: 0.15 + 0.14 = 0.29 < 0.4 - 0.1
        (0, 0.25, 0.5, True),  # collaboration: 0.15 + 0.175 = 0.325 >= 0.3
        (1, 0.2, 1.0, True),   # trusted sender: 0.3 + 0.14 = 0.44 >= 0.4
    ])
    def test_accepts_on_signals_and_trust(self, kind, p, trust, accept):
        obs = make_obs(neighbors=[{}], inbox=[{"kind": kind, "p": p, "sender_trust": trust}])
        a = self.policy().act_arrays(obs)
        assert bool(a[0, 5]) is accept
        assert a[0, 6] == 0


class TestOpportunistic(PolicyChecks):
    name = "opportunistic"

    def test_cherry_picks_the_partner_that_trusts_it_most(self):
        obs = make_obs(neighbors=[{"trust_in_me": 0.2}, {"trust_in_me": 0.9}, {}], n=100)
        a = self.policy(propose_prob=1.0).act_arrays(obs)
        assert np.all(a[:, SLOT] == 1)
        free = (a[:, EFFORT] == 0).mean()
        assert 0.15 < free < 0.45 and set(np.unique(a[:, EFFORT])) <= {0, 2}
        assert np.all(a[:, TRANSFER] == 0)  # never pays

    def test_accepts_paid_or_trusted_offers_always(self):
        obs = make_obs(inbox=[{"transfer": 0.1, "p": 0.05}, {"sender_trust": 0.8, "p": 0.1}],
                       n=100)
        assert np.all(self.policy().act_arrays(obs)[:, 5:] == 1)

    def test_accepts_profitable_offers_with_probability(self):
        obs = make_obs(inbox=[{"p": 0.9}, {"p": 0.2}], n=2000)
        a = self.policy().act_arrays(obs)
        assert 0.55 < a[:, 5].mean() < 0.65  # 0.6
        assert a[:, 6].sum() == 0             # below break-even: never


class TestDeceptive(PolicyChecks):
    name = "deceptive"

    def test_honest_before_trust_is_built(self):
        obs = make_obs(self_={"n_initiated": 3, "n_accepted_as_initiator": 3},
                       neighbors=[{"trust_in_me": 0.9, "n_accepted_from": 3}] * 3, n=100)
        a = self.policy(propose_prob=1.0).act_arrays(obs)
        assert np.all(a[:, EFFORT] == 4) and np.all(a[:, DRESS] == 0)

    def test_exploits_trusted_partners_once_trust_is_built(self):
        obs = make_obs(self_={"n_initiated": 11, "n_accepted_as_initiator": 6},
                       neighbors=[{"trust_in_me": 0.6, "n_accepted_from": 3},
                                  {"trust_in_me": 0.9, "n_accepted_from": 3},
                                  {"trust_in_me": 0.8, "n_accepted_from": 2}], n=100)
        a = self.policy(propose_prob=1.0).act_arrays(obs)
        assert np.all(a[:, EFFORT] == 0) and np.all(a[:, DRESS] == 2)
        assert np.all(a[:, SLOT] == 1)  # the partner that trusts it most

    def test_one_trusting_partner_is_not_enough(self):
        obs = make_obs(self_={"n_initiated": 11, "n_accepted_as_initiator": 6},
                       neighbors=[{"trust_in_me": 0.9, "n_accepted_from": 3}, {}], n=50)
        a = self.policy(propose_prob=1.0).act_arrays(obs)
        assert np.all(a[:, DRESS] == 0)


class TestAdversarial(PolicyChecks):
    name = "adversarial"

    def test_attacks_most_reputable_non_ally_with_zero_effort(self):
        obs = make_obs(self_={"steps_since_proposal": 5},
                       neighbors=[{"reputation": 2.0, "same_team": 1}, {"reputation": 1.0},
                                  {"reputation": 0.1}], n=1000)
        a = self.policy().act_arrays(obs)
        attacks = a[:, KIND] > 0
        assert 0.55 < attacks.mean() < 0.65
        assert set(np.unique(a[attacks, KIND])) == {4, 5}  # task or vote
        assert np.all(a[attacks, SLOT] == 1) and np.all(a[:, EFFORT] == 0)

    def test_cooldown(self):
        obs = make_obs(self_={"steps_since_proposal": 2}, neighbors=[{}], n=200)
        assert np.all(self.policy().act_arrays(obs)[:, KIND] == 0)

    def test_accepts_only_from_allies(self):
        obs = make_obs(inbox=[{"sender_same_team": 1, "p": 0.1}, {"p": 0.95}], n=10)
        a = self.policy().act_arrays(obs)
        assert np.all(a[:, 5] == 1) and np.all(a[:, 6] == 0)


def test_registry_and_errors():
    assert set(POLICIES) == {"honest", "opportunistic", "deceptive", "adversarial"}
    with pytest.raises(ValueError, match="allowed: adversarial, deceptive, honest"):
        make_policy("saint")
    with pytest.raises(ValueError, match="propose_prob"):
        make_policy("honest", propose_prob=2.0)
    with pytest.raises(ValueError, match="extra"):
        make_policy("honest", bogus=1)


def test_rollout_is_a_function_of_its_seed_with_reused_policies():
    from baselines.runner import rollout

    env = parallel_env(n_agents=6, n_epochs=2, steps_per_epoch=5)
    pols = {a: make_policy(k, seed=0) for a, k in
            zip(env.possible_agents, ["honest", "deceptive"] * 3)}
    def run(seed):  # repr: NaN metrics compare equal to themselves
        return repr(rollout(env, pols, seed=seed))

    first = run(42)
    assert run(42) == first
    assert run(43) != first


def test_a_policy_without_act_arrays_goes_through_the_dict_door():
    from baselines.policy import Policy
    from baselines.runner import rollout

    class ViewReader(Policy):
        """Acts from infos only, as an LLM policy will: proposes to slot 0, accepts all."""

        name = "view_reader"

        def act_batch(self, observations, infos=None):
            out = []
            for o, info in zip(observations, infos):
                a = np.zeros(len(o["action_mask"]), dtype=np.int64)  # one value per dim
                a[0] = 1 if info["view"]["neighbors"] else 0
                a[5:] = [1 if any(b["slot"] == m for b in info["view"]["inbox"]) else 0
                         for m in range(len(a) - 5)]
                out.append(a)
            return np.array(out)

    assert not ViewReader.batched() and make_policy("honest").batched()
    env = parallel_env(n_agents=4, n_epochs=1, steps_per_epoch=4)
    rows = rollout(env, {a: ViewReader() for a in env.possible_agents}, seed=0)
    assert rows[0]["n_accepted"] == rows[0]["n_interactions"] > 0
    with pytest.raises(NotImplementedError, match="act_batch"):
        ViewReader().act_arrays(None)


def test_every_policy_declares_its_classifier():
    keys = {"stochastic", "memory", "uses_signals", "uses_trust", "dresses_signals", "effort"}
    for cls in POLICIES.values():
        assert keys <= set(cls.classifier), cls.name
    assert POLICIES["deceptive"].classifier["dresses_signals"] is True


def test_a_scripted_subclass_reading_infos_is_not_batched():
    from baselines.scripted import Honest

    class InfoHonest(Honest):
        def act_batch(self, observations, infos=None):
            return super().act_batch(observations, infos)

    assert Honest.batched() and not InfoHonest.batched()
    with pytest.raises(ValueError, match="trust_level"):
        make_policy("deceptive", trust_level=0.3)
