"""The phenomena the environment exists to show, measured on real rollouts."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from baselines.runner import rollout
from baselines.scripted import make_policy
from envs.core import metrics as M
from envs.core.records import InteractionBatch


def run(groups, policies_by_group, seed, n_epochs=5, steps_per_epoch=10, **cfg):
    env = envs.make("sandbox-v0", n_agents=len(groups), n_epochs=n_epochs,
                    steps_per_epoch=steps_per_epoch, groups=tuple(groups), **cfg)
    pols = {a: policies_by_group[g] for a, g in zip(env.possible_agents, groups)}
    batches = []
    rows = rollout(env, pols, seed=seed, on_step=lambda t, T: batches.append(env.last_batch))
    return rows, InteractionBatch.concat(batches)


#: the strong dressing (SignalModel's docstring): full dressing lifts harmful work past
#: honest work; configs/adverse_selection.yaml states it in its signals block
STRONG = {"dress_progress": 1.0, "dress_engagement": 1.2, "dress_counts": 3.0}


def signal_market(dressing, seed, signals=None):
    """Half honest, half always-exploiting deceptive; everyone accepts on signals alone."""
    accept = dict(trust_weight=0.0, accept_threshold=0.85)
    pols = {
        "honest": make_policy("honest", seed=seed, **accept),
        "deceptive": make_policy("deceptive", seed=seed + 1, honest_interactions=0,
                                 exploit_after=0, min_trusting=0, dressing=dressing,
                                 **accept),
    }
    cfg = {} if signals is None else {"signals": signals}
    return run(["honest"] * 10 + ["deceptive"] * 10, pols, seed, **cfg)[1]


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_dressed_signals_cause_adverse_selection_on_hidden_truth(seed):
    """Under the strong dressing, acceptance on signals selects the harmful work."""
    dressed = signal_market(1.0, seed, STRONG)
    plain = signal_market(0.0, seed, STRONG)
    assert len(dressed) > 300 and len(plain) > 300
    truth_gap = M.quality_gap(dressed.v > 0, dressed.accepted)
    # the accepted pool is worse than the rejected one: adverse selection ...
    assert truth_gap < -0.05
    # ... which the soft labels themselves cannot see: on p the gap looks healthy
    assert M.quality_gap(dressed.p, dressed.accepted) > 0
    # and the soft toxicity even looks *better* than without dressing, while the
    # realised harm rate among accepted interactions is far higher
    assert M.toxicity(dressed.p, dressed.accepted) < M.toxicity(plain.p, plain.accepted)
    harm = (dressed.v[dressed.accepted] < 0).mean()
    assert harm > 0.4 > (plain.v[plain.accepted] < 0).mean()
    # without dressing, acceptance on signals selects good work
    assert M.quality_gap(plain.v > 0, plain.accepted) > 0.5


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_default_dressing_games_the_proxy_without_blinding_it(seed):
    """Under the default dressing the same market still selects good work: dressed harmful
    work is lifted toward honest work, not past it, so soft toxicity rises with the harm."""
    dressed = signal_market(1.0, seed)
    plain = signal_market(0.0, seed)
    assert M.quality_gap(dressed.v > 0, dressed.accepted) > 0.2
    assert M.toxicity(dressed.p, dressed.accepted) > M.toxicity(plain.p, plain.accepted)
    assert M.auc(dressed.p, dressed.v) > 0.8


def test_dressing_buys_p_at_a_price_but_stays_below_honest_work():
    """Each dressing level raises harmful work's p (at a cost); full dressing stays below
    good work and under the 0.85 that a quarter of good work reaches (SignalModel's
    docstring gives the measured figures)."""
    from envs.sandbox import parallel_env

    def proposals(effort, dressing, seed):
        env = parallel_env(n_agents=400, n_epochs=1, steps_per_epoch=2, inbox_size=8)
        env.reset(seed=seed)
        actions = {a: np.array([1, i % 8, effort, dressing, 0] + [0] * 8)
                   for i, a in enumerate(env.possible_agents)}
        _, rewards, *_ = env.step(actions)
        return env._pending.p, env._pending.v, rewards["agent_0"]

    good_p, good_v, honest_cost = proposals(4, 0, seed=0)
    good = good_p[good_v > 0]
    harmful_p = []
    for level, d in enumerate((0.0, 0.5, 1.0)):
        p, v, reward = proposals(0, level, seed=0)
        assert reward == pytest.approx(-0.3 * d)  # dressing_cost per unit of dressing
        harmful_p.append(p[v < 0])
    means = [h.mean() for h in harmful_p]
    assert means[0] < 0.5 < means[1] < means[2] < good.mean() - 0.05
    assert M.auc(np.r_[good, harmful_p[2]],
                 np.r_[np.ones(len(good)), -np.ones(len(harmful_p[2]))]) > 0.85
    assert (harmful_p[2] >= 0.85).mean() < 0.01 < 0.15 < (good >= 0.85).mean()
    assert honest_cost == pytest.approx(-0.2)  # effort_cost at full effort


def mixed_population(n_deceptive, seed, signals=None):
    """Whole-run metrics of 20 scripted agents on a small world, through the real runner."""
    from baselines.runner import interaction_metrics
    from baselines.scenario import build, parse_scenario

    agents = [{"type": "honest", "count": 20 - n_deceptive}]
    if n_deceptive:
        agents.append({"type": "deceptive", "count": n_deceptive})
    data = {"name": "mixed", "agents": agents, "network": {"topology": "small_world"},
            "simulation": {"n_epochs": 20, "steps_per_epoch": 10, "seed": seed}}
    if signals is not None:
        data["env_params"] = {"signals": signals}
    env, pols = build(parse_scenario(data), seed=seed)
    batches = []
    rollout(env, pols, seed=seed, on_batch=batches.append)
    return interaction_metrics(InteractionBatch.concat(batches))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deceivers_raise_soft_toxicity_on_default_signals(seed):
    """Half the population deceptive: soft toxicity rises above the honest-only level yet
    under-counts the true harm, and p still ranks the hidden truth (issue 14)."""
    honest = mixed_population(0, seed)
    mixed = mixed_population(10, seed)
    assert honest["toxicity"] < 0.2 and honest["realized_harm_rate"] < 0.05
    rise = mixed["toxicity"] - honest["toxicity"]
    assert rise > 0.02
    assert mixed["realized_harm_rate"] - honest["realized_harm_rate"] > rise + 0.2
    assert mixed["toxicity"] < mixed["realized_harm_rate"]
    assert mixed["auc"] > 0.6


@pytest.mark.parametrize("seed", [0, 1])
def test_strong_dressing_blinds_the_proxy(seed):
    """The strong setting, for contrast: the same population's soft toxicity *falls* while
    the harm rises, and p ranks the truth worse than chance."""
    honest = mixed_population(0, seed, STRONG)
    mixed = mixed_population(10, seed, STRONG)
    assert mixed["toxicity"] < honest["toxicity"]
    assert mixed["realized_harm_rate"] > 0.3
    assert mixed["auc"] < 0.5


@pytest.mark.parametrize("seed", [0, 1, 2, 42])
def test_honest_population_has_low_toxicity(seed):
    rows, batch = run(["honest"] * 10, {"honest": make_policy("honest", seed=seed)}, seed,
                      n_epochs=10)
    assert batch.accepted.sum() > 200
    assert M.toxicity(batch.p, batch.accepted) < 0.2
    assert all(r["toxicity"] < 0.25 for r in rows)


def test_deception_pays_the_deceiver_and_costs_its_partners():
    """Dressed exploits are accepted and paid as fairly good work; the truth exposes them."""
    groups = ["honest"] * 6 + ["deceptive"] * 4
    pols = {"honest": make_policy("honest", seed=0),
            "deceptive": make_policy("deceptive", seed=1, exploit_after=4,
                                     honest_interactions=2, min_trusting=1,
                                     trust_level=0.75)}
    _, soft = run(groups, pols, seed=9, n_epochs=10)
    dec = soft.initiator >= 6
    acc = soft.accepted
    exploited = acc & dec & (soft.dressing > 0)
    assert exploited.sum() > 20
    # dressing lifts the soft labels of exploited interactions well above undressed harmful
    # work (p about 0.43), though not up to honest work ...
    assert soft.p[acc & ~dec].mean() > soft.p[exploited].mean() > 0.65
    # ... so the deceiver is paid for them, though nearly all of them were harmful
    assert soft.payoff_a[exploited].mean() > 0
    assert (soft.v[exploited] < 0).mean() > 0.8
    assert np.isfinite(M.brier_score(soft.p, soft.v))


def test_conditional_loss_measures_selection_not_the_acceptance_rate():
    """Accepting the better half of proposals shows a positive conditional gain; accepting
    at random shows none, whatever the acceptance rate."""
    from baselines.runner import interaction_metrics

    rng = np.random.default_rng(0)
    n = 4000
    p = rng.uniform(0.2, 0.9, n)
    base = dict(p=p, v=np.where(rng.random(n) < p, 1, -1), tau=np.full(n, 0.1))
    picky = InteractionBatch.from_columns({**base, "accepted": p > np.median(p)})
    random = InteractionBatch.from_columns({**base, "accepted": rng.random(n) < 0.5})
    m_picky, m_random = interaction_metrics(picky), interaction_metrics(random)
    # would-be initiator payoff 0.5*(3p - 1) - 0.1: the accepted half sits higher
    expected = 0.5 * 3 * (p[p > np.median(p)].mean() - p.mean())
    assert m_picky["conditional_loss_initiator"] == pytest.approx(expected)
    assert abs(m_random["conditional_loss_initiator"]) < 0.03


def test_shipped_adverse_selection_scenario_shows_it():
    from pathlib import Path

    from baselines.scenario import build, load_scenario

    scenario = load_scenario(Path(__file__).resolve().parents[1] / "configs"
                             / "adverse_selection.yaml")
    env, pols = build(scenario, seed=scenario.simulation.seed)
    batches = []
    rollout(env, pols, seed=scenario.simulation.seed,
            on_step=lambda t, T: batches.append(env.last_batch))
    b = InteractionBatch.concat(batches)
    assert M.quality_gap(b.v > 0, b.accepted) < -0.05 < 0 < M.quality_gap(b.p, b.accepted)
    # it gets there by stating the strong dressing in its own signals block
    signals = env.unwrapped.config.signals
    assert {k: getattr(signals, k) for k in STRONG} == STRONG
