"""Red-team regressions for commons-v0: edge cases found by probing the variant."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.commons import ACTION_DIMS, CommonsEnv, summary, summary_from_log
from envs.core.events import EventLog, replay

A = {k: i for i, k in enumerate(ACTION_DIMS)}


def make(**config) -> CommonsEnv:
    return envs.make("commons-v0", **config)


def act(base, **per_dim) -> np.ndarray:
    """An action array: ``per_dim[name]`` is a scalar or one value per agent."""
    return base.unwrapped.actions_by_name(**per_dim)


def test_everyone_eliminated_ends_the_episode_mid_epoch(tmp_path):
    """All credits gone: the round that eliminates the last agent ends the episode (it
    used to play on with nobody in it until the horizon), mid-epoch too, and the log
    replays with that epoch closed as terminated."""
    path = tmp_path / "events.jsonl"
    env = make(n_agents=3, n_epochs=4, steps_per_epoch=5, initial_credits=0.5,
               initial_stock=100.0, event_log=EventLog(path))
    env.reset(seed=0)
    names = list(env.possible_agents)
    _, _, terms, truncs, _ = env.step(dict(zip(names, act(env))))  # credits 0.1
    assert not any(terms.values()) and not env.terminated
    _, _, terms, truncs, _ = env.step(dict(zip(names, act(env))))  # -0.3: all out
    assert env.eliminated.all() and env.terminated and env.episode_over
    assert all(terms.values()) and not any(truncs.values()) and env.agents == []
    assert not env.collapsed and env.t == 2 < env.max_steps
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step_arrays(act(env))
    env.close()
    rep = replay(path)
    assert rep.complete and rep.epoch_ends[-1].state["terminated"] is True
    assert len(rep.step_states) == 2
    s = summary(env.history, env.config)
    assert s["survived"] == 0.0 and s["survival_time"] == 2.0
    assert summary_from_log(path)["survived"] == 0.0


def test_a_lever_eliminating_the_last_agents_ends_the_episode():
    env = make(n_agents=2, n_epochs=5)
    env.reset(seed=0)
    env.step_arrays(act(env, take=1))
    env.eliminate([0, 1])  # between rounds, e.g. by hand: the next round is the last
    assert not env.terminated
    env.step_arrays(act(env, take=1))
    assert env.terminated and env.last_take.sum() == 0.0


@pytest.mark.parametrize("stock", [100.0, 99.0])
def test_a_blatant_under_report_is_labelled_low_when_the_fair_share_is_near_zero(stock):
    """At (or near) capacity logistic regrowth replaces ~nothing, so the fair share is ~0.
    An agent that takes 4 units and reports 0, seen taking them within a quarter unit, was
    labelled p ~ 1 (0.9999 at capacity, 0.56 at 99): the withheld amount's prior mean was
    the fair share, ~0, so the gap looked likelier as noise. It is floored at one step."""
    env = make(n_agents=5, initial_stock=stock, capacity=100.0, accusations=False,
               policy={"audit_probability": 0.0})
    env.reset(seed=0)
    take = [16, 0, 0, 0, 0]  # 4 units (extraction_step 0.25)
    env.step_arrays(act(env, take=take, underreport=take))
    rec = env.round_record()
    assert rec["fair_share"] < 0.05 and rec["reported"][0] == 0.0
    b = env.last_batch
    assert len(b) == 1 and b.v[0] == -1
    assert b.p[0] < 0.01


def test_a_masked_direct_message_is_ignored_not_charged():
    """message_to naming oneself or an eliminated agent is masked; it was charged
    message_cost (and the message to the eliminated agent delivered) all the same."""
    env = make(n_agents=4)
    env.reset(seed=0)
    env.eliminate([3])
    mask = env.obs_arrays.action_mask
    seg = env._seg
    lo = seg[A["message_to"]]
    assert mask[0, lo + 1] == 0 and mask[0, lo + 4] == 0 and mask[0, lo + 2] == 1
    credits = env.credits.copy()
    # agent 0 writes to itself, agent 1 to the eliminated agent 3, agent 2 to agent 0
    env.step_arrays(act(env, message=[2, 2, 2, 0], message_to=[1, 4, 1, 0]))
    rec = env.round_record()
    assert [(m["from"], m["to"]) for m in rec["messages"]] == [(2, 0)]
    spent = credits - env.credits - env.config.maintenance * ~env.eliminated
    assert spent[:3].tolist() == pytest.approx([0.0, 0.0, env.config.message_cost])
    assert env.epoch_invalid.tolist() == [1, 1, 0, 0]  # counted as masked choices
    assert env.inbox[3].sum() == 0.0 and env.inbox[0, 2, 0] == 2
    env.send_text(0, "note to self", to=0)  # a text to oneself is dropped the same way
    env.step_arrays(act(env))
    assert env.round_record()["messages"] == []


def test_false_flags_count_accusations_before_the_targets_first_lie():
    """What the docs now say: an accusation is false when its target had not yet
    under-reported, even if it lies later; detection counts the round of the first lie."""
    env = make(n_agents=3, accusations=True, policy={"audit_probability": 0.0})
    env.reset(seed=0)
    env.step_arrays(act(env, take=[0, 4, 0], accuse=[2, 0, 0]))          # 0 accuses 1: honest
    env.step_arrays(act(env, take=[0, 4, 0], underreport=[0, 4, 0],      # 1 lies; 2 accuses
                        accuse=[0, 0, 2]))                               # it that round
    s = env.summary()
    assert s["accusations"] == 2.0 and s["false_flag_rate"] == 0.5
    assert s["detection_rate"] == 1.0


def test_a_frozen_agent_pays_upkeep_and_counts_in_the_fair_share_as_documented():
    env = make(n_agents=4, initial_stock=50.0)
    env.reset(seed=0)
    env.set_frozen([1], lever="test")
    before = env.credits.copy()
    env.step_arrays(act(env))
    assert (before - env.credits).tolist() == pytest.approx([env.config.maintenance] * 4)
    assert env.round_record()["fair_share"] == pytest.approx(
        float(env.config.fair_share(50.0, 4)))


def test_inbox_matches_the_round_records_messages():
    """The inbox is written in one vectorised pass (a loop over every sender and every
    recipient took 0.8 s a round with 1024 agents posting); it holds exactly the round's
    messages: a public post reaches every agent in the game but the sender, a direct
    message its recipient."""
    from envs.commons import MESSAGE_KINDS

    env = make(n_agents=7, n_epochs=12, initial_credits=50.0)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    env.eliminate([5])
    posted = direct = 0
    while not env.episode_over:
        a = env.sample_actions(rng)
        a[:, A["take"]] //= 6
        a[:, A["accuse"]] = 0
        env.step_arrays(a)
        rec = env.round_record()
        want = np.zeros_like(env.inbox)
        for m in rec["messages"]:
            i, to = m["from"], m["to"]
            dest = [j for j, live in enumerate(rec["live"]) if live and j != i] if to < 0 \
                else [to]
            for j in dest:
                want[j, i] = (MESSAGE_KINDS.index(m["kind"]), m["value"], float(to < 0))
            posted += to < 0
            direct += to >= 0
        np.testing.assert_array_equal(env.inbox, want)
    assert posted > 5 and direct > 5


def test_a_duplicated_round_record_in_the_log_is_refused(tmp_path):
    """A step_state line repeated (a bad copy, a hand edit) passed the log's checks, and
    summary_from_log / plot counted that round twice."""
    from envs.core.events import LogError

    path = tmp_path / "events.jsonl"
    env = make(n_epochs=3, steps_per_epoch=2, event_log=EventLog(path))
    env.reset(seed=0)
    while not env.episode_over:
        env.step_arrays(act(env, take=1))
    env.close()
    assert len(replay(path).step_states) == 6
    lines = path.read_text().splitlines()
    k = next(i for i, x in enumerate(lines) if '"type":"step_state"' in x)
    bad = tmp_path / "dup.jsonl"
    bad.write_text("\n".join(lines[:k + 1] + [lines[k]] + lines[k + 1:]) + "\n")
    with pytest.raises(LogError, match="a second step_state for step 0"):
        replay(bad)


@pytest.mark.parametrize("sd", [1e-300, 1e-160])
def test_a_vanishing_observation_noise_gives_finite_labels(sd):
    """observe_noise is any number >= 0; at 1e-160 z**2 overflowed and an observation
    below the report gave p = NaN (which the reward then carried). Below 1e-100 the
    observation counts as exact."""
    from envs.commons import label

    with np.errstate(all="raise"):
        p = label(np.array([0.5, 0.5, 0.5, 0.0]), np.array([0.5, 0.6, 0.4, 1.0]), 0.75, sd)
    assert p.tolist() == [1.0, 1.0, 1.0, 0.0]
    env = make(observe_noise=sd, policy={"audit_probability": 0.0})
    env.reset(seed=0)
    with np.errstate(over="raise", invalid="raise"):
        env.step_arrays(act(env, take=[4, 4, 4, 8, 8], underreport=[0, 0, 0, 0, 6]))
    assert np.isfinite(env.last_batch.p).all() and np.isfinite(env.reward_array).all()
    assert env.last_batch.p[-1] == 0.0
