"""Behaviour of the sandbox: timing, payoffs, transfers, reputation, masks, errors, doors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from envs.core.api import ActionError
from envs.core.payoff import SoftPayoffEngine
from envs.sandbox import INBOX_FEATURES, NEIGHBOR_FEATURES, SELF_FEATURES, parallel_env

I = {k: i for i, k in enumerate(INBOX_FEATURES)}  # noqa: E741
N = {k: i for i, k in enumerate(NEIGHBOR_FEATURES)}
S = {k: i for i, k in enumerate(SELF_FEATURES)}


def act(env, kind=0, slot=0, effort=0, dressing=0, transfer=0, respond=()):
    a = np.zeros(len(env.nvec), dtype=np.int64)
    a[:5] = kind, slot, effort, dressing, transfer
    for m, r in enumerate(respond):
        a[5 + m] = r
    return a


def pair(**kw):
    """Two agents on one edge: each has exactly one neighbour, in slot 0."""
    cfg = dict(n_agents=2, n_epochs=2, steps_per_epoch=3, **kw)
    env = parallel_env(**cfg)
    env.reset(seed=0)
    return env


def test_proposal_reaches_inbox_then_resolves_next_step():
    env = pair()
    a0, a1 = env.possible_agents
    top_effort = len(env.config.effort_levels) - 1
    obs, *_ = env.step({a0: act(env, kind=3, effort=top_effort, transfer=1), a1: act(env)})
    box = obs[a1]["inbox"][0]
    assert box[I["present"]] == 1 and box[I["kind"]] == 2  # trade
    assert box[I["sender_slot"]] == 0 and box[I["transfer"]] == pytest.approx(0.1)
    assert obs[a1]["self"][S["inbox_count"]] == 1
    assert list(obs[a1]["action_mask"][5]) == [1, 1]  # respond_0 can accept
    assert list(obs[a1]["action_mask"][6]) == [1, 0]  # respond_1: nothing there
    p = float(env._pending.p[0])
    cost = env.config.effort_cost * 1.0
    assert env.last_batch.p.size == 0  # nothing resolved yet
    obs, rewards, _, _, infos = env.step({a0: act(env), a1: act(env, respond=[1])})
    rec = infos[a0]["interactions"]
    assert len(rec) == 1 and rec[0].accepted and rec[0].initiator == a0
    assert rec[0].p == pytest.approx(p) and rec[0].tau == pytest.approx(0.1)
    eng = SoftPayoffEngine(env.config.payoff)
    pi_a, pi_b = eng.payoffs(p, tau=0.1, r_a=p - 0.5)
    assert rec[0].payoff_a == pytest.approx(float(pi_a))
    assert rec[0].payoff_b == pytest.approx(float(pi_b))
    assert rewards[a0] == pytest.approx(float(pi_a)) and rewards[a1] == pytest.approx(float(pi_b))
    # reputation moved by p - 0.5; resources = start - cost + payoff
    assert env.reputation[0] == pytest.approx(p - 0.5)
    assert env.resources[0] == pytest.approx(100.0 - cost + float(pi_a))
    # the counterparty's trust in the initiator is now p
    assert obs[a1]["neighbors"][0, N["trust"]] == pytest.approx(p, abs=1e-6)
    assert obs[a0]["neighbors"][0, N["trust_in_me"]] == pytest.approx(p, abs=1e-6)


def test_rejection_pays_nothing_and_transfer_is_not_paid():
    env = pair()
    a0, a1 = env.possible_agents
    env.step({a0: act(env, kind=3, transfer=2), a1: act(env)})
    _, rewards, _, _, infos = env.step({a0: act(env), a1: act(env, respond=[0])})
    (rec,) = infos[a1]["interactions"]
    # the record keeps the offer; nothing was paid
    assert not rec.accepted and rec.tau == pytest.approx(0.5)
    assert rec.payoff_a == 0 and rec.payoff_b == 0 and rec.r_a == 0
    assert rewards == {a0: 0.0, a1: 0.0}
    assert env.reputation[0] == 0.0


def test_cost_hooks_enter_payoffs_rewards_resources_and_log(tmp_path):
    from envs.core.events import to_interactions

    env = parallel_env(n_agents=2, n_epochs=1, steps_per_epoch=3,
                       event_log=tmp_path / "events.jsonl")
    env.reset(seed=0)
    seen = []

    def tax(batch):  # 10 % of the transfer plus 0.05 flat, on the initiator; 0.02 on b
        seen.append(len(batch))
        return 0.1 * batch.tau + 0.05, np.full(len(batch), 0.02)

    env.add_cost_hook(tax)
    a0, a1 = env.possible_agents
    env.step({a0: act(env, kind=3, transfer=2), a1: act(env)})
    start = env.resources.copy()
    _, rewards, _, _, infos = env.step({a0: act(env), a1: act(env, respond=[1])})
    (rec,) = infos[a0]["interactions"]
    assert seen == [1]
    assert rec.c_a == pytest.approx(0.1 * 0.5 + 0.05) and rec.c_b == pytest.approx(0.02)
    pi_a, pi_b = SoftPayoffEngine(env.config.payoff).payoffs(
        rec.p, tau=0.5, c_a=rec.c_a, c_b=0.02, r_a=rec.p - 0.5)
    assert rec.payoff_a == pytest.approx(float(pi_a)) and rewards[a0] == pytest.approx(
        float(pi_a))
    assert rewards[a1] == pytest.approx(float(pi_b))
    assert env.resources[1] - start[1] == pytest.approx(float(pi_b))
    env.step({a0: act(env), a1: act(env)})
    env.close()
    logged = to_interactions(tmp_path / "events.jsonl")
    assert logged.c_a.tolist() == [pytest.approx(0.1)] and logged.payoff_a[0] == rec.payoff_a


def test_set_frozen_masks_at_once_and_unfreezes():
    env = pair()
    a0, a1 = env.possible_agents
    env.set_frozen([a0])
    obs = env._obs_dicts
    assert obs[a0]["action_mask"][0].tolist() == [1, 0, 0, 0, 0, 0]
    assert obs[a0]["self"][S["frozen"]] == 1
    env.set_frozen(np.array([True, False]), frozen=False)
    assert obs[a0]["action_mask"][0].tolist() == [1] * 6
    with pytest.raises(ValueError, match="unknown agents"):
        env.set_frozen(["agent_9"])


def test_terminations_and_truncations_are_distinct_fresh_dicts():
    env = pair()
    a0, a1 = env.possible_agents
    _, _, terms, truncs, _ = env.step({})
    assert terms is not truncs
    terms[a0] = True
    _, _, terms2, truncs2, _ = env.step({})
    assert terms2 == {a0: False, a1: False} and truncs2 == {a0: False, a1: False}


def test_empty_and_fully_pruned_networks_run():
    env = parallel_env(n_agents=4, n_epochs=2, steps_per_epoch=2,
                       network={"topology": "random", "edge_probability": 0.0})
    obs, _ = env.reset(seed=0)
    assert obs["agent_0"]["action_mask"][0].tolist() == [1, 0, 0, 0, 0, 0]
    while env.agents:
        env.step({a: env.action_space(a).sample(mask=obs[a]["action_mask"]) for a in env.agents})
    env = parallel_env(n_agents=6, n_epochs=6, steps_per_epoch=2,
                       network={"topology": "small_world", "dynamic": True, "decay": 0.6,
                                "min_weight": 0.2})
    env.reset(seed=0)
    while env.agents:
        env.step({})  # nobody interacts: every edge decays away
    assert env.network.n_edges == 0 and not env.slot_mask.any()


def test_dense_graph_every_agent_is_reachable():
    """With more neighbours than slots, ties are broken per agent at random, not by index."""
    env = parallel_env(n_agents=20, max_neighbors=4)
    env.reset(seed=0)
    shown = np.bincount(env.slot_nb[env.slot_mask], minlength=20)
    assert shown.min() >= 1


def test_effort_and_dressing_cost_resources_in_the_step_they_are_chosen():
    env = pair(effort_cost=0.2, dressing_cost=0.3)
    a0, a1 = env.possible_agents
    _, rewards, *_ = env.step({a0: act(env, kind=1, effort=2, dressing=2), a1: act(env)})
    assert rewards[a0] == pytest.approx(-(0.2 * 0.5 + 0.3 * 1.0))
    assert rewards[a1] == 0.0


def test_dressing_moves_signals_not_truth():
    """Same seed, same effort: dressing changes v_hat and p, never the hidden v."""
    out = {}
    for dressing in (0, 2):
        env = parallel_env(n_agents=40, n_epochs=1, steps_per_epoch=2)
        env.reset(seed=11)
        actions = {a: act(env, kind=1, slot=i % 8, effort=0, dressing=dressing)
                   for i, a in enumerate(env.possible_agents)}
        env.step(actions)
        out[dressing] = (env._pending.v.copy(), env._pending.v_hat.copy())
    assert np.array_equal(out[0][0], out[2][0])
    assert (out[2][1] > out[0][1]).mean() > 0.9


def test_out_of_space_action_names_agent_and_allowed_values():
    env = pair()
    a0, a1 = env.possible_agents
    with pytest.raises(ValueError, match=r"agent_1.*'target_slot'.*allows 0\.\.7, got 9"):
        env.step({a0: act(env), a1: act(env, slot=9)})
    with pytest.raises(ActionError, match=r"agent_0.*must have 9 entries"):
        env.step({a0: [1, 0], a1: act(env)})
    with pytest.raises(ActionError, match="unknown agents"):
        env.step({"agent_7": act(env)})
    with pytest.raises(ActionError, match="integers"):
        env.step({a0: act(env).astype(float) + 0.5, a1: act(env)})
    # the failed calls changed nothing: the episode goes on from step 0
    assert env.t == 0
    env.step({a0: act(env)})  # a missing agent takes the no-op action
    assert env.t == 1


def test_masked_target_is_a_no_op():
    env = pair()
    a0, a1 = env.possible_agents
    env.step({a0: act(env, kind=1, slot=5), a1: act(env)})  # slot 5 is empty
    assert env.step_stats["invalid"] == 1 and len(env._pending.p) == 0


def test_inbox_overflow_bounces_extra_proposals():
    env = parallel_env(n_agents=9, inbox_size=3, max_neighbors=8, n_epochs=1,
                       steps_per_epoch=2, network={"topology": "star"})
    env.reset(seed=5)
    actions = {a: act(env, kind=1, slot=0) for a in env.possible_agents[1:]}  # leaves -> hub
    obs, *_ = env.step(actions)
    assert env.step_stats["proposals"] == 8 and env.step_stats["bounced"] == 5
    assert obs["agent_0"]["inbox"][:, I["present"]].tolist() == [1, 1, 1]
    senders = obs["agent_0"]["inbox"][:, I["sender_slot"]]
    assert len(set(senders.tolist())) == 3


def test_bankrupt_agents_are_frozen_and_masked():
    env = pair(initial_resources=0.1, dressing_cost=0.3)
    a0, a1 = env.possible_agents
    obs, *_ = env.step({a0: act(env, kind=1, dressing=2), a1: act(env)})
    assert env.frozen[0] and not env.frozen[1]
    assert obs[a0]["action_mask"][0].tolist() == [1, 0, 0, 0, 0, 0]
    assert a0 in env.agents  # frozen agents stay, masked
    env.step({a0: act(env, kind=1), a1: act(env)})
    assert env.step_stats["invalid"] == 1


def test_infos_are_lazy_dicts_with_records_and_json_view():
    env = parallel_env(n_agents=6, n_epochs=1, steps_per_epoch=4)
    obs, infos = env.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        actions = {a: env.action_space(a).sample(mask=obs[a]["action_mask"])
                   for a in env.agents}
        actions = {a: np.r_[rng.integers(1, 6), x[1:]] for a, x in actions.items()}
        obs, _, _, _, infos = env.step(actions)
    info = infos["agent_3"]
    assert isinstance(info, dict) and "view" in info and "interactions" in info
    view = json.loads(json.dumps(info["view"]))
    assert view["agent"] == "agent_3" and view["step"] == 3
    assert {n["agent"] for n in view["neighbors"]} <= set(env.possible_agents)
    recs = info["interactions"]
    b = env.last_batch
    mine = ((b.initiator == 3) | (b.counterparty == 3)).sum()
    assert len(recs) == mine
    kept = info.materialize()
    assert type(kept) is dict and set(kept) == {"interactions", "view", "governance",
                                                      "action_mask"}


def run_episode(seed, use_arrays, **cfg):
    from baselines.scripted import make_policy

    env = parallel_env(n_agents=12, n_epochs=3, steps_per_epoch=5, **cfg)
    pols = [make_policy(k, seed=i) for i, k in
            enumerate(["honest", "opportunistic", "deceptive", "adversarial"])]
    obs, infos = env.reset(seed=seed)
    trace = []
    while env.agents:
        if use_arrays:
            from baselines.policy import ObsBatch

            arr = np.zeros((12, len(env.nvec)), dtype=np.int64)
            for k, pol in enumerate(pols):
                rows = np.arange(k, 12, 4)
                arr[rows] = pol.act_arrays(ObsBatch.from_env(env, rows))
            rewards = env.step_arrays(arr).copy()
        else:
            arr = np.zeros((12, len(env.nvec)), dtype=np.int64)
            for k, pol in enumerate(pols):
                names = env.possible_agents[k::4]
                arr[k::4] = pol.act_batch([obs[a] for a in names], [infos[a] for a in names])
            obs, rew, *_ , infos = env.step(dict(zip(env.possible_agents, arr)))
            rewards = np.array([rew[a] for a in env.possible_agents])
        trace.append((arr.copy(), rewards, env.last_batch,
                      env.obs_arrays.inbox.copy(), env.obs_arrays.neighbors.copy()))
    return trace


def same(t1, t2):
    return len(t1) == len(t2) and all(
        np.array_equal(a1, a2) and np.array_equal(r1, r2) and b1.equals(b2)
        and np.array_equal(i1, i2) and np.array_equal(n1, n2)
        for (a1, r1, b1, i1, n1), (a2, r2, b2, i2, n2) in zip(t1, t2))


@pytest.mark.parametrize("cfg", [{}, {"network": {"topology": "small_world", "k": 4,
                                                   "dynamic": True, "decay": 0.4}}])
def test_whole_episode_determinism_and_doors_agree(cfg):
    a = run_episode(7, use_arrays=False, **cfg)
    assert same(a, run_episode(7, use_arrays=False, **cfg))
    assert same(a, run_episode(7, use_arrays=True, **cfg))
    assert not same(a, run_episode(8, use_arrays=False, **cfg))


def test_observations_are_views_unless_copying():
    env = parallel_env(n_agents=3)
    obs, _ = env.reset(seed=0)
    assert np.shares_memory(obs["agent_0"]["self"], env.obs_arrays.self_)
    env2 = parallel_env(n_agents=3, copy_observations=True)
    obs2, _ = env2.reset(seed=0)
    before = obs2["agent_0"]["self"].copy()
    env2.step({a: act(env2, kind=1) for a in env2.agents})
    assert np.array_equal(obs2["agent_0"]["self"], before)


def test_dynamic_network_prunes_and_keeps_trust():
    env = parallel_env(n_agents=5, n_epochs=4, steps_per_epoch=2,
                       network={"topology": "complete", "dynamic": True, "decay": 0.5,
                                "min_weight": 0.2, "initial_weight": 0.5})
    env.reset(seed=0)
    # agent_0 proposes to its slot-0 neighbour every step, which always accepts
    for _ in range(env.max_steps):
        acts = {a: act(env, respond=[1] * env.M) for a in env.possible_agents}
        acts["agent_0"] = act(env, kind=1, effort=4)
        env.step(acts)
    # after 4 epochs of halving, only the edge used every step survives
    i, j, w = env.network.edge_list()
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)]
    assert env.slot_mask[0].sum() == 1 and env.slot_mask[2].sum() == 0
    e = env.slot_pos[1, 0]
    assert env.trust_cnt[e] == env.max_steps - 1  # the last proposal is still pending


def test_bad_config_names_the_field():
    with pytest.raises(ValidationError, match="n_agents"):
        parallel_env(n_agents=1)
    with pytest.raises(ValidationError, match="effort_levels"):
        parallel_env(effort_levels=(0.0, 1.5))
    with pytest.raises(ValidationError, match="teams"):
        parallel_env(n_agents=3, teams=(1, 1))
    with pytest.raises(ValidationError, match="extra"):
        parallel_env(n_agent=3)


def test_event_log_records_the_run(tmp_path):
    from envs.core.events import replay

    path = tmp_path / "events.jsonl"
    env = parallel_env(n_agents=4, n_epochs=2, steps_per_epoch=3, event_log=path)
    obs, _ = env.reset(seed=1)
    batches = []
    while env.agents:
        env.step({a: act(env, kind=1, respond=[1] * env.M) for a in env.agents})
        batches.append(env.last_batch)
    env.close()
    rep = replay(path)
    assert rep.complete and rep.last_complete_epoch == 1
    assert rep.run_start.seed == 1 and rep.run_start.agents == env.possible_agents
    from envs.core.records import InteractionBatch

    assert rep.interactions().equals(InteractionBatch.concat(batches))


def test_infos_written_by_wrappers_are_per_step_too():
    env = parallel_env(n_agents=3)
    obs, infos = env.reset(seed=0)
    infos["agent_0"]["lever"] = "taxed"  # a plain write before any lazy key
    env.step({a: act(env, kind=1) for a in env.agents})
    assert "lever" not in infos["agent_0"]
    _, _, _, _, infos = env.step({a: act(env, respond=[1] * env.M) for a in env.agents})
    n = ((env.last_batch.initiator == 0) | (env.last_batch.counterparty == 0)).sum()
    assert len(infos["agent_0"]["interactions"]) == n


def test_dense_dynamic_graph_keeps_its_neighbour_sample_until_weights_move():
    env = parallel_env(n_agents=30, max_neighbors=5, n_epochs=3, steps_per_epoch=2,
                       network={"topology": "complete", "dynamic": True, "decay": 0.01})
    env.reset(seed=0)
    first = env.slot_nb.copy()
    env.step({})
    env.step({})  # an epoch of uniform decay: the ranking cannot change
    assert np.array_equal(env.slot_nb, first)


def test_set_frozen_rejects_bad_indices():
    env = pair()
    with pytest.raises(ValueError, match=r"0\.\.1"):
        env.set_frozen(-1)
    with pytest.raises(ValueError, match="names, indices or a boolean mask"):
        env.set_frozen([1.9])


def test_info_in_place_union_is_per_step_too():
    env = pair()
    infos = env.infos
    infos["agent_0"] |= {"lever": 1}
    env.step({})
    assert "lever" not in infos["agent_0"]


def test_observed_edge_weights_follow_decay_without_interactions():
    env = parallel_env(n_agents=6, n_epochs=3, steps_per_epoch=2,
                       network={"topology": "complete", "dynamic": True, "decay": 0.1,
                                "initial_weight": 0.8})
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, *_ = env.step({})  # one epoch, nobody interacts: only decay moves weights
    w = obs["agent_0"]["neighbors"][:, N["edge_weight"]][env.slot_mask[0]]
    assert np.allclose(w, 0.8 * 0.9)
