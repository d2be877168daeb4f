"""The Moran process and imitation dynamics obey the theory they implement.

Statistical checks use fixed seeds and tolerances of four standard errors, so they are
deterministic and would only fail for a real bias.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from baselines.evolution import (
    agent_payoffs,
    fixation_probability,
    imitation_dynamics,
    moran_fixation,
    moran_process,
)
from baselines.tournament import round_robin
from envs.core.network import Network, NetworkConfig

SMALL_WORLD = {"topology": "small_world", "k": 4, "rewire_probability": 0.1}


def binomial_se(p: float, runs: int) -> float:
    return math.sqrt(p * (1 - p) / runs)


# --------------------------------------------------------------------------- Moran process
def test_neutral_drift_fixes_each_type_with_its_initial_share():
    """AC, TFT and GRIM all cooperate with each other: every payoff is R, fitness is equal,
    and the fixation probability of a type is its initial share."""
    runs = 2000
    f = moran_fixation(["AC", "TFT", "GRIM"], [4, 6, 10], runs=runs, seed=0)
    assert (f.payoff_matrix == 3.0).all()
    assert f.unfixed == 0 and f.probabilities.sum() == pytest.approx(1.0)
    print("\nneutral drift: fixation", f.probabilities.round(3).tolist(), "neutral",
          f.neutral.tolist())
    for p, share in zip(f.probabilities, f.neutral):
        assert abs(p - share) < 4 * binomial_se(share, runs)
    # the exact chain agrees: neutral fixation probability = i / N
    assert fixation_probability([[3, 3], [3, 3]], 20, 4) == pytest.approx(0.2)


def test_zero_selection_is_neutral_even_between_ad_and_ac():
    runs = 2000
    f = moran_fixation(["AD", "AC"], [5, 15], runs=runs, seed=1, selection=0.0)
    assert abs(f.probabilities[0] - 0.25) < 4 * binomial_se(0.25, runs)


def test_ad_invades_ac():
    """One AD among AC: fitness 5 against about 3; fixation far above neutral 1/N and as the
    exact two-type formula says."""
    n, runs = 20, 2000
    f = moran_fixation(["AD", "AC"], [1, n - 1], runs=runs, seed=0)
    exact = fixation_probability(f.payoff_matrix, n, 1)
    print(f"\nAD among {n - 1} AC: simulated {f.probabilities[0]:.3f} +- {f.stderr[0]:.3f}, "
          f"exact {exact:.4f}, neutral {1 / n}")
    assert f.probabilities[0] > 5 / n
    assert abs(f.probabilities[0] - exact) < 4 * binomial_se(exact, runs)


def test_tft_resists_a_single_defector():
    """One AD among TFT: AD earns about P = 1 against TFT's R = 3, so it fixes far less often
    than a neutral mutant (1/N); in a population of 20 practically never."""
    f = moran_fixation(["AD", "TFT"], [1, 19], runs=2000, seed=0)
    exact = fixation_probability(f.payoff_matrix, 20, 1)
    print(f"\nAD among 19 TFT: exact {exact:.2e}, simulated {f.probabilities[0]}")
    assert exact < 1e-4 < 1 / 20
    assert f.probabilities[0] == 0.0 and f.probabilities[1] == 1.0
    # small populations: simulation matches the exact value and is below 1/N
    runs = 4000
    small = moran_fixation(["AD", "TFT"], [1, 3], runs=runs, seed=0)
    exact4 = fixation_probability(small.payoff_matrix, 4, 1)
    print(f"AD among 3 TFT: simulated {small.probabilities[0]:.4f}, exact {exact4:.4f}")
    assert exact4 < 1 / 4
    assert abs(small.probabilities[0] - exact4) < 4 * binomial_se(exact4, runs)


def test_negative_payoffs_are_shifted_and_match_the_exact_chain():
    """llm_study has S = -1: payoffs are raised by 1 (m = -1) before selection."""
    runs = 3000
    f = moran_fixation(["AD", "AC"], [2, 8], runs=runs, seed=4, payoffs="llm_study")
    assert f.fitness_shift == -1.0
    assert f.payoff_matrix.tolist() == [[0.0, 3.0], [-1.0, 2.0]]
    exact = fixation_probability(f.payoff_matrix, 10, 2)
    assert abs(f.probabilities[0] - exact) < 4 * binomial_se(exact, runs)
    # classic payoffs have no negative entry: no shift
    assert moran_fixation(["AD", "AC"], [1, 1], runs=1).fitness_shift == 0.0


def test_exact_fixation_probability_constant_fitness():
    for r, n in ((1.5, 10), (0.8, 7), (2.0, 30)):
        expected = (1 - 1 / r) / (1 - 1 / r**n)
        assert fixation_probability([[r, r], [1, 1]], n) == pytest.approx(expected, rel=1e-9)
    # a mutant with zero fitness never spreads; a full population is fixed
    assert fixation_probability([[0, 0], [1, 1]], 5, 1) == 0.0
    assert fixation_probability([[0, 0], [1, 1]], 5, 5) == 1.0
    assert fixation_probability([[2, 1], [1, 2]], 5, 0) == 0.0


def test_single_run_shares_and_fixation():
    r = moran_process(["AD", "AC", "TFT"], [3, 5, 4], seed=2)
    assert r.shares.shape == (r.steps + 1, 3)
    assert np.allclose(r.shares.sum(axis=1), 1.0)
    assert r.shares[0].tolist() == pytest.approx([3 / 12, 5 / 12, 4 / 12])
    assert r.fixated is not None and r.fixation_step == r.steps
    final = r.shares[-1]
    assert final[r.names.index(r.fixated)] == 1.0 and final.sum() == 1.0
    # one step changes one count by at most one in each direction
    assert np.abs(np.diff(r.shares * 12, axis=0)).sum(axis=1).max() <= 2 + 1e-9
    assert not (r.shares[:-1].max(axis=1) == 1.0).any()  # stopped at the first fixation
    assert r.payoff_matrix.tolist() == round_robin(["AD", "AC", "TFT"]).payoff_matrix.tolist()
    assert r.fixated in r.summary()


def test_started_fixated_and_zero_steps():
    r = moran_process(["TFT", "AD"], [5, 0])
    assert r.fixated == "TFT" and r.fixation_step == 0 and r.shares.shape == (1, 2)
    r = moran_process(["TFT", "AD"], [5, 5], max_steps=0)
    assert r.fixated is None and r.fixation_step is None and r.steps == 0
    assert "no fixation" in r.summary()


def test_mutation_keeps_the_run_going():
    r = moran_process(["AC", "AD", "TFT"], [10, 0, 0], mutation=0.1, max_steps=500, seed=3)
    assert r.steps == 500 and r.fixated is None
    assert np.allclose(r.shares.sum(axis=1), 1.0)
    assert (r.shares[:, 1:].max(axis=0) > 0).all()  # the absent types appear by mutation


def test_moran_determinism():
    kw = dict(turns=50, repetitions=3, noise=0.05, seed=7)
    a = moran_process(["RND", "GTFT", "AD"], [4, 4, 4], **kw)
    b = moran_process(["RND", "GTFT", "AD"], [4, 4, 4], **kw)
    assert np.array_equal(a.shares, b.shares) and a.fixated == b.fixated
    assert np.array_equal(a.payoff_matrix, b.payoff_matrix)
    c = moran_process(["RND", "GTFT", "AD"], [4, 4, 4], **{**kw, "seed": 8})
    assert a.shares.shape != c.shares.shape or not np.array_equal(a.shares, c.shares)
    f1 = moran_fixation(["AD", "TFT"], [3, 3], runs=200, seed=5)
    f2 = moran_fixation(["AD", "TFT"], [3, 3], runs=200, seed=5)
    assert np.array_equal(f1.winners, f2.winners)
    assert np.array_equal(f1.fixation_steps, f2.fixation_steps)
    f3 = moran_fixation(["AD", "TFT"], [3, 3], runs=200, seed=6)
    assert not np.array_equal(f1.fixation_steps, f3.fixation_steps)


def test_fixation_result_fields():
    f = moran_fixation(["AD", "AC"], [2, 6], runs=300, seed=0)
    assert f.winners.shape == (300,) and f.fixation_steps.shape == (300,)
    assert ((f.winners >= 0) & (f.fixation_steps > 0)).all()
    assert f.probabilities.tolist() == (np.bincount(f.winners, minlength=2) / 300).tolist()
    assert np.isfinite(f.mean_fixation_step).all()
    assert "| AD | 2 |" in f.table()
    capped = moran_fixation(["AD", "AC"], [10, 10], runs=50, max_steps=3)
    assert capped.unfixed == 50 and capped.probabilities.sum() == 0.0


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(strategies=["TFT", "foo"]), r"strategies\[1\]: unknown strategy 'foo'"),
    (dict(strategies="TFT"), "strategies must be a list"),
    (dict(strategies=[]), "at least one strategy"),
    (dict(strategies=["TFT", 3]), r"strategies\[1\] must be a strategy"),
    (dict(counts=[5]), "one count per strategy"),
    (dict(counts=[5, -1]), r"counts\[1\] must be an integer >= 0"),
    (dict(counts=[5, 1.5]), r"counts\[1\] must be an integer"),
    (dict(counts=[1, 0]), "population of at least 2"),
    (dict(turns=-1), "turns must be an integer >= 1"),
    (dict(turns=0), "turns must be an integer >= 1"),
    (dict(repetitions=0), "repetitions must be an integer >= 1"),
    (dict(noise=1.5), r"noise must be a number in \[0, 1\]"),
    (dict(selection=2.0), r"selection must be a number in \[0, 1\]"),
    (dict(mutation=-0.1), r"mutation must be a number in \[0, 1\]"),
    (dict(payoffs="nope"), "payoffs: unknown payoff preset 'nope'"),
    (dict(payoffs=(1, 2, 3)), "payoffs: payoffs must be four finite numbers"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(max_steps=-5), "max_steps must be an integer >= 0"),
])
def test_moran_argument_errors(kwargs, match):
    args = {"strategies": ["TFT", "AD"], "counts": [5, 5], **kwargs}
    with pytest.raises(ValueError, match=match):
        moran_process(args.pop("strategies"), args.pop("counts"), **args)


def test_fixation_argument_errors():
    with pytest.raises(ValueError, match="runs must be an integer >= 1"):
        moran_fixation(["TFT", "AD"], [5, 5], runs=0)
    with pytest.raises(ValueError, match="2 x 2"):
        fixation_probability([[1, 2, 3]], 5)
    with pytest.raises(ValueError, match="mutants must be <= population"):
        fixation_probability([[1, 2], [3, 4]], 5, 6)
    with pytest.raises(ValueError, match="population must be an integer >= 2"):
        fixation_probability([[1, 2], [3, 4]], 1)
    with pytest.raises(ValueError, match="two strategies"):
        moran_process(["TFT"], [4], mutation=0.1)


# --------------------------------------------------------------------------- imitation
def test_tft_majority_pushes_ad_out():
    """TFT earns R with TFT neighbours and loses little to AD; AD earns about P: AD agents
    imitate TFT, not the other way round, under both rules."""
    for rule in ("fermi", "best"):
        r = imitation_dynamics(["TFT", "AD"], network=SMALL_WORLD, n_agents=300,
                               initial=[270, 30], generations=40, rule=rule, seed=0)
        ad = r.names.index("AD")
        print(f"\n{rule}: AD share {r.shares[0, ad]:.3f} -> {r.shares[-1, ad]:.3f} after "
              f"{r.generations} generations ({r.summary()})")
        assert r.shares[-1, ad] < r.shares[0, ad]
        assert r.shares[-1, ad] <= 0.02


def test_ad_spreads_among_ac():
    r = imitation_dynamics(["AC", "AD"], network=SMALL_WORLD, n_agents=300,
                           initial=[270, 30], generations=30, rule="fermi", seed=1)
    print(f"\nAD among AC (fermi): AD share {r.shares[0, 1]:.3f} -> {r.shares[-1, 1]:.3f}")
    assert r.shares[-1, 1] > 0.5


def test_best_rule_only_copies_a_strictly_better_best_neighbour():
    """Replays every generation: an agent that changed copied the strategy of a neighbour
    with the highest payoff among its neighbours, strictly above its own; an agent paid at
    least as much as every neighbour never changes."""
    r = imitation_dynamics(["AC", "AD", "TFT", "STFT", "WSLS"], network=SMALL_WORLD,
                           n_agents=200, generations=15, rule="best", seed=3, history=True,
                           turns=50, repetitions=2)
    net, hist = r.network, r.history
    assert hist is not None and hist.shape == (r.generations + 1, 200)
    changes = 0
    for g in range(r.generations):
        before, after = hist[g], hist[g + 1]
        pi = agent_payoffs(net, before, r.payoff_matrix)
        for i in range(200):
            nbrs = net.neighbors(i)
            top = pi[nbrs].max() if nbrs.size else -np.inf
            if after[i] != before[i]:
                changes += 1
                best = nbrs[pi[nbrs] == top]
                assert top > pi[i], (g, i)
                assert after[i] in before[best], (g, i)
            elif nbrs.size and top <= pi[i]:
                assert after[i] == before[i]
        if g == r.generations - 1:
            assert np.array_equal(pi, r.last_payoffs)
    assert changes > 0


def test_fermi_probability_on_isolated_pairs():
    """Disjoint AC-AD pairs: AC (payoff S = 0) copies AD (T = 5) with probability
    1 / (1 + exp(-beta 5)); AD copies AC with 1 / (1 + exp(beta 5))."""
    n, beta = 4000, 0.5
    edges = [(2 * i, 2 * i + 1) for i in range(n // 2)]
    r = imitation_dynamics(["AC", "AD"], network={"topology": "custom", "edges": edges},
                           n_agents=n, initial=[n // 2, n // 2], generations=1, beta=beta,
                           seed=2, history=True)
    before, after = r.history[0], r.history[1]
    partner = np.arange(n) ^ 1
    mixed = before != before[partner]
    for mine, theirs_pay in ((0, 5.0), (1, -5.0)):
        who = mixed & (before == mine)
        expected = 1 / (1 + math.exp(-beta * theirs_pay))
        seen = float((after[who] != mine).mean())
        print(f"\n{r.names[mine]} copies its partner: {seen:.3f} (theory {expected:.3f})")
        assert abs(seen - expected) < 4 * binomial_se(expected, int(who.sum()))
    same = ~mixed
    assert np.array_equal(after[same], before[same])  # nothing to copy from a twin


def test_imitation_shares_determinism_and_fixation():
    kw = dict(network=SMALL_WORLD, n_agents=120, initial=[0.5, 0.3, 0.2], generations=25,
              noise=0.02, turns=60, repetitions=2, seed=9, history=True)
    a = imitation_dynamics(["TFT", "AD", "WSLS"], **kw)
    b = imitation_dynamics(["TFT", "AD", "WSLS"], **kw)
    assert np.array_equal(a.history, b.history) and np.array_equal(a.shares, b.shares)
    assert np.allclose(a.shares.sum(axis=1), 1.0)
    assert a.shares[0].tolist() == [0.5, 0.3, 0.2]
    assert np.array_equal(a.initial, a.history[0]) and np.array_equal(a.assignment,
                                                                       a.history[-1])
    c = imitation_dynamics(["TFT", "AD", "WSLS"], **{**kw, "seed": 10})
    assert not np.array_equal(a.initial, c.initial)
    if a.fixated is not None:
        assert a.fixation_generation == a.generations
        assert (a.assignment == a.names.index(a.fixated)).all()
    done = imitation_dynamics(["TFT", "AD"], n_agents=10, initial=[10, 0], generations=5)
    assert done.fixated == "TFT" and done.fixation_generation == 0 and done.generations == 0


def test_initial_shares_round_by_largest_remainder():
    r = imitation_dynamics(["AC", "AD", "TFT"], n_agents=10, initial=[0.5, 0.25, 0.25],
                           generations=0)
    assert np.bincount(r.initial, minlength=3).tolist() == [5, 3, 2]


def test_agent_payoffs_and_isolated_agents():
    net = Network.from_config(NetworkConfig(topology="custom", edges=[(0, 1), (1, 2)]), 4)
    a = np.array([[3.0, 0.0], [5.0, 1.0]])
    assert agent_payoffs(net, np.array([0, 1, 0, 1]), a).tolist() == [0.0, 10.0, 0.0, 0.0]
    r = imitation_dynamics(["AC", "AD"], network=net, n_agents=4, initial=[2, 2],
                           generations=10, rule="best", seed=0, history=True)
    assert (r.history[:, 3] == r.history[0, 3]).all()  # node 3 has no neighbour


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(rule="copy"), "rule must be one of fermi, best; received 'copy'"),
    (dict(beta=-1.0), "beta must be a finite number >= 0"),
    (dict(beta=math.inf), "beta must be a finite number >= 0"),
    (dict(initial=[5, 4]), r"initial counts must add up to n_agents \(10\)"),
    (dict(initial=[0.5, 0.4]), "initial shares must add up to 1"),
    (dict(initial=[10]), "one value per strategy"),
    (dict(initial=[1.2, -0.2]), r"initial\[0\] must be a number in \[0, 1\]"),
    (dict(network={"topology": "hexagon"}), "network: .*topology"),
    (dict(network="ring"), "network must be a NetworkConfig"),
    (dict(network=Network.from_config(NetworkConfig(), 5)), "network has 5 nodes"),
    (dict(n_agents=0), "n_agents must be an integer >= 1"),
    (dict(generations=-1), "generations must be an integer >= 0"),
    (dict(turns=-3), "turns must be an integer >= 1"),
    (dict(noise=-0.1), r"noise must be a number in \[0, 1\]"),
    (dict(strategies=["TFT", "nope"]), r"strategies\[1\]: unknown strategy 'nope'"),
])
def test_imitation_argument_errors(kwargs, match):
    args = {"strategies": ["TFT", "AD"], "n_agents": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        imitation_dynamics(args.pop("strategies"), **args)
