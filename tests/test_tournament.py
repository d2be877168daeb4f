"""Round robins and matches of the iterated prisoner's dilemma obey the theory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from baselines.strategies import CLASSIC, make_strategy
from baselines.tournament import (
    PAYOFF_PRESETS,
    play_match,
    resolve_payoffs,
    round_robin,
)

R, S, T, P = 3.0, 0.0, 5.0, 1.0


@pytest.fixture(scope="module")
def classic():
    return round_robin(CLASSIC, turns=200, repetitions=10, seed=0)


def idx(result, name):
    return result.names.index(name)


def test_classic_shape_and_bounds(classic):
    k = len(CLASSIC)
    assert classic.names == CLASSIC
    assert classic.payoff_matrix.shape == (k, k)
    assert classic.match_payoffs.shape == (k, k, 10)
    assert classic.cooperation_matrix.shape == (k, k)
    assert (classic.payoff_matrix >= S).all() and (classic.payoff_matrix <= T).all()
    assert ((classic.cooperation_matrix >= 0) & (classic.cooperation_matrix <= 1)).all()
    assert sorted(classic.ranking) == list(range(k))
    means = classic.mean_payoff[classic.ranking]
    assert (np.diff(means) <= 0).all()
    assert classic.ranked_names[0] == CLASSIC[classic.ranking[0]]


def test_classic_theory(classic):
    pm = classic.payoff_matrix
    i = {n: idx(classic, n) for n in CLASSIC}
    assert pm[i["AC"]][i["AC"]] == R
    assert pm[i["AD"]][i["AD"]] == P
    assert pm[i["AD"]][i["AC"]] == T and pm[i["AC"]][i["AD"]] == S
    assert pm[i["TFT"]][i["STFT"]] == pytest.approx(2.5)
    assert pm[i["STFT"]][i["TFT"]] == pytest.approx(2.5)
    assert pm[i["WSLS"]][i["AD"]] == pytest.approx(0.5)
    assert pm[i["AD"]][i["WSLS"]] == pytest.approx(3.0)
    # TFT vs AD: S once then P: (0 + 199) / 200
    assert pm[i["TFT"]][i["AD"]] == pytest.approx(199 / 200)
    assert pm[i["AD"]][i["TFT"]] == pytest.approx((5 + 199) / 200)
    for nice in ("AC", "TFT", "GRIM", "WSLS"):
        for other in ("AC", "TFT", "GRIM", "WSLS"):
            assert pm[i[nice]][i[other]] == R
    # TFT never outscores its opponent in a match (any repetition)
    mp = classic.match_payoffs
    for j in range(len(CLASSIC)):
        assert (mp[i["TFT"], j] <= mp[j, i["TFT"]] + 1e-12).all()
    assert classic.wins[i["TFT"]] == 0
    assert classic.cooperation_rate[i["AC"]] == 1.0 and classic.cooperation_rate[i["AD"]] == 0


def test_deterministic_players_equal_over_repetitions(classic):
    det = [idx(classic, n) for n in CLASSIC if n != "RND"]
    sub = classic.match_payoffs[np.ix_(det, det)]
    assert (sub == sub[..., :1]).all()


def test_tft_vs_ad_six_turns():
    m = play_match("TFT", "AD", turns=6)
    assert m.scores == (5.0, 10.0)
    assert m.per_turn == pytest.approx((5 / 6, 10 / 6))


def test_match_scores_are_consistent_with_moves():
    m = play_match("RND", "GTFT", turns=300, seed=5, noise=0.05)
    table = np.array([[R, S], [T, P]])
    assert m.scores[0] == table[m.moves_a, m.moves_b].sum()
    assert m.scores[1] == table[m.moves_b, m.moves_a].sum()


def test_determinism_under_seed():
    players = [*CLASSIC, "GTFT", "TF2T", "ALT"]
    a = round_robin(players, turns=50, repetitions=4, noise=0.05, seed=11)
    b = round_robin(players, turns=50, repetitions=4, noise=0.05, seed=11)
    c = round_robin(players, turns=50, repetitions=4, noise=0.05, seed=12)
    assert np.array_equal(a.match_payoffs, b.match_payoffs)
    assert np.array_equal(a.cooperation_matrix, b.cooperation_matrix)
    assert not np.array_equal(a.match_payoffs, c.match_payoffs)
    m1 = play_match("RND", "GTFT", seed=3)
    m2 = play_match("RND", "GTFT", seed=3)
    assert np.array_equal(m1.moves_a, m2.moves_a) and np.array_equal(m1.moves_b, m2.moves_b)


@pytest.mark.parametrize("noise", [0.01, 0.1, 0.3])
def test_noise_flips_at_rate(noise):
    """AC and AD ignore history, so every departure from their move is a flip."""
    turns, reps = 500, 20
    r = round_robin(["AC", "AD"], turns=turns, repetitions=reps, noise=noise, seed=2)
    # AC's played-D moves and AD's played-C moves over all its matches: each plays
    # turns x reps moves against the other and twice that in self-play (both sides)
    n_ac = turns * reps * 3
    flips_ac = (1 - r.cooperation_matrix[0, 1]) * turns * reps \
        + (1 - r.cooperation_matrix[0, 0]) * turns * reps * 2
    flips_ad = r.cooperation_matrix[1, 0] * turns * reps \
        + r.cooperation_matrix[1, 1] * turns * reps * 2
    for flips in (flips_ac, flips_ad):
        sd = math.sqrt(n_ac * noise * (1 - noise))
        assert abs(flips - n_ac * noise) < 5 * sd
    m = play_match("AC", "AC", turns=20000, noise=noise, seed=4)
    for side in (m.moves_a, m.moves_b):
        sd = math.sqrt(noise * (1 - noise) / side.size)
        assert abs(side.mean() - noise) < 5 * sd


def test_noise_one_flips_everything():
    m = play_match("AC", "AD", turns=10, noise=1.0)
    assert m.moves_a.tolist() == [1] * 10 and m.moves_b.tolist() == [0] * 10


def test_payoff_presets():
    assert PAYOFF_PRESETS["classic"] == (R, S, T, P)
    assert resolve_payoffs("llm_study") == (2.0, -1.0, 3.0, 0.0)
    r = round_robin(["AC", "AD"], turns=10, repetitions=1, payoffs="llm_study")
    assert r.payoff_matrix.tolist() == [[2.0, -1.0], [3.0, 0.0]]
    m = play_match("AC", "AD", turns=4, payoffs=(4, 1, 6, 2))
    assert m.scores == (4.0, 24.0)
    with pytest.raises(ValueError):
        resolve_payoffs("nope")
    with pytest.raises(ValueError):
        resolve_payoffs((1, 2, 3))


def test_duplicate_and_instance_players():
    r = round_robin(["TFT", make_strategy("TFT"), "AD"], turns=20, repetitions=2)
    assert r.names == ["TFT#0", "TFT#1", "AD"]
    assert r.payoff_matrix[0][1] == R and r.payoff_matrix[1][0] == R
    assert r.payoff_matrix[2][0] == pytest.approx((5 + 19) / 20)


def test_single_player_and_bad_arguments():
    r = round_robin(["WSLS"], turns=10, repetitions=1)
    assert r.payoff_matrix.tolist() == [[R]] and r.mean_payoff.tolist() == [R]
    with pytest.raises(ValueError):
        round_robin([], turns=10)
    with pytest.raises(ValueError):
        round_robin(["AC"], repetitions=0)
    with pytest.raises(ValueError):
        play_match("AC", "AD", noise=1.5)
    assert "| rank |" in r.table()
