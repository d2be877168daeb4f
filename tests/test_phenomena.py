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


def signal_market(dressing, seed):
    """Half honest, half always-exploiting deceptive; everyone accepts on signals alone."""
    accept = dict(trust_weight=0.0, accept_threshold=0.85)
    pols = {
        "honest": make_policy("honest", seed=seed, **accept),
        "deceptive": make_policy("deceptive", seed=seed + 1, honest_interactions=0,
                                 exploit_after=0, min_trusting=0, dressing=dressing,
                                 **accept),
    }
    return run(["honest"] * 10 + ["deceptive"] * 10, pols, seed)[1]


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_dressed_signals_cause_adverse_selection_on_hidden_truth(seed):
    dressed = signal_market(1.0, seed)
    plain = signal_market(0.0, seed)
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


@pytest.mark.parametrize("seed", [0, 1, 2, 42])
def test_honest_population_has_low_toxicity(seed):
    rows, batch = run(["honest"] * 10, {"honest": make_policy("honest", seed=seed)}, seed,
                      n_epochs=10)
    assert batch.accepted.sum() > 200
    assert M.toxicity(batch.p, batch.accepted) < 0.2
    assert all(r["toxicity"] < 0.25 for r in rows)


def test_deception_pays_the_deceiver_and_costs_its_partners():
    """Deceptive agents earn soft payoffs like honest ones; realised payoffs expose them."""
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
    # soft labels of exploited interactions look as good as honest work ...
    assert soft.p[exploited].mean() > soft.p[acc & ~dec].mean() - 0.05
    # ... though nearly all of them were harmful
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
