"""The RL views: FlatObservation / FlatLayout, SingleAgentEnv and SharedPolicyVecEnv.

Checked against the libraries' own checkers (gymnasium, Stable-Baselines3, PettingZoo) and
against independent references: ``gymnasium.spaces.flatten`` of the environment's Dict
observations, twin environments stepped by hand through the dict door, the kernel's and the
event log's invalid-action counts.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from pettingzoo.test import parallel_api_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from baselines.policy import ObsBatch, Policy
from baselines.runner import metrics_from_events, rollout
from baselines.scenario import build, load_scenario
from baselines.scripted import make_policy
from envs.core.api import ActionError
from envs.core.events import EpochEnd, EventLog, read_events
from wrappers.flat import FlatLayout, FlatObservation, flatten_batch
from wrappers.single_agent import SingleAgentEnv
from wrappers.vec_env import SharedPolicyVecEnv

STRICT = "configs/strict_governance.yaml"

# what the checkers say of every env here, and why it is harmless: the flat features are
# unbounded (resources, payoffs), and a wrapper built by hand has no gymnasium spec
HARMLESS = (
    r"A Box observation space minimum value is -infinity",
    r"A Box observation space maximum value is infinity",
    r"Not able to test alternative render modes due to the environment not having a spec",
)


# ---------------------------------------------------------------- helpers
def strict_env(**overrides):
    """The strict-governance scenario (levers and all), shortened."""
    scenario = load_scenario(STRICT)
    kw = {"n_epochs": 1, "steps_per_epoch": 4, **overrides}
    return build(scenario, seed=0, **kw)


def small_sandbox(**kw):
    return envs.make("sandbox-v0", **{"n_agents": 4, "n_epochs": 2, "steps_per_epoch": 3,
                                      **kw})


def masked_choice(rng, flat_mask, nvec):
    """One action per row of ``flat_mask``, uniform over the values each dimension allows."""
    flat_mask = np.atleast_2d(np.asarray(flat_mask, dtype=bool))
    cuts = np.cumsum(nvec)[:-1]
    out = np.empty((len(flat_mask), len(nvec)), dtype=np.int64)
    for r, row in enumerate(flat_mask):
        for d, seg in enumerate(np.split(row, cuts)):
            out[r, d] = rng.choice(np.flatnonzero(seg))
    return out


def allowed(flat_mask_row, nvec, action):
    """Whether every value of ``action`` is allowed by the flat mask row."""
    seg = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    return bool(np.asarray(flat_mask_row)[seg + np.asarray(action)].all())


def no_mask_space(env, agent):
    d = env.observation_space(agent)
    return spaces.Dict({k: s for k, s in d.spaces.items() if k != "action_mask"})


def flat_ref(space, obs):
    """gymnasium's own flattening of a Dict observation without its mask."""
    return spaces.flatten(space, {k: v for k, v in obs.items() if k != "action_mask"}
                          ).astype(np.float32)


def tuple_mask(obs):
    return np.concatenate([np.asarray(m) for m in obs["action_mask"]]).astype(bool)


def run_checkers(env):
    """Run both checkers; return every warning that is not one of the known harmless ones."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env)
        sb3_check_env(env, warn=True)
    return [str(w.message) for w in caught
            if not any(re.search(p, str(w.message)) for p in HARMLESS)]


# ---------------------------------------------------------------- 1. checkers
def test_checkers_pass_on_sandbox_under_strict_governance():
    env, policies = strict_env()
    single = SingleAgentEnv(env, learner="agent_6", others=policies)
    assert run_checkers(single) == []
    assert single.observation_space.shape == (single.layout.size,)
    assert single.action_space.nvec.tolist() == env.unwrapped.nvec.tolist()


def test_checkers_pass_on_dilemma():
    env = envs.make("dilemma-v0", n_agents=3, n_epochs=1, steps_per_epoch=4)
    single = SingleAgentEnv(env, learner="agent_1", others=make_policy("tit_for_tat", seed=0))
    assert run_checkers(single) == []
    assert single.action_space.nvec.tolist() == [2, 2]


# ---------------------------------------------------------------- 2. flat observation
@pytest.mark.parametrize("which", ["sandbox_levers", "dilemma"])
def test_flat_observation_parallel_api(which):
    if which == "sandbox_levers":
        env = strict_env(n_epochs=2, steps_per_epoch=3)[0]
    else:
        env = envs.make("dilemma-v0", n_agents=3, n_epochs=2, steps_per_epoch=3)
    flat = FlatObservation(env)
    parallel_api_test(flat, num_cycles=20)
    obs, infos = flat.reset(seed=1)
    a = flat.possible_agents[0]
    assert isinstance(flat.observation_space(a), spaces.Box)
    assert obs[a].shape == (flat.layout.size,) and obs[a].dtype == np.float32
    assert infos[a]["action_mask"].shape == (flat.layout.mask_size,)
    np.testing.assert_array_equal(flat.action_masks()[0], infos[a]["action_mask"])


@pytest.mark.parametrize("which", ["sandbox_levers", "dilemma"])
def test_flat_vector_is_gymnasium_flatten_of_the_dict_observation(which):
    def make():
        if which == "sandbox_levers":
            return strict_env(n_epochs=1, steps_per_epoch=5)[0]
        return envs.make("dilemma-v0", n_agents=4, n_epochs=1, steps_per_epoch=5,
                         noise=0.1, perception_noise=0.1)

    flat, twin = FlatObservation(make(), copy=True), make()  # twin: the unflattened env
    obs, _ = flat.reset(seed=4)
    tobs, _ = twin.reset(seed=4)
    space = no_mask_space(twin, twin.possible_agents[0])
    assert spaces.flatdim(space) == flat.layout.size
    while twin.agents:
        for a in twin.possible_agents:
            np.testing.assert_array_equal(obs[a], flat_ref(space, tobs[a]))
        acts = {a: twin.action_space(a).sample(mask=tobs[a]["action_mask"])
                for a in twin.agents}
        obs, r1, _, _, _ = flat.step(acts)
        tobs, r2, _, _, _ = twin.step(acts)
        assert r1 == r2
    for a in twin.possible_agents:
        np.testing.assert_array_equal(obs[a], flat_ref(space, tobs[a]))


def test_layout_names_land_where_the_arrays_put_them():
    env = small_sandbox(n_agents=5, n_epochs=1, steps_per_epoch=4)
    flat = FlatObservation(env)
    lay = flat.layout
    assert len(lay.names) == lay.size == len(set(lay.names))
    base = env.unwrapped
    obs, _ = flat.reset(seed=2)
    pos = lay.names.index
    rng = np.random.default_rng(2)
    for _ in range(3):  # proposals land in inboxes after a step
        acts = base.sample_actions(rng)
        acts[:, 0] = np.maximum(acts[:, 0], 1)  # everyone proposes something
        obs, _, _, _, _ = flat.step(dict(zip(base.possible_agents, acts)))
        checked_inbox = 0
        for i, a in enumerate(base.possible_agents):
            o = obs[a]
            assert o[pos("self.resources")] == np.float32(base.resources[i])
            assert o[pos("self.reputation")] == np.float32(base.reputation[i])
            view = base.view(i)
            for nb in view["neighbors"]:
                k = nb["slot"]
                assert o[pos(f"neighbor_mask[{k}]")] == 1
                assert o[pos(f"neighbors[{k}].reputation")] == pytest.approx(
                    nb["reputation"], abs=1e-4)
            slot0 = [m for m in view["inbox"] if m["slot"] == 0]
            assert o[pos("inbox[0].present")] == float(bool(slot0))
            if slot0:
                assert o[pos("inbox[0].p")] == pytest.approx(slot0[0]["p"], abs=1e-4)
                assert o[pos("inbox[0].transfer")] == pytest.approx(slot0[0]["transfer"])
                checked_inbox += 1
        assert checked_inbox > 0  # the step had proposals to check
    # the batched helpers agree with the wrapper's vector
    batch = ObsBatch.from_env(base)
    np.testing.assert_array_equal(flatten_batch(batch, lay), np.stack(list(obs.values())))
    np.testing.assert_array_equal(flatten_batch(batch), np.stack(list(obs.values())))


def test_dilemma_names_and_layout_mismatch():
    env = envs.make("dilemma-v0", n_agents=3, n_epochs=1, steps_per_epoch=3)
    flat = FlatObservation(env)
    lay = flat.layout
    assert len(lay.names) == lay.size == len(set(lay.names))
    base = env.unwrapped
    flat.reset(seed=0)
    acts = {a: np.array([1, 0]) for a in base.possible_agents}  # D to slot 0, C to slot 1
    obs, _, _, _, _ = flat.step(acts)
    for i, a in enumerate(base.possible_agents):
        o = obs[a]
        assert o[lay.names.index("self.resources")] == np.float32(base.resources[i])
        assert o[lay.names.index("my_moves[0].lag_1")] == 1  # no noise: as played
        assert o[lay.names.index("my_moves[1].lag_1")] == 0
        assert o[lay.names.index("my_moves[0].lag_2")] == 0  # one round only
    assert lay.mismatch(lay.describe()) is None
    assert lay.mismatch(FlatLayout(envs.make("dilemma-v0", n_agents=3)).describe()) is None
    other = FlatLayout(envs.make("dilemma-v0", n_agents=3, history_length=2))
    assert "observation arrays" in lay.mismatch(other.describe())
    assert "sandbox-v0" in lay.mismatch(FlatLayout(small_sandbox()).describe())


# ---------------------------------------------------------------- 3. determinism
def _single_trajectory(seed):
    env, policies = strict_env(n_epochs=2, steps_per_epoch=3)
    single = SingleAgentEnv(env, learner="agent_6", others=policies)
    obs, info = single.reset(seed=seed)
    rng = np.random.default_rng(7)
    out = [obs.copy()]
    rewards = []
    done = False
    while not done:
        act = masked_choice(rng, info["action_mask"], single.nvec)[0]
        obs, r, term, trunc, info = single.step(act)
        out.append(obs.copy())
        rewards.append(r)
        done = term or trunc
    return np.stack(out), np.array(rewards), single


def test_single_agent_env_same_seed_same_episode():
    o1, r1, env = _single_trajectory(seed=5)
    o2, r2, _ = _single_trajectory(seed=5)
    assert len(r1) == env.base.max_steps
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert np.any(r1 != 0)  # the comparison saw real payoffs
    o3, r3, _ = _single_trajectory(seed=6)
    assert not (np.array_equal(o1, o3) and np.array_equal(r1, r3))
    # reset with the same seed replays on the same object as well
    obs, _ = env.reset(seed=5)
    np.testing.assert_array_equal(obs, o1[0])


def _vec_trajectory(seed, steps=11):
    def make():
        return small_sandbox(n_agents=5, n_epochs=2, steps_per_epoch=2)

    venv = SharedPolicyVecEnv(make, ["agent_0", "agent_1"], others=make_policy("honest"),
                              copies=2, seed=seed)
    rng = np.random.default_rng(0)
    rows = [(venv.reset(), None, None, None)]
    for _ in range(steps):
        obs, rew, dones, infos = venv.step(venv.sample_actions(rng))
        term = [infos[i]["terminal_observation"].copy() for i in np.flatnonzero(dones)]
        rows.append((obs, rew, dones, term))
    return rows, venv


def test_vec_env_same_seed_same_steps_across_episode_ends():
    a, venv = _vec_trajectory(seed=3)
    b, _ = _vec_trajectory(seed=3)
    n_done = 0
    for (o1, r1, d1, t1), (o2, r2, d2, t2) in zip(a, b):
        np.testing.assert_array_equal(o1, o2)
        if r1 is not None:
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(d1, d2)
            assert len(t1) == len(t2)
            for x, y in zip(t1, t2):
                np.testing.assert_array_equal(x, y)
            n_done += int(d1.sum())
    assert n_done == 2 * venv.num_envs  # two episode ends of every slot in 11 steps of 4
    assert any(np.any(r != 0) for _, r, _, _ in a[1:])
    c, _ = _vec_trajectory(seed=4)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    # seed() then reset() replays the first observation
    venv.seed(3)
    np.testing.assert_array_equal(venv.reset(), a[0][0])


# ---------------------------------------------------------------- 4. vec env episode ends
def test_vec_env_episode_ends_against_a_hand_stepped_reference():
    seed, L, copies = 11, 2, 2
    learner_rows = [0, 2]

    def make():
        return small_sandbox(n_agents=5, n_epochs=2, steps_per_epoch=3)

    venv = SharedPolicyVecEnv(make, ["agent_0", "agent_2"],
                              others=lambda c: make_policy("honest"), copies=copies, seed=seed)
    assert venv.num_envs == copies * L
    # the reference: per copy, the same env and policy, reset and seeded as the VecEnv
    # documents (episode e of copy c: SeedSequence([seed, c, e]); policy k of a copy:
    # SeedSequence([that seed, k])) and stepped by hand through the dict door
    refs = [make() for _ in range(copies)]
    pols = [make_policy("honest") for _ in range(copies)]
    agents = refs[0].possible_agents
    rest = [i for i in range(len(agents)) if i not in learner_rows]
    space = no_mask_space(refs[0], agents[0])
    max_steps = refs[0].max_steps

    def ref_reset(c, e):
        s = int(np.random.SeedSequence([seed, c, e]).generate_state(1)[0])
        obs, _ = refs[c].reset(seed=s)
        pols[c].reset(seed=int(np.random.SeedSequence([s, 0]).generate_state(1)[0]))
        return obs

    def ref_flat(obs_list):
        return np.stack([flat_ref(space, o[agents[i]]) for o in obs_list
                         for i in learner_rows])

    ref_obs = [ref_reset(c, 0) for c in range(copies)]
    obs = venv.reset()
    np.testing.assert_array_equal(obs, ref_flat(ref_obs))
    returns = np.zeros((copies, L))
    slot_returns = np.zeros(venv.num_envs)
    rng = np.random.default_rng(1)
    ends = 0
    for t in range(2 * max_steps + 2):
        masks = venv.env_method("action_masks")
        bases = venv.get_attr("unwrapped")
        assert masks.dtype == bool and masks.shape == (venv.num_envs, venv.layout.mask_size)
        np.testing.assert_array_equal(masks, np.stack(
            [bases[i].obs_arrays.action_mask[learner_rows[i % L]] for i in range(len(bases))]
        ).astype(bool))
        np.testing.assert_array_equal(masks, np.stack(
            [tuple_mask(o[agents[i]]) for o in ref_obs for i in learner_rows]))
        acts = masked_choice(rng, masks, venv.nvec)
        # the reference steps first (its others act on its arrays as the VecEnv's do)
        ref_rew = []
        for c in range(copies):
            full = np.zeros((len(agents), len(venv.nvec)), dtype=np.int64)
            full[learner_rows] = acts[c * L:(c + 1) * L]
            full[rest] = pols[c].act_arrays(ObsBatch.from_env(refs[c], np.asarray(rest)))
            ref_obs[c], r, _, truncs, _ = refs[c].step(dict(zip(agents, full)))
            ref_rew.append(np.array([r[agents[i]] for i in learner_rows]))
        obs, rewards, dones, infos = venv.step(acts)
        np.testing.assert_allclose(rewards, np.concatenate(ref_rew), rtol=1e-6, atol=1e-6)
        returns += np.stack(ref_rew)
        slot_returns += rewards
        at_end = (t + 1) % max_steps == 0
        assert dones.tolist() == [at_end] * venv.num_envs
        if not at_end:
            np.testing.assert_array_equal(obs, ref_flat(ref_obs))
            assert all("terminal_observation" not in info for info in infos)
            continue
        ends += 1
        terminal = ref_flat(ref_obs)  # the reference's last observation of the episode
        for i, info in enumerate(infos):
            c, j = divmod(i, L)
            np.testing.assert_array_equal(info["terminal_observation"], terminal[i])
            assert info["TimeLimit.truncated"] is True
            assert info["episode"]["l"] == max_steps
            assert info["episode"]["r"] == pytest.approx(returns[c, j], abs=1e-6)
            assert info["episode"]["r"] == pytest.approx(slot_returns[i], abs=1e-4)
        assert np.any(returns != 0)  # the returns compared were real payoffs
        ref_obs = [ref_reset(c, ends) for c in range(copies)]
        np.testing.assert_array_equal(obs, ref_flat(ref_obs))  # the new episode's first
        returns[:] = 0.0
        slot_returns[:] = 0.0
    assert ends == 2


def test_vec_env_infos_returned_at_an_episode_end_stay_as_returned():
    """A caller that keeps the infos of an episode end (a callback, a list of steps) still
    finds the terminal observation there after later steps: the returned list is its own."""
    venv = SharedPolicyVecEnv(lambda: small_sandbox(n_epochs=1, steps_per_epoch=2),
                              ["agent_0", "agent_1"], others=make_policy("honest"), seed=0)
    venv.reset()
    rng = np.random.default_rng(0)
    kept = []
    for _ in range(5):
        _, _, dones, infos = venv.step(venv.sample_actions(rng))
        kept.append((dones.copy(), infos))
    for dones, infos in kept:
        assert len(infos) == venv.num_envs
        assert ["terminal_observation" in info for info in infos] == dones.tolist()
    assert sum(int(d.all()) for d, _ in kept) == 2


# ---------------------------------------------------------------- 5. invalid actions
def test_kernel_counts_masked_choices_per_agent_and_epoch(tmp_path):
    path = tmp_path / "events.jsonl"
    env = small_sandbox(event_log=EventLog(path))  # 4 agents: 3 neighbours of 8 slots
    env.reset(seed=0)
    base = env.unwrapped
    rng = np.random.default_rng(0)
    seg = base._seg
    expected = np.zeros(4, dtype=np.int64)
    for t in range(3):  # epoch 0: agent 0 accepts an empty slot, agent 1 names slot 7
        am = base.obs_arrays.action_mask
        acts = base.sample_actions(rng)
        empty = np.flatnonzero(am[0, seg[5]:].reshape(base.M, 2)[:, 1] == 0)
        assert len(empty) > 0
        acts[0, 5 + empty[0]] = 1
        acts[1, 1] = base.K - 1
        assert am[1, seg[1] + base.K - 1] == 0  # that slot is masked
        base.step_arrays(acts)
        expected[[0, 1]] += 1
        if t < 2:
            np.testing.assert_array_equal(base.invalid_actions, expected)
    np.testing.assert_array_equal(base.epoch_invalid, expected)  # the epoch moved them
    np.testing.assert_array_equal(base.invalid_actions, 0)
    for _ in range(3):  # epoch 1: masked random draws only, never counted
        base.step_arrays(base.sample_actions(rng))
        assert not base.invalid_actions.any()
    np.testing.assert_array_equal(base.epoch_invalid, 0)
    env.close()
    ends = [ev for ev in read_events(path) if isinstance(ev, EpochEnd)]
    assert [ev.state["invalid"] for ev in ends] == [expected.tolist(), [0, 0, 0, 0]]


def test_single_agent_env_reports_masked_choices():
    env = small_sandbox()
    single = SingleAgentEnv(env, learner="agent_0", others=make_policy("honest", seed=0))
    _, info = single.reset(seed=1)
    K = single.base.K
    seen = []
    for t in range(3):  # epoch 0: always the masked target slot K - 1
        assert not info["action_mask"][single.base._seg[1] + K - 1]
        act = masked_choice(np.random.default_rng(t), info["action_mask"], single.nvec)[0]
        act[1] = K - 1
        _, _, _, _, info = single.step(act)
        seen.append(info["invalid_actions"])
    assert seen == [1, 2, 3]
    assert info["epoch_invalid"] == 3 and int(single.base.epoch_invalid[0]) == 3
    single.action_space.seed(0)
    cuts = np.cumsum(single.nvec)[:-1]
    for t in range(3):  # epoch 1: drawn with the mask, never counted
        mask = tuple(m.astype(np.int8) for m in np.split(info["action_mask"], cuts))
        _, _, _, trunc, info = single.step(single.action_space.sample(mask=mask))
        assert info["invalid_actions"] == 3
        assert ("epoch_invalid" in info) == (t == 2)
    assert trunc and info["epoch_invalid"] == 0
    with pytest.raises(RuntimeError, match="after the episode ended"):
        single.step(np.zeros(len(single.nvec), dtype=np.int64))
    _, info = single.reset(seed=1)
    assert info["invalid_actions"] == 0


def test_vec_env_invalid_log():
    def make():
        return small_sandbox(n_agents=4, n_epochs=2, steps_per_epoch=3)

    venv = SharedPolicyVecEnv(make, ["agent_0", "agent_1"], others=make_policy("honest"),
                              copies=2, seed=0)
    venv.reset()
    rng = np.random.default_rng(0)
    K = make().K
    for _ in range(3):  # epoch 0: slot 1 of copy 1 names the masked slot K - 1
        acts = venv.sample_actions(rng)
        acts[3, 1] = K - 1
        venv.step(acts)
    for _ in range(3):  # epoch 1: sampled with the masks
        venv.step(venv.sample_actions(rng))
    assert venv.invalid_log == [
        {"copy": 0, "episode": 0, "epoch": 0, "invalid": 0, "learner_steps": 6},
        {"copy": 1, "episode": 0, "epoch": 0, "invalid": 3, "learner_steps": 6},
        {"copy": 0, "episode": 0, "epoch": 1, "invalid": 0, "learner_steps": 6},
        {"copy": 1, "episode": 0, "epoch": 1, "invalid": 0, "learner_steps": 6}]


class AcceptEverything(Policy):
    """Proposes nothing and accepts every inbox slot, empty or not (a careless agent)."""

    name = "accept_everything"

    def act_arrays(self, obs):
        act = np.zeros((len(obs), len(obs.nvec)), dtype=np.int64)
        act[:, 5:] = 1
        return act


def test_runner_metrics_count_masked_choices_as_the_event_log_does(tmp_path):
    path = tmp_path / "run.jsonl"
    env = small_sandbox(n_agents=5, n_epochs=2, steps_per_epoch=4, event_log=EventLog(path))
    careless, honest = AcceptEverything(), make_policy("honest")
    policies = {a: (careless if i < 2 else honest) for i, a in enumerate(env.possible_agents)}
    base = env.unwrapped
    nvec = base.nvec
    expected = []

    def count_next(*_):  # before every step: how many careless choices the masks forbid
        am = base.obs_arrays.action_mask
        act = careless.act_arrays(ObsBatch.from_env(base, np.arange(2)))
        expected.append(sum(not allowed(am[i], nvec, act[i]) for i in range(2)))

    # the first step's masks: a twin reset with the run's seed (a reset is a function of it)
    twin = small_sandbox(n_agents=5, n_epochs=2, steps_per_epoch=4)
    twin.reset(seed=0)
    am = twin.obs_arrays.action_mask
    act = careless.act_arrays(ObsBatch.from_env(twin, np.arange(2)))
    expected.append(sum(not allowed(am[i], nvec, act[i]) for i in range(2)))
    rows = rollout(env, policies, seed=0, on_step=lambda t, n: t < n and count_next())
    env.close()
    per_epoch = [sum(expected[0:4]), sum(expected[4:8])]
    assert [r["invalid_actions"] for r in rows] == per_epoch
    assert sum(per_epoch) > 0
    assert [r["invalid_actions"] for r in metrics_from_events(path)] == per_epoch


# ---------------------------------------------------------------- 6. bad input
def test_single_agent_env_rejects_bad_actions_clearly():
    env, policies = strict_env()
    single = SingleAgentEnv(env, learner="agent_6", others=policies)
    with pytest.raises(RuntimeError, match="reset"):
        single.step(np.zeros(9, dtype=np.int64))
    single.reset(seed=0)
    d = len(single.nvec)
    with pytest.raises(ActionError, match=rf"must be {d} integers.*shape \(3,\)"):
        single.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ActionError, match=r"must be .* integers.*float"):
        single.step(0.5)
    half = np.zeros(d)
    half[2] = 0.5
    with pytest.raises(ActionError, match=r"float64 of shape"):
        single.step(half)
    big = np.zeros(d, dtype=np.int64)
    big[4] = single.nvec[4]
    with pytest.raises(ActionError, match=r"learner 'agent_6': dimension 4 \('transfer'\) "
                                          rf"allows 0..{single.nvec[4] - 1}, got"):
        single.step(big)
    neg = np.zeros(d, dtype=np.int64)
    neg[0] = -1
    with pytest.raises(ActionError, match=r"agent_6.*dimension 0 \('kind'\)"):
        single.step(neg)
    assert single.base.t == 0  # nothing was played
    _, _, _, _, info = single.step(np.zeros(d))  # integral floats are fine
    assert single.base.t == 1 and info["invalid_actions"] == 0


def test_group_action_errors_name_the_learner():
    env, policies = strict_env()
    single = SingleAgentEnv(env, learner="opportunistic", others=policies)
    single.reset(seed=0)
    act = np.zeros(single.action_space.shape, dtype=np.int64)
    act[len(single.nvec) + 1] = 99
    with pytest.raises(ActionError, match=r"learner 'agent_4': dimension 1 \('target_slot'\)"):
        single.step(act)


def test_single_agent_env_rejects_bad_construction():
    env, policies = strict_env()
    with pytest.raises(ValueError, match=r"agent_0 .. agent_6.*adversarial.*honest"):
        SingleAgentEnv(env, learner="agent_9", others=policies)
    with pytest.raises(ValueError, match=r"unknown: \['nobody'\]"):
        SingleAgentEnv(env, learner=["agent_1", "nobody"], others=policies)
    with pytest.raises(ValueError, match=r"others: no policy for the 6 other agents"):
        SingleAgentEnv(env, learner="agent_6")
    partial = {a: p for a, p in policies.items() if a != "agent_2"}
    with pytest.raises(ValueError, match="agent_2"):
        SingleAgentEnv(env, learner="agent_6", others=partial)
    with pytest.raises(TypeError, match=r"governance levers.*FlatObservation"):
        SingleAgentEnv(FlatObservation(env), learner="agent_6", others=policies)
    with pytest.raises(TypeError, match=r"FlatObservation"):
        SharedPolicyVecEnv(FlatObservation(env), "agent_6", others=policies)


def test_vec_env_rejects_bad_actions_clearly():
    venv = SharedPolicyVecEnv(lambda: small_sandbox(), ["agent_0", "agent_1"],
                              others=make_policy("honest"), copies=2, seed=0)
    venv.reset()
    with pytest.raises(ActionError, match=r"shape \(4, 9\).*shape \(4, 8\)"):
        venv.step(np.zeros((4, 8), dtype=np.int64))
    acts = np.zeros((4, 9), dtype=np.int64)
    acts[3, 2] = 17
    with pytest.raises(ActionError, match=r"slot 3 \(copy 1, agent_1\): dimension 2"):
        venv.step(acts)
    with pytest.raises(ValueError, match="copies"):
        SharedPolicyVecEnv(lambda: small_sandbox(), "agent_0", make_policy("honest"), copies=0)


# ---------------------------------------------------------------- 7. SB3 smoke
@pytest.fixture(scope="module")
def torch_one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _smoke_venv():
    def make():
        return small_sandbox(n_agents=4, n_epochs=2, steps_per_epoch=4)

    return SharedPolicyVecEnv(make, ["agent_0", "agent_1"], others=make_policy("honest"),
                              copies=2, seed=0)


def test_maskable_ppo_never_chooses_a_masked_value(torch_one_thread):
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    venv = _smoke_venv()
    assert is_masking_supported(venv)
    model = MaskablePPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0,
                        device="cpu")
    model.learn(256)
    assert model.num_timesteps >= 256
    assert len(venv.invalid_log) >= 256 // (4 * 4)  # one row per copy and epoch
    assert all(row["invalid"] == 0 for row in venv.invalid_log)
    obs = venv.reset()
    masks = get_action_masks(venv)
    act, _ = model.predict(obs, action_masks=masks)
    assert all(allowed(m, venv.nvec, a) for m, a in zip(masks, act))


def test_plain_ppo_chooses_masked_values_and_they_are_logged(torch_one_thread):
    from stable_baselines3 import PPO

    venv = _smoke_venv()
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0,
                device="cpu")
    model.learn(256)
    assert model.num_timesteps >= 256
    assert sum(row["invalid"] for row in venv.invalid_log) > 0
    assert all(0 <= row["invalid"] <= row["learner_steps"] for row in venv.invalid_log)
    assert venv.env_seconds > 0


# ---------------------------------------------------------------- 8. group learner
def test_group_learner_acts_jointly_and_sums_rewards():
    env, policies = strict_env(n_epochs=2, steps_per_epoch=3)
    single = SingleAgentEnv(env, learner="opportunistic", others=policies)
    solo = SingleAgentEnv(strict_env()[0], learner="agent_3", others=policies)
    size, d = single.layout.size, len(single.nvec)
    assert single.learners == ["agent_3", "agent_4"]
    assert single.observation_space.shape == (2 * size,)
    assert single.observation_space.shape[0] == 2 * solo.observation_space.shape[0]
    assert single.action_space.nvec.tolist() == 2 * solo.action_space.nvec.tolist()
    base = single.base
    res = single.layout.names.index("self.resources")
    obs, info = single.reset(seed=3)
    assert info["action_mask"].shape == (2 * single.layout.mask_size,)
    start = obs[[res, size + res]].astype(np.float64)
    rng = np.random.default_rng(3)
    total = 0.0
    trunc = False
    while not trunc:
        act = masked_choice(rng, info["action_mask"].reshape(2, -1), single.nvec)
        assert act.shape == (2, d)
        obs, r, _, trunc, info = single.step(act.reshape(-1))
        assert r == pytest.approx(float(base.reward_array[3] + base.reward_array[4]))
        np.testing.assert_array_equal(obs[:size], single.layout.flatten(
            base.obs_arrays.named(), [3])[0])
        np.testing.assert_array_equal(obs[size:], single.layout.flatten(
            base.obs_arrays.named(), [4])[0])
        total += r
        assert info["invalid_actions"] == 0
    # the summed rewards are what reached the two learners' resources (in the observation)
    end = obs[[res, size + res]].astype(np.float64)
    assert total != 0
    assert total == pytest.approx(float((end - start).sum()), rel=1e-5, abs=1e-3)
    # a list of the same agents is the same learner
    listed = SingleAgentEnv(strict_env()[0], learner=["agent_4", "agent_3"], others=policies)
    assert listed.learners == ["agent_3", "agent_4"]
