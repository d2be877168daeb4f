"""Bad actions get an ActionError naming the agent, the dimension and the value as given;
``SandboxEnv.sample_actions`` draws valid actions for every agent in one vectorised call."""

from __future__ import annotations

import time

import numpy as np
import pytest

from envs.core.api import ActionError
from envs.core.network import NetworkConfig
from envs.sandbox import SandboxEnv, parallel_env


def _env(n: int = 3, **kw) -> SandboxEnv:
    env = parallel_env(n_agents=n, n_epochs=5, steps_per_epoch=5, **kw)
    env.reset(seed=0)
    return env


def _noop(env: SandboxEnv) -> list[int]:
    return [0] * len(env.nvec)


def _with(env: SandboxEnv, dim: int, value) -> list:
    act: list = _noop(env)
    act[dim] = value
    return act


# --------------------------------------------------------------------------- bad actions
JUNK = [
    pytest.param("abcdefghi", r"'agent_1' must have 9 entries .*got str", id="string"),
    pytest.param(None, r"'agent_1' must have 9 entries .*got NoneType", id="None"),
    pytest.param({"kind": 1}, r"'agent_1' must have 9 entries .*got dict", id="dict"),
    pytest.param([[0, 1]] * 9, r"'agent_1' must have 9 entries .*shape \(9, 2\)", id="nested"),
    pytest.param([[0], [1, 2]], r"'agent_1' must have 9 entries", id="ragged"),
]


@pytest.mark.parametrize(("action", "pattern"), JUNK)
def test_malformed_action_names_the_agent(action, pattern):
    env = _env()
    a0, a1, a2 = env.possible_agents
    with pytest.raises(ActionError, match=pattern):
        env.step({a0: _noop(env), a1: action, a2: _noop(env)})
    assert env.t == 0  # nothing happened


ENTRIES = [
    pytest.param("1", r"dimension 2 \('effort'\) expects an integer in 0\.\.4, got '1' \(str\)",
                 id="str"),
    pytest.param(None, r"dimension 2 \('effort'\) expects an integer in 0\.\.4, got None",
                 id="None"),
    pytest.param(1 + 2j, r"dimension 2 \('effort'\) expects an integer in 0\.\.4, got \(1\+2j\)",
                 id="complex"),
    pytest.param(float("nan"), r"dimension 2 \('effort'\) expects an integer .*got nan",
                 id="nan"),
    pytest.param(float("inf"), r"dimension 2 \('effort'\) expects an integer .*got inf",
                 id="inf"),
    pytest.param(1.5, r"must be integers: dimension 2 .*got 1\.5", id="fraction"),
    pytest.param(1e30, r"out of its space: dimension 2 \('effort'\) allows 0\.\.4, got 1e\+30",
                 id="1e30"),
    pytest.param(-1e300, r"out of its space: dimension 2 .*got -1e\+300", id="-1e300"),
    pytest.param(2**70, r"out of its space: dimension 2 .*got 1180591620717411303424",
                 id="2**70"),
    pytest.param(-(2**70), r"got -1180591620717411303424", id="-2**70"),
    pytest.param(np.uint64(2**63 + 5), r"got 9223372036854775813", id="uint64"),
    pytest.param(5, r"out of its space: dimension 2 \('effort'\) allows 0\.\.4, got 5\b",
                 id="5"),
]


@pytest.mark.parametrize(("value", "pattern"), ENTRIES)
def test_bad_entry_through_the_dict_door(value, pattern):
    env = _env()
    a0, a1, a2 = env.possible_agents
    with pytest.raises(ActionError, match=r"agent 'agent_1'.*" + pattern):
        env.step({a0: _noop(env), a1: _with(env, 2, value), a2: _noop(env)})
    assert env.t == 0


@pytest.mark.parametrize(("value", "pattern"), ENTRIES)
def test_bad_entry_through_the_array_door(value, pattern):
    env = _env()
    rows = [_noop(env), _with(env, 2, value), _noop(env)]
    if isinstance(value, (str, complex)) or value is None:
        dtype: object = object  # mixed rows, as a user's object array would hold them
    else:
        dtype = np.uint64 if isinstance(value, np.uint64) else None
    arr = np.array(rows, dtype=dtype)
    with pytest.raises(ActionError, match=r"agent 'agent_1'.*" + pattern):
        env.step_arrays(arr)
    assert env.t == 0


def test_float_array_door_reports_the_real_value():
    env = _env()
    arr = np.zeros((3, len(env.nvec)))
    arr[2, 0] = 1e30
    with pytest.raises(ActionError, match=r"agent 'agent_2'.*'kind'.*got 1e\+30"):
        env.step_arrays(arr)


def test_valid_actions_in_any_integral_form_are_accepted():
    env = _env()
    a0, a1, a2 = env.possible_agents
    env.step({a0: np.zeros(9, np.uint8), a1: [0.0] * 9, a2: [False] * 9})
    env.step_arrays(np.zeros((3, 9), dtype=bool))
    assert env.t == 2


def test_fast_path_stays_fast():
    env = _env(2000, network=NetworkConfig(topology="ring"))
    actions = {a: np.zeros(len(env.nvec), dtype=np.int64) for a in env.possible_agents}
    start = time.perf_counter()
    for _ in range(20):
        env.step(actions)
    per_step = (time.perf_counter() - start) / 20
    assert per_step < 0.05  # a full step at 2000 agents, the stacking is a small part


# --------------------------------------------------------------------------- sample_actions
def _allowed(env: SandboxEnv, actions: np.ndarray) -> np.ndarray:
    mask = env.action_masks()
    cols = env._seg[:-1] + actions  # column of each chosen value in the flat mask
    rows = np.arange(len(actions))[:, None]
    return mask[rows, cols] == 1


def test_sample_actions_are_allowed_by_the_masks():
    env = _env(30, network=NetworkConfig(topology="small_world", k=4))
    rng = np.random.default_rng(1)
    env.set_frozen(["agent_3"])
    for _ in range(8):  # inboxes fill up, some agents get frozen, masks change
        actions = env.sample_actions(rng)
        assert actions.shape == (30, len(env.nvec)) and actions.dtype == np.int64
        mask = env.action_masks()
        starts = env._seg[:-1]
        none_allowed = np.add.reduceat(mask, starts, axis=1) == 0
        ok = _allowed(env, actions) | (none_allowed & (actions == 0))
        assert ok.all()
        assert (actions[3, 0] == 0) and (actions[3, 5:] == 0).all()  # frozen: pass, reject
        env.step_arrays(actions)


def test_sample_actions_are_uniform_over_allowed_values():
    env = _env(4)
    mask = env.obs_arrays.action_mask
    seg = env._seg
    mask[:, seg[2]:seg[3]] = [1, 0, 1, 1, 0]  # effort: 0, 2, 3 allowed
    mask[:, seg[1]:seg[2]] = 0  # target slot: nothing allowed -> 0
    rng = np.random.default_rng(7)
    draws = np.concatenate([env.sample_actions(rng) for _ in range(3000)])
    assert (draws[:, 1] == 0).all()
    counts = np.bincount(draws[:, 2], minlength=5)
    assert counts[1] == 0 and counts[4] == 0
    expected = len(draws) / 3
    chi2 = sum((counts[v] - expected) ** 2 / expected for v in (0, 2, 3))
    assert chi2 < 13.8  # 2 degrees of freedom, p = 0.001
    kinds = np.bincount(draws[:, 0], minlength=6)  # all six kinds allowed on a complete graph
    chi2 = ((kinds - len(draws) / 6) ** 2 / (len(draws) / 6)).sum()
    assert chi2 < 20.5  # 5 degrees of freedom, p = 0.001


def test_sample_actions_are_determined_by_the_generator():
    env = _env(10)
    a = env.sample_actions(np.random.default_rng(3))
    b = env.sample_actions(np.random.default_rng(3))
    c = env.sample_actions(np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_sample_actions_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        parallel_env(n_agents=2).sample_actions()


def test_sample_actions_is_fast_at_100k_agents():
    env = SandboxEnv(n_agents=100_000, n_epochs=1, steps_per_epoch=2,
                     network=NetworkConfig(topology="ring"))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    env.sample_actions(rng)
    start = time.perf_counter()
    actions = env.sample_actions(rng)
    assert time.perf_counter() - start < 0.5  # tens of milliseconds; gymnasium: 30+ s
    assert _allowed(env, actions).all()
