"""Policies that talk: ``pop_turns`` reaches the event log as ``turn`` events, checked when
read, kept through truncation; text policies see the action layout and mask in their view."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from baselines.policy import Policy
from baselines.runner import rollout
from envs.core.events import LogError, replay, truncate_to_epoch


class Talker(Policy):
    """Reads ``info["view"]``; cooperates wherever the mask allows D, and says so."""

    name = "talker"

    def __init__(self, seed=None, **params):
        super().__init__(seed, **params)
        self._turns: list[dict] = []

    def act_batch(self, observations, infos=None):
        out = []
        for info in infos:
            view = info["view"]
            action = np.zeros(len(view["actions"]), dtype=np.int64)
            self._turns.append({"agent": view["agent"], "step": view["step"],
                                "reply": '{"moves": "all C"}', "reasoning": "be nice",
                                "mask": view["mask"]})
            out.append(action)
        return np.asarray(out)

    def pop_turns(self):
        out, self._turns = self._turns, []
        return out


@pytest.mark.parametrize("fmt", ["jsonl", "arrow"])
def test_turns_are_logged_checked_and_truncated(tmp_path, fmt):
    from envs.core.events import EventLog

    path = tmp_path / "events.jsonl"
    env = envs.make("dilemma-v0", n_agents=4, n_epochs=2, steps_per_epoch=3,
                    event_log=EventLog(path, format=fmt))
    talker = Talker()
    rollout(env, dict.fromkeys(env.possible_agents, talker), seed=0)
    env.close()
    rep = replay(path)
    assert len(rep.turns) == 4 * 6
    first = rep.turns[0]
    assert (first.step, first.epoch, first.agent, first.policy) == (0, 0, "agent_0", "talker")
    assert first.data["reasoning"] == "be nice"
    assert first.data["mask"] == {f"move_{k}": [0, 1] for k in range(3)}
    truncate_to_epoch(path, 0)
    assert {t.step for t in replay(path).turns} == {0, 1, 2}


def test_a_turn_naming_an_unknown_agent_is_refused(tmp_path):
    from envs.core.events import EventLog

    path = tmp_path / "events.jsonl"
    log = EventLog(path, format="jsonl")
    log.run_start("dilemma-v0", {"n_epochs": 1, "steps_per_epoch": 2}, seed=0,
                  agents=["a0", "a1"])
    log.turn(0, 0, "a9", "talker", {})
    log.close()
    with pytest.raises(LogError, match="unknown agent 'a9'"):
        replay(path)


@pytest.mark.parametrize("env_id", ["sandbox-v0", "dilemma-v0"])
def test_views_carry_the_action_layout_and_mask(env_id):
    env = envs.make(env_id, n_agents=3)
    env.reset(seed=0)
    view = env.infos["agent_1"]["view"]
    assert list(view["actions"]) == env.action_dim_names
    assert view["actions"] == env.action_layout()
    row = env.obs_arrays.action_mask[1]
    assert sum(len(v) for v in view["mask"].values()) == int(row.sum())
