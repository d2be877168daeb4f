"""The commons' scripted policies (baselines/commons_policies.py): each one's behaviour on
crafted observations and in short real episodes, the action masks, the variant check, the
commons suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import envs
from baselines.commons_policies import COMMONS_POLICIES, evidence
from baselines.policy import ObsBatch
from baselines.runner import rollout
from baselines.scenario import ConfigError, build, load_scenario, parse_scenario
from baselines.scripted import BUILTIN, make_policy, resolve_policy
from envs.commons import (
    ACTION_DIMS,
    INBOX_FEATURES,
    MESSAGE_KINDS,
    OTHER_FEATURES,
    POLICY_FEATURES,
    SELF_FEATURES,
)

ROOT = Path(__file__).resolve().parent.parent
A = {k: i for i, k in enumerate(ACTION_DIMS)}
S = {k: i for i, k in enumerate(SELF_FEATURES)}
P = {k: i for i, k in enumerate(POLICY_FEATURES)}
OF = {k: i for i, k in enumerate(OTHER_FEATURES)}
IN = {k: i for i, k in enumerate(INBOX_FEATURES)}
ACCUSE, CLAIM = MESSAGE_KINDS.index("accuse"), MESSAGE_KINDS.index("claim")
STEP = 0.25


def fresh(n: int = 5, **config) -> tuple[object, ObsBatch]:
    """A reset commons and a private copy of its observation arrays (to craft)."""
    env = envs.make("commons-v0", n_agents=n, **config)
    env.reset(seed=0)
    obs = ObsBatch.from_env(env)
    return env, ObsBatch({k: v.copy() for k, v in obs.arrays.items()},
                         action_mask=obs.action_mask.copy(), nvec=obs.nvec)


def set_rounds(obs: ObsBatch, played: int) -> None:
    obs.self_[:, S["rounds_played"]] = played


def post(obs: ObsBatch, sender: int, kind: int, value: float, public: bool = True) -> None:
    """Every other agent received ``sender``'s message last round."""
    for i in range(len(obs)):
        if i != sender:
            obs.inbox[i, sender] = (kind, value, float(public))


def lie(obs: ObsBatch, liar: int, gap: float) -> None:
    """Everyone sees ``liar``'s observed total exceed its reported total by ``gap``."""
    obs.others[:, liar, OF["observed_total"]] = obs.others[:, liar, OF["reported_total"]] + gap


def test_registered_as_builtins_of_the_commons():
    for name, cls in COMMONS_POLICIES.items():
        assert BUILTIN[name] is cls and resolve_policy(name) is cls
        assert cls.variants == ("commons",) and cls.batched()
    assert make_policy("saboteur", seed=1).params.margin == 0.5


def test_sustainable_takes_the_fair_share_truthfully_and_accuses_nobody():
    env, obs = fresh()
    fair = obs.self_[:, S["fair_share_estimate"]]
    act = make_policy("sustainable", seed=0).act_arrays(obs)
    assert act[:, A["take"]].tolist() == np.floor(fair / STEP).astype(int).tolist()
    assert (act[:, A["underreport"]] == 0).all() and (act[:, A["accuse"]] == 0).all()
    assert (act[:, [A[f"vote_{p}"] for p in POLICY_FEATURES[:5]]] == 0).all()  # abstains
    assert (act[:, A["message"]] == 0).all()
    # the doubling benchmark's whole fish: the step comes from the observation
    env, obs = fresh(regrowth="doubling", initial_stock=100.0, estimate_noise=0.0,
                     extraction_step=1.0)
    assert obs.self_[0, S["fair_share_estimate"]] == 10.0
    act = make_policy("sustainable").act_arrays(obs)
    assert (act[:, A["take"]] == 10).all()


def test_sustainable_seconds_only_a_public_accusation_its_evidence_backs():
    pol = make_policy("sustainable", seed=0)
    _, obs = fresh()
    set_rounds(obs, 4)
    post(obs, 1, ACCUSE, 4.0)            # agent_1 accuses agent_4 publicly
    assert (pol.act_arrays(obs)[:, A["accuse"]] == 0).all()   # no evidence on agent_4 yet
    lie(obs, 4, 2.0)                     # z = 2 / (0.25 * 2) = 4 >= 3
    acc = pol.act_arrays(obs)[:, A["accuse"]]
    # the accuser does not hear its own post; the target does not accuse itself
    assert acc.tolist() == [5, 0, 5, 5, 0]
    lie(obs, 4, 1.0)                     # z = 2 < 3: not enough
    assert (pol.act_arrays(obs)[:, A["accuse"]] == 0).all()
    lie(obs, 4, 2.0)
    post(obs, 1, ACCUSE, 4.0, public=False)   # a direct message is not a public accusation
    assert (pol.act_arrays(obs)[:, A["accuse"]] == 0).all()
    post(obs, 1, ACCUSE, 4.0)
    obs.action_mask[:, int(obs.nvec[:A["accuse"]].sum()) + 5] = 0   # agent_4 is masked
    assert (pol.act_arrays(obs)[:, A["accuse"]] == 0).all()


def test_greedy_takes_the_most_it_can_and_reports_it():
    _, obs = fresh()
    act = make_policy("greedy").act_arrays(obs)
    assert (act[:, A["take"]] == 20).all() and (act[:, A["underreport"]] == 0).all()
    act = make_policy("greedy", take_fraction=0.5).act_arrays(obs)
    assert (act[:, A["take"]] == 10).all()


def test_conditional_reciprocates_and_returns_to_the_fair_share():
    pol = make_policy("conditional", seed=0)
    _, obs = fresh()
    fair = np.floor(obs.self_[:, S["fair_share_estimate"]] / STEP).astype(int)
    obs.others[:, :, OF["observed"]] = obs.self_[0, S["fair_share_estimate"]]  # near fair
    assert pol.act_arrays(obs)[:, A["take"]].tolist() == fair.tolist()
    obs.others[:, :, OF["observed"]] = 2.0          # everyone else took 2.0
    assert (pol.act_arrays(obs)[:, A["take"]] == 8).all()
    obs.others[:, :, OF["observed"]] = 0.5          # they came back
    assert pol.act_arrays(obs)[:, A["take"]].tolist() == fair.tolist()


def test_saboteur_stays_under_the_audit_level_reports_fair_and_blames():
    pol = make_policy("saboteur", seed=0)
    _, obs = fresh()
    fair_u = np.floor(obs.self_[:, S["fair_share_estimate"]] / STEP).astype(int)
    act = pol.act_arrays(obs)
    level = obs.policy[0, P["audit_level"]]
    # the others are expected to take their fair share; the total stays under the level
    others = 4 * fair_u[0] * STEP
    assert others + act[0, A["take"]] * STEP <= level - 0.5 + 1e-9
    assert act[0, A["take"]] > fair_u[0]
    assert (act[:, A["take"]] - act[:, A["underreport"]] == fair_u).all()   # reports fair
    assert (act[:, A["accuse"]] > 0).all()
    assert (act[:, A["accuse"]] != np.arange(5) + 1).all()       # never itself
    assert (act[:, A["message"]] == CLAIM).all() and (act[:, A["message_to"]] == 0).all()
    # the others reported more last round: less room
    obs.others[:, :, OF["reported"]] = 1.0
    assert pol.act_arrays(obs)[0, A["take"]] * STEP <= level - 0.5 - 4.0 + 1e-9 \
        or pol.act_arrays(obs)[0, A["take"]] == fair_u[0]
    # accused by agent_2 last round: retaliates against it and posts an accusation
    obs.others[0, 2, OF["accused_me"]] = 1.0
    obs.self_[0, S["accused_by"]] = 1.0
    act = pol.act_arrays(obs)
    assert act[0, A["accuse"]] == 3 and act[0, A["message"]] == ACCUSE


def test_monitor_accuses_the_likeliest_liar_publicly_once_the_evidence_is_strong():
    pol = make_policy("monitor", seed=0)
    _, obs = fresh()
    set_rounds(obs, 1)
    lie(obs, 3, 0.5)                     # z = 2 < 4: nothing
    act = pol.act_arrays(obs)
    assert (act[:, A["accuse"]] == 0).all() and (act[:, A["message"]] == 0).all()
    lie(obs, 3, 2.5)                     # z = 10
    lie(obs, 1, 1.5)                     # z = 6: also above, but less likely
    act = pol.act_arrays(obs)
    assert act[[0, 2, 4], A["accuse"]].tolist() == [4, 4, 4]
    assert act[3, A["accuse"]] == 2      # agent_3 cannot accuse itself: the next likeliest
    assert (act[:, A["message"]] == ACCUSE).all() and (act[:, A["message_to"]] == 0).all()
    z = evidence(obs)
    assert z[0, 3] == pytest.approx(10.0)


@pytest.mark.parametrize("name", sorted(COMMONS_POLICIES))
def test_eliminated_and_frozen_agents_play_the_no_op(name):
    env = envs.make("commons-v0", n_agents=4)
    env.reset(seed=0)
    env.eliminate([1])
    env.set_frozen([2])
    obs = ObsBatch.from_env(env)
    lie(obs, 0, 5.0)   # everyone would accuse agent_0 ...
    set_rounds(obs, 1)
    post(obs, 3, ACCUSE, 1.0)   # ... and someone names the eliminated agent_1
    act = make_policy(name, seed=0).act_arrays(obs)
    assert (act[1] == 0).all() and (act[2] == 0).all()
    assert (act[:, A["accuse"]] != 2).all()     # never the eliminated agent_1
    mask = [obs.mask(d) for d in range(len(obs.nvec))]
    for d in range(len(obs.nvec)):
        assert mask[d][np.arange(4), act[:, d]].all()


def test_a_commons_policy_in_a_sandbox_scenario_is_refused_by_name():
    with pytest.raises(ConfigError) as e:
        parse_scenario({"name": "x", "agents": [{"type": "honest", "count": 2},
                                                {"type": "saboteur", "count": 1}],
                        "simulation": {"n_epochs": 1, "steps_per_epoch": 2}}, "x.yaml")
    assert e.value.path == "agents[1].type"
    assert "'saboteur' plays commons, not sandbox" in e.value.problem
    assert "honest" in e.value.problem   # lists what the sandbox allows
    with pytest.raises(ConfigError) as e:   # and a sandbox policy in the commons
        parse_scenario({"name": "x", "env": "commons-v0",
                        "agents": [{"type": "honest", "count": 2}],
                        "simulation": {"n_epochs": 1, "steps_per_epoch": 1}}, "x.yaml")
    assert "plays sandbox, not commons" in e.value.problem and "sustainable" in e.value.problem


def test_a_saboteur_among_sustainable_agents_lies_unaudited_in_a_real_episode():
    s = load_scenario(ROOT / "configs" / "commons_saboteur.yaml")
    env, policies = build(s, seed=3)
    rollout(env, policies, seed=3)
    hist = env.unwrapped.history
    assert not any(r["audit_triggered"] for r in hist)
    taken = np.array([r["taken"] for r in hist])
    reported = np.array([r["reported"] for r in hist])
    assert (taken[:, 4] > reported[:, 4]).all() and (taken[:, :4] == reported[:, :4]).all()
    assert all(r["accusations"] and all(i == 4 and j != 4 for i, j in r["accusations"])
               for r in hist)   # only the saboteur accuses, never seconded
    assert not any(r["eliminated"]["accusation"] for r in hist)


def test_monitors_and_their_seconds_eliminate_the_saboteur_in_a_real_episode():
    s = load_scenario(ROOT / "configs" / "commons_saboteur_monitors.yaml")
    env, policies = build(s, seed=5)
    rollout(env, policies, seed=5)
    hist = env.unwrapped.history
    out = [k for k, r in enumerate(hist) if r["eliminated"]["accusation"]]
    assert out == [2] and hist[2]["eliminated"]["accusation"] == [4]
    assert {m["kind"] for m in hist[1]["messages"] if m["from"] in (2, 3)} == {"accuse"}
    assert sorted(i for i, j in hist[2]["accusations"] if j == 4) == [0, 1, 2, 3]
    assert env.unwrapped.summary()["survived"] == 1.0


def test_the_commons_suite_runs_with_a_focal_saboteur():
    from baselines.suite import bench

    result = bench(ROOT / "configs" / "suites" / "commons.yaml", "saboteur", workers=1,
                   seeds=1)
    assert not result.failures and len(result.labels) == 5
    s = result.summary()
    assert s["commons_saboteur"]["focal_harm"].mean > 0


def test_the_commons_suite_reports_the_commons_figures():
    """The suite's table adds the variant's own figures (honesty, survival ...) when its
    runs have them: a focal saboteur lowers honesty wherever it sits."""
    from baselines.compare import VARIANT_FIGURES
    from baselines.suite import bench

    result = bench(ROOT / "configs" / "suites" / "commons.yaml", "saboteur", workers=1,
                   seeds=1)
    summ = result.summary()
    assert [m.key for m in result.shown(summ)][-len(VARIANT_FIGURES):] == \
        [m.key for m in VARIANT_FIGURES]
    assert all(summ[label]["honesty"].mean < 1.0 for label in result.labels)
    head = result.table().splitlines()[0]
    assert "honesty" in head and "survival" in head
