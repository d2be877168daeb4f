"""Checks shared by the variants' API tests (imported by the test modules, not collected)."""

from __future__ import annotations

import numpy as np


def random_episode_in_space(env, seed: int = 3) -> int:
    """Play one episode with masked random actions through ``env.step``: every observation
    lies in its space and every reward is finite; the episode ends by truncation of every
    agent after ``max_steps`` steps, or (a variant that can end early, e.g. the commons'
    collapse) by termination of every agent. Returns the steps played."""
    obs, infos = env.reset(seed=seed)
    steps = 0
    truncs: dict = {}
    terms: dict = {}
    while env.agents:
        for a in env.agents:
            assert env.observation_space(a).contains(obs[a]), (a, steps)
        actions = {a: env.action_space(a).sample(mask=obs[a]["action_mask"])
                   for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        assert all(np.isfinite(r) for r in rewards.values())
        steps += 1
    if getattr(env.unwrapped, "terminated", False):
        assert steps <= env.max_steps
        assert all(terms.values()) and not any(truncs.values())
    else:
        assert steps == env.max_steps
        assert all(truncs.values()) and not any(terms.values())
    return steps


def assert_same_trace(a: list[dict], b: list[dict]) -> None:
    """Two episode traces (one dict per step of arrays, or of dicts of arrays: a step's
    record columns) are equal, step by step and key by key."""
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b)):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], dict):
                assert x[key].keys() == y[key].keys()
                for col in x[key]:
                    assert np.array_equal(x[key][col], y[key][col]), (t, key, col)
            else:
                assert np.array_equal(x[key], y[key]), (t, key)
