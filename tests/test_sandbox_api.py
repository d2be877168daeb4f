"""PettingZoo / Gymnasium conformance of every registered environment (one parametrised test)."""

from __future__ import annotations

import pytest
from envcheck import random_episode_in_space
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from pettingzoo.utils import parallel_to_aec

import envs
from envs.sandbox import parallel_env

CONFIGS = {
    "default": {},
    "scale_free_dynamic": {"n_agents": 25, "max_neighbors": 4, "inbox_size": 2,
                           "network": {"topology": "scale_free", "dynamic": True,
                                       "decay": 0.3, "min_weight": 0.2}},
    "ring_realized": {"n_agents": 6, "network": {"topology": "ring"},
                      "reward_mode": "realized", "n_epochs": 3, "steps_per_epoch": 4},
    "copying": {"n_agents": 4, "copy_observations": True},
}


@pytest.mark.parametrize("env_id", sorted(envs.registry))
def test_registered_ids_pass_parallel_api(env_id):
    parallel_api_test(envs.make(env_id), num_cycles=1000)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parallel_api(name):
    parallel_api_test(parallel_env(**CONFIGS[name]), num_cycles=1000)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parallel_seed(name):
    parallel_seed_test(lambda: parallel_env(**CONFIGS[name]))


def test_aec_api():
    api_test(parallel_to_aec(parallel_env()), num_cycles=1000)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_observations_in_space_every_step(name):
    env = parallel_env(**CONFIGS[name])
    random_episode_in_space(env, seed=3)


def test_spaces_are_cached_objects():
    env = parallel_env()
    a = env.possible_agents[0]
    assert env.observation_space(a) is env.observation_space(a)
    assert env.action_space(a) is env.action_space(a)
    assert env.render_mode is None and "render_modes" in env.metadata
