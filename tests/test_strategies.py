"""The prisoner's-dilemma strategy library: exact move sequences against fixed opponents."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from baselines.strategies import (
    CLASSIC,
    HISTORY_DEPTH,
    STRATEGIES,
    History,
    Strategy,
    history_depth,
    make_strategy,
    strategy_class,
)
from baselines.tournament import play_match

C, D = 0, 1


def moves(a, b, turns=10, **kw):
    m = play_match(a, b, turns=turns, **kw)
    return m.moves_a.tolist(), m.moves_b.tolist()


def test_every_strategy_is_declared():
    names = [s.name for s in STRATEGIES]
    assert len(set(names)) == len(names)
    for required in ("always_cooperate", "always_defect", "tit_for_tat",
                     "suspicious_tit_for_tat", "grim_trigger", "win_stay_lose_shift", "random",
                     "tit_for_two_tats", "generous_tit_for_tat", "alternator"):
        assert required in names
    for cls in STRATEGIES:
        assert issubclass(cls, Strategy)
        assert {"memory_depth", "stochastic", "uses_own_history"} <= set(cls.classifier)
    assert [strategy_class(s).short for s in CLASSIC] == CLASSIC
    assert strategy_class("GRIM").classifier["memory_depth"] == math.inf
    assert strategy_class("RND").classifier["stochastic"]
    assert HISTORY_DEPTH == history_depth() == 2


def test_make_strategy_names_and_params():
    assert make_strategy("tft").name == "tit_for_tat"
    assert make_strategy("tit_for_tat").label == "TFT"
    assert make_strategy("GTFT").params.p == pytest.approx(1 / 3)
    assert make_strategy("random", p=0.2).params.p == 0.2
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("nope")
    with pytest.raises(ValidationError):
        make_strategy("random", p=1.5)
    with pytest.raises(ValidationError):
        make_strategy("TFT", p=0.5)  # TFT has no parameters


def test_tft_vs_always_defect():
    a, b = moves("TFT", "AD")
    assert a == [C] + [D] * 9 and b == [D] * 10


def test_grim_never_forgives():
    # against an alternator: C until the first D (turn 2), then D forever
    a, b = moves("GRIM", "ALT", turns=12)
    assert b == [C, D] * 6
    assert a == [C, C] + [D] * 10
    # against TFT it cooperates throughout
    assert moves("GRIM", "TFT")[0] == [C] * 10


def test_wsls_vs_always_defect_alternates():
    a, _ = moves("WSLS", "AD")
    assert a == [C, D] * 5


def test_wsls_mechanics():
    # vs STFT: C/D (S, shift) -> D/C (T, stay) -> D/D (P, shift) -> C/D ...
    a, b = moves("WSLS", "STFT", turns=6)
    assert a == [C, D, D, C, D, D] and b == [D, C, D, D, C, D]


def test_stft_vs_tft_alternate():
    a, b = moves("STFT", "TFT")
    assert a == [D, C] * 5 and b == [C, D] * 5


def test_tf2t_needs_two_defections():
    # against an alternator it never sees two Ds in a row
    assert moves("TF2T", "ALT")[0] == [C] * 10
    # against AD: C, C, then D
    assert moves("TF2T", "AD")[0] == [C, C] + [D] * 8


def test_alternator():
    assert moves("ALT", "AD")[0] == [C, D] * 5
    assert moves("ALT", "AC")[0] == [C, D] * 5


def test_always():
    assert moves("AC", "AD") == ([C] * 10, [D] * 10)


def test_gtft_forgives_at_its_rate():
    m = play_match("GTFT", "AD", turns=3001, seed=1)
    assert m.moves_a[0] == C
    forgive = float((m.moves_a[1:] == C).mean())
    assert abs(forgive - 1 / 3) < 4 * math.sqrt((1 / 3) * (2 / 3) / 3000)
    assert (play_match("GTFT", "TFT", turns=50).moves_a == C).all()
    never = play_match(make_strategy("GTFT", p=0.0), "AD", turns=20).moves_a
    assert never.tolist() == [C] + [D] * 19


def test_random_rate_and_own_rng():
    m = play_match("RND", "AC", turns=4000, seed=3)
    assert abs((m.moves_a == C).mean() - 0.5) < 4 * math.sqrt(0.25 / 4000)
    s = make_strategy("RND", seed=7, p=0.9)
    t = np.zeros(2000, dtype=np.int64)
    window = np.zeros((2000, 2), dtype=np.int8)
    first = s.decide(window, window, t)           # no rng given: its own seeded one
    s.reset()
    assert (s.decide(window, window, t) == first).all()
    assert abs((first == C).mean() - 0.9) < 0.03


def test_decide_is_vectorised_over_pairs():
    """Each pair's decision depends on its own row only."""
    tft, wsls, tf2t = make_strategy("TFT"), make_strategy("WSLS"), make_strategy("TF2T")
    my = np.array([[C, C], [C, D], [D, D], [C, C]], dtype=np.int8)
    their = np.array([[C, D], [D, D], [C, C], [C, C]], dtype=np.int8)
    t = np.array([2, 2, 5, 0])
    assert tft.decide(my, their, t).tolist() == [D, D, C, C]
    assert wsls.decide(my, their, t).tolist() == [D, C, D, C]
    assert tf2t.decide(my, their, t).tolist() == [C, D, C, C]


def test_grim_flag_and_window_fallback():
    grim = make_strategy("GRIM")
    their = np.array([[C, C], [D, C], [D, C]], dtype=np.int8)
    t = np.array([5, 2, 1])   # row 2: the D is padding (only one real round)
    flag = np.array([True, False, False])
    assert grim.decide(their, their, t, their_defected=flag).tolist() == [D, C, C]
    assert grim.decide(their, their, t).tolist() == [C, D, C]  # derived from the window


def test_history_push():
    h = History(n_pairs=1, depth=3)
    for a, b in [(C, D), (D, C), (C, C), (D, D)]:
        h.push(np.array([a]), np.array([b]))
    assert h.my.tolist() == [[D, C, D]] and h.their.tolist() == [[C, C, D]]
    assert h.t.tolist() == [4] and h.my_defected.tolist() == [True]
    with pytest.raises(ValueError):
        History(1, depth=0)
