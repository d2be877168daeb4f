"""Tests for envs.core.metrics: hand-computed values, edge cases, properties, report."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core import metrics as metrics_module
from envs.core.metrics import (
    MetricsReporter,
    acceptance_rate,
    auc,
    brier_score,
    calibration_curve,
    coefficient_of_variation,
    conditional_loss,
    expected_calibration_error,
    gini,
    hard_accuracy,
    hard_brier_score,
    hard_quality_gap,
    hard_spread,
    hard_toxicity,
    log_loss,
    participation_by_quality,
    payoff_by_group,
    quality_distribution,
    quality_gap,
    soft_metrics,
    spread,
    sum_by_agent,
    toxicity,
    uncertain_fraction,
    variance,
    welfare,
)

# any numpy RuntimeWarning (or other warning) inside a test is a failure
pytestmark = pytest.mark.filterwarnings("error")

P = [0.9, 0.2, 0.6]
ACC = [1, 0, 1]
V = [1, -1, -1]


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-12)


# --------------------------------------------------------------------------------------------
# hand-computed values
# --------------------------------------------------------------------------------------------


def test_toxicity_hand():
    # accepted p = 0.9, 0.6 -> 1-p = 0.1, 0.4 -> (0.1 + 0.4) / 2 = 0.25
    assert toxicity(P, ACC) == approx(0.25)
    assert isinstance(toxicity(P, ACC), float)


def test_hard_toxicity_hand():
    # accepted p = 0.9, 0.4, 0.5 -> below 0.5: only 0.4 -> 1/3 (0.5 is not < 0.5)
    assert hard_toxicity([0.9, 0.2, 0.4, 0.5], [1, 0, 1, 1]) == approx(1 / 3)
    # threshold 0.95: all three accepted are below -> 1.0
    assert hard_toxicity([0.9, 0.2, 0.4, 0.5], [1, 0, 1, 1], threshold=0.95) == approx(1.0)


def test_quality_gap_hand():
    # E[p|A] = (0.9 + 0.6) / 2 = 0.75; E[p|R] = 0.2 -> 0.55
    assert quality_gap(P, ACC) == approx(0.55)
    # adverse selection: accepted 0.1, rejected 0.8, 0.6 -> 0.1 - 0.7 = -0.6
    assert quality_gap([0.1, 0.8, 0.6], [1, 0, 0]) == approx(-0.6)
    # truth indicator in place of p: y = [1, 0, 0]; E[y|A] = 0.5, E[y|R] = 0 -> 0.5
    assert quality_gap(np.array(V) == 1, ACC) == approx(0.5)


def test_hard_quality_gap_hand():
    # h = 1[p >= 0.5] = [1, 0, 1, 0, 1]; accepted rows 0, 1, 4 -> h = 1, 0, 1 -> 2/3
    # rejected rows 2, 3 -> h = 1, 0 -> 1/2; gap = 2/3 - 1/2 = 1/6
    p = [0.9, 0.2, 0.5, 0.49, 0.7]
    acc = [1, 1, 0, 0, 1]
    assert hard_quality_gap(p, acc) == approx(1 / 6)


def test_conditional_loss_hand():
    # payoff = [3, -1, 1]; E[payoff|A] = (3 + 1) / 2 = 2; E[payoff] = 3 / 3 = 1 -> 1
    assert conditional_loss([3.0, -1.0, 1.0], ACC) == approx(1.0)
    # accepted the worst: E|A = -1; E = 1 -> -2
    assert conditional_loss([3.0, -1.0, 1.0], [0, 1, 0]) == approx(-2.0)


def test_spread_hand():
    # E[p] = 1.7 / 3; E[p|A] = 0.75; (2 + 1) * (1.7/3 - 0.75) = 1.7 - 2.25 = -0.55
    assert spread(P, ACC) == approx(-0.55)
    # s_plus = 3, s_minus = 1 -> 4 * (1.7/3 - 0.75) = 6.8/3 - 3 = -0.7333...
    assert spread(P, ACC, s_plus=3.0, s_minus=1.0) == approx(6.8 / 3 - 3.0)


def test_hard_spread_hand():
    # h = [1, 0, 1, 0]; E[h] = 0.5; accepted rows 1, 3 -> E[h|A] = 0 -> 3 * 0.5 = 1.5
    assert hard_spread([0.9, 0.2, 0.6, 0.1], [0, 1, 0, 1]) == approx(1.5)


def test_participation_by_quality_hand():
    # high (p >= 0.5): 0.9 (acc), 0.5 (rej) -> 0.5; low: 0.2 (rej), 0.1 (acc), 0.3 (acc) -> 2/3
    out = participation_by_quality([0.9, 0.5, 0.2, 0.1, 0.3], [1, 0, 0, 1, 1])
    assert out == {"high": approx(0.5), "low": approx(2 / 3)}
    # no low group -> nan
    out = participation_by_quality([0.9, 0.8], [1, 0])
    assert out["high"] == approx(0.5)
    assert math.isnan(out["low"])


def test_uncertain_fraction_hand():
    # |p - 0.5| = 0.0, 0.15, 0.2 (not < 0.2), 0.4, 0.19 -> 3 of 5 = 0.6
    assert uncertain_fraction([0.5, 0.65, 0.3, 0.9, 0.31]) == approx(0.6)
    # band 0.5: all with |p-0.5| < 0.5 -> 0.0 and 1.0 excluded -> 1 of 3
    assert uncertain_fraction([0.0, 0.5, 1.0], band=0.5) == approx(1 / 3)


def test_quality_distribution_hand():
    # 4 bins: [0,.25) [.25,.5) [.5,.75) [.75,1]; 0 -> b0, 0.25 -> b1, 0.5, 0.74 -> b2, 1.0 -> b3
    counts = quality_distribution([0.0, 0.25, 0.5, 0.74, 1.0], bins=4)
    assert counts.tolist() == [1, 1, 2, 1]
    assert counts.shape == (4,)
    # default 10 bins, p = 1.0 in the last bin
    counts = quality_distribution([1.0, 1.0, 0.05])
    assert counts.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert counts.sum() == 3


def test_welfare_hand():
    # all rows: (1 + 0.5) + (2 - 1) + (5 + 5) = 12.5; accepted rows 0, 1: 1.5 + 1 = 2.5
    a, b = [1.0, 2.0, 5.0], [0.5, -1.0, 5.0]
    assert welfare(a, b) == approx(12.5)
    assert welfare(a, b, accepted=[1, 1, 0]) == approx(2.5)


def test_brier_score_hand():
    # y = [1, 0, 0]; (0.9-1)^2 + (0.2-0)^2 + (0.6-0)^2 = 0.01 + 0.04 + 0.36 = 0.41 -> 0.41/3
    assert brier_score(P, V) == approx(0.41 / 3)
    # same labels as 0/1 and as bool
    assert brier_score(P, [1, 0, 0]) == approx(0.41 / 3)
    assert brier_score(P, [True, False, False]) == approx(0.41 / 3)


def test_hard_brier_and_accuracy_hand():
    # h = [1, 0, 1]; y = [1, 0, 0]; errors: row 2 only -> brier 1/3, accuracy 2/3
    assert hard_brier_score(P, V) == approx(1 / 3)
    assert hard_accuracy(P, V) == approx(2 / 3)
    # threshold 0.7 -> h = [1, 0, 0] -> perfect
    assert hard_brier_score(P, V, threshold=0.7) == approx(0.0)
    assert hard_accuracy(P, V, threshold=0.7) == approx(1.0)


def test_ece_two_bins_hand():
    # bins=2: bin0 [0, .5): p = 0.2, 0.4, y = 0, 1 -> mean p 0.3, frac 0.5, |.3-.5| = 0.2, n=2
    #         bin1 [.5, 1]: p = 0.8, y = 1 -> |0.8 - 1| = 0.2, n=1
    # ECE = (2/3)*0.2 + (1/3)*0.2 = 0.2
    assert expected_calibration_error([0.2, 0.4, 0.8], [-1, 1, 1], bins=2) == approx(0.2)
    # bin0: p=0.1, y=0 -> 0.1 (n=1); bin1: p=0.6, 0.9, y=1, 0 -> mean p .75, frac .5 -> .25 (n=2)
    # ECE = (1/3)*0.1 + (2/3)*0.25 = 0.0333.. + 0.1666.. = 0.2
    assert expected_calibration_error([0.1, 0.6, 0.9], [0, 1, 0], bins=2) == approx(0.2)
    # single bin: |mean p - mean y| = |0.5 - 0.5| = 0
    assert expected_calibration_error([0.2, 0.8], [0, 1], bins=1) == approx(0.0)


def test_calibration_curve_hand():
    # bins=4: 0.1 -> b0, 0.2 -> b0, 0.9 -> b3, b1 and b2 empty (dropped)
    # b0: mean p 0.15, frac (0 + 1)/2 = 0.5, n=2; b3: mean p 0.9, frac 1, n=1
    mean_p, frac, counts = calibration_curve([0.1, 0.2, 0.9], [-1, 1, 1], bins=4)
    np.testing.assert_allclose(mean_p, [0.15, 0.9])
    np.testing.assert_allclose(frac, [0.5, 1.0])
    assert counts.tolist() == [2, 1]


def test_log_loss_hand():
    # y = [1, 0]; -(log 0.8 + log(1 - 0.4)) / 2 = -(log 0.8 + log 0.6) / 2
    assert log_loss([0.8, 0.4], [1, -1]) == approx(-(math.log(0.8) + math.log(0.6)) / 2)
    # clipping: p = 0 for a positive -> -log(eps)
    assert log_loss([0.0], [1], eps=1e-12) == pytest.approx(-math.log(1e-12))
    assert math.isfinite(log_loss([0.0, 1.0], [1, 0]))


def _brute_auc(p, v):
    pos = [s for s, t in zip(p, v, strict=True) if t > 0]
    neg = [s for s, t in zip(p, v, strict=True) if t <= 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_hand_and_bruteforce():
    # positives 0.35, 0.8; negatives 0.1, 0.4 -> pairs won: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3/4
    assert auc([0.1, 0.4, 0.35, 0.8], [-1, -1, 1, 1]) == approx(0.75)
    # with ties: pos 0.5, 0.5; neg 0.5, 0.2 -> (tie .5) + (win) + (tie .5) + (win) = 3/4
    assert auc([0.5, 0.5, 0.5, 0.2], [1, 1, -1, -1]) == approx(0.75)
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        p = np.round(rng.random(n), 1)  # coarse rounding -> many ties
        v = rng.choice([-1, 1], size=n)
        if len(set(v.tolist())) < 2:
            continue
        assert auc(p, v) == approx(_brute_auc(p.tolist(), v.tolist()))


def test_variance_and_cv_hand():
    # mean 2.5; deviations^2 = 2.25, 0.25, 0.25, 2.25 -> 5 / 4 = 1.25 (population, ddof=0)
    assert variance([1.0, 2.0, 3.0, 4.0]) == approx(1.25)
    assert variance([7.0]) == approx(0.0)
    # [2, 4]: mean 3, var 1, std 1 -> cv 1/3; negative mean uses |mean|
    assert coefficient_of_variation([2.0, 4.0]) == approx(1 / 3)
    assert coefficient_of_variation([-2.0, -4.0]) == approx(1 / 3)
    # mean 0 -> nan
    assert math.isnan(coefficient_of_variation([-1.0, 1.0]))


def test_acceptance_rate_hand():
    # 3 of 4 accepted
    assert acceptance_rate([True, False, True, True]) == approx(0.75)
    assert acceptance_rate([1, 0]) == approx(0.5)


def test_gini_hand():
    # [1,2,3,4]: sum_ij |xi-xj| = 2*(1+2+3+1+2+1) = 20; 2 n^2 mean = 2*16*2.5 = 80 -> 0.25
    assert gini([4.0, 1.0, 3.0, 2.0]) == approx(0.25)
    # one holds everything among 4 -> (n-1)/n = 0.75
    assert gini([0.0, 0.0, 0.0, 8.0]) == approx(0.75)
    # all equal / all zero -> 0
    assert gini([5.0, 5.0, 5.0]) == 0.0
    assert gini([0.0, 0.0]) == 0.0
    assert gini([-3.0, -3.0]) == 0.0
    # negatives shifted by -min: [-1, 1] -> [0, 2] -> sum |.| = 4 / (2*4*1) = 0.5
    assert gini([-1.0, 1.0]) == approx(0.5)


def test_payoff_by_group_hand():
    # honest: (1 + 3) / 2 = 2; adversarial: -2 / 1 = -2
    out = payoff_by_group(np.array([1.0, 3.0, -2.0]), ["honest", "honest", "adversarial"])
    assert out == {"adversarial": approx(-2.0), "honest": approx(2.0)}
    assert all(type(k) is str and type(v) is float for k, v in out.items())
    assert payoff_by_group([], []) == {}


def test_sum_by_agent_hand():
    # agent 0: 1 + 3 = 4; agent 1: none -> 0; agent 2: 2; agent 3 (n_agents = 4): 0
    out = sum_by_agent([0, 2, 0], [1.0, 2.0, 3.0], 4)
    assert out.tolist() == [4.0, 0.0, 2.0, 0.0]
    assert sum_by_agent([], [], 3).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        sum_by_agent([0, 3], [1.0, 1.0], 3)


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        toxicity([0.1, 0.2], [1])
    with pytest.raises(ValueError):
        auc([0.1, 0.2], [1])
    with pytest.raises(ValueError):
        payoff_by_group([1.0], ["a", "b"])


# --------------------------------------------------------------------------------------------
# soft_metrics / reporter
# --------------------------------------------------------------------------------------------

BASE_KEYS = [
    "n_interactions",
    "n_accepted",
    "acceptance_rate",
    "toxicity",
    "hard_toxicity",
    "quality_gap",
    "hard_quality_gap",
    "spread",
    "hard_spread",
    "participation_high",
    "participation_low",
    "uncertain_fraction",
    "mean_p",
    "variance_p",
    "coefficient_of_variation_p",
]
TRUTH_KEYS = [
    "truth_quality_gap",
    "realized_harm_rate",
    "brier_score",
    "hard_brier_score",
    "hard_accuracy",
    "expected_calibration_error",
    "log_loss",
    "auc",
]
PAYOFF_KEYS = ["conditional_loss_initiator", "conditional_loss_counterparty", "welfare"]


def test_soft_metrics_keys_and_values():
    m = soft_metrics(P, ACC)
    assert list(m) == BASE_KEYS
    m = soft_metrics(P, ACC, v=V)
    assert list(m) == BASE_KEYS + TRUTH_KEYS
    pay_a, pay_b = [3.0, 0.0, 1.0], [1.0, 0.0, -1.0]
    m = soft_metrics(P, ACC, v=V, payoff_initiator=pay_a, payoff_counterparty=pay_b)
    assert list(m) == BASE_KEYS + TRUTH_KEYS + PAYOFF_KEYS
    assert all(type(x) is float for x in m.values())
    assert m["n_interactions"] == 3.0
    assert m["n_accepted"] == 2.0
    assert m["toxicity"] == approx(0.25)
    # y = [1,0,0]; accepted rows 0, 2 -> y = 1, 0 -> harm rate 0.5; truth gap 0.5 - 0 = 0.5
    assert m["realized_harm_rate"] == approx(0.5)
    assert m["truth_quality_gap"] == approx(0.5)
    # E[pay_a|A] = 2, E[pay_a] = 4/3 -> 2/3; E[pay_b|A] = 0, E[pay_b] = 0 -> 0
    assert m["conditional_loss_initiator"] == approx(2 / 3)
    assert m["conditional_loss_counterparty"] == approx(0.0)
    # accepted: (3 + 1) + (1 - 1) = 4
    assert m["welfare"] == approx(4.0)
    assert m["auc"] == approx(auc(P, V))
    # only one payoff side -> its conditional loss, no welfare
    m = soft_metrics(P, ACC, payoff_initiator=pay_a)
    assert "conditional_loss_initiator" in m
    assert "welfare" not in m and "conditional_loss_counterparty" not in m


def test_reporter():
    rep = MetricsReporter(threshold=0.7, s_plus=3.0, s_minus=1.0)
    args = (P, ACC, V, [3.0, 0.0, 1.0], [1.0, 0.0, -1.0])
    m = rep.compute(*args)
    assert m == soft_metrics(*args, s_plus=3.0, s_minus=1.0, threshold=0.7)
    text = rep.report(*args)
    assert isinstance(text, str)
    for key in m:
        assert key in text
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["metric", "soft", "hard"]
    tox_row = next(line for line in lines if line.startswith("toxicity"))
    cells = [c.strip() for c in tox_row.split("|")]
    assert cells[1] == f"{m['toxicity']:.4f}" and cells[2] == f"{m['hard_toxicity']:.4f}"
    acc_row = next(line for line in lines if line.startswith("acceptance_rate"))
    assert acc_row.split("|")[2].strip() == "-"
    hard_acc_row = next(line for line in lines if line.startswith("hard_accuracy"))
    assert hard_acc_row.split("|")[1].strip() == "-"


def test_print_report(capsys):
    MetricsReporter().print_report([], [])
    out = capsys.readouterr().out
    assert "toxicity" in out and "nan" in out


# --------------------------------------------------------------------------------------------
# edge cases: empty, all accepted, all rejected, single class -- nan, never a warning
# --------------------------------------------------------------------------------------------


def _scalar_calls(p, acc, v):
    return {
        "toxicity": toxicity(p, acc),
        "hard_toxicity": hard_toxicity(p, acc),
        "quality_gap": quality_gap(p, acc),
        "hard_quality_gap": hard_quality_gap(p, acc),
        "conditional_loss": conditional_loss(p, acc),
        "spread": spread(p, acc),
        "hard_spread": hard_spread(p, acc),
        "uncertain_fraction": uncertain_fraction(p),
        "acceptance_rate": acceptance_rate(acc),
        "welfare": welfare(p, p, acc),
        "brier_score": brier_score(p, v),
        "hard_brier_score": hard_brier_score(p, v),
        "hard_accuracy": hard_accuracy(p, v),
        "expected_calibration_error": expected_calibration_error(p, v),
        "log_loss": log_loss(p, v),
        "auc": auc(p, v),
        "variance": variance(p),
        "coefficient_of_variation": coefficient_of_variation(p),
        "gini": gini(p),
    }


def test_empty_inputs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _scalar_calls([], [], [])
        for key, val in out.items():
            assert type(val) is float, key
            if key == "welfare":
                assert val == 0.0  # a sum is defined on empty input
            else:
                assert math.isnan(val), key
        part = participation_by_quality([], [])
        assert math.isnan(part["high"]) and math.isnan(part["low"])
        assert quality_distribution([]).tolist() == [0] * 10
        mean_p, frac, counts = calibration_curve([], [])
        assert mean_p.size == frac.size == counts.size == 0
        m = soft_metrics([], [], v=[], payoff_initiator=[], payoff_counterparty=[])
        assert m["n_interactions"] == 0.0 and m["n_accepted"] == 0.0
        assert math.isnan(m["toxicity"]) and math.isnan(m["auc"])
        assert m["welfare"] == 0.0
        assert isinstance(MetricsReporter().report([], [], v=[]), str)


def test_all_accepted():
    p, acc, v = [0.9, 0.2, 0.6], [1, 1, 1], [1, -1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _scalar_calls(p, acc, v)
        # nothing rejected -> gaps undefined
        assert math.isnan(out["quality_gap"]) and math.isnan(out["hard_quality_gap"])
        # (0.1 + 0.8 + 0.4) / 3
        assert out["toxicity"] == approx(1.3 / 3)
        # accepted pool = offered pool -> no spread, no conditional loss
        assert out["spread"] == approx(0.0) and out["conditional_loss"] == approx(0.0)
        assert out["acceptance_rate"] == 1.0
        m = soft_metrics(p, acc, v=v)
        assert math.isnan(m["truth_quality_gap"])
        assert m["realized_harm_rate"] == approx(1 / 3)


def test_all_rejected():
    p, acc, v = [0.9, 0.2, 0.6], [0, 0, 0], [1, -1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _scalar_calls(p, acc, v)
        for key in ("toxicity", "hard_toxicity", "quality_gap", "hard_quality_gap", "spread",
                    "hard_spread", "conditional_loss"):
            assert math.isnan(out[key]), key
        assert out["acceptance_rate"] == 0.0
        assert out["welfare"] == 0.0
        part = participation_by_quality(p, acc)
        assert part == {"high": 0.0, "low": 0.0}
        m = soft_metrics(p, acc, v=v, payoff_initiator=p, payoff_counterparty=p)
        assert math.isnan(m["realized_harm_rate"]) and math.isnan(m["truth_quality_gap"])
        assert math.isnan(m["conditional_loss_initiator"])
        assert m["welfare"] == 0.0


def test_single_class_auc_and_degenerate():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(auc([0.1, 0.9], [1, 1]))
        assert math.isnan(auc([0.1, 0.9], [-1, -1]))
        assert math.isnan(auc([0.1, 0.9], [0, 0]))
        assert math.isnan(soft_metrics([0.1, 0.9], [1, 0], v=[1, 1])["auc"])
        # constant scores -> all ties -> 0.5
        assert auc([0.3, 0.3, 0.3], [1, -1, 1]) == approx(0.5)
        assert variance([0.0]) == 0.0
        assert math.isnan(coefficient_of_variation([0.0, 0.0]))
        assert gini([3.0]) == 0.0


def test_large_vectorised():
    # 1e6 records run fast and agree with a direct formula
    rng = np.random.default_rng(1)
    n = 1_000_000
    p = rng.random(n)
    acc = rng.random(n) < p
    v = np.where(rng.random(n) < p, 1, -1)
    m = soft_metrics(p, acc, v=v, payoff_initiator=p, payoff_counterparty=-p)
    assert m["toxicity"] == pytest.approx(np.mean(1 - p[acc]))
    assert m["brier_score"] == pytest.approx(np.mean((p - (v == 1)) ** 2))
    assert 0.0 <= m["expected_calibration_error"] < 0.01  # p is calibrated by construction
    assert 0.5 < m["auc"] < 1.0


# --------------------------------------------------------------------------------------------
# hypothesis properties
# --------------------------------------------------------------------------------------------

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)


@st.composite
def batches(draw, min_size: int = 0):
    n = draw(st.integers(min_value=min_size, max_value=60))
    p = np.array(draw(st.lists(unit, min_size=n, max_size=n)), dtype=float)
    acc = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    v = np.array(draw(st.lists(st.sampled_from([-1, 1]), min_size=n, max_size=n)), dtype=int)
    return p, acc, v


def _in_unit_or_nan(x: float, lo: float = 0.0, hi: float = 1.0) -> bool:
    return math.isnan(x) or (lo - 1e-12 <= x <= hi + 1e-12)


@settings(max_examples=200, deadline=None)
@given(batches())
def test_property_ranges(batch):
    p, acc, v = batch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _in_unit_or_nan(toxicity(p, acc))
        assert _in_unit_or_nan(hard_toxicity(p, acc))
        assert _in_unit_or_nan(quality_gap(p, acc), -1.0, 1.0)
        assert _in_unit_or_nan(hard_quality_gap(p, acc), -1.0, 1.0)
        assert _in_unit_or_nan(brier_score(p, v))
        assert _in_unit_or_nan(expected_calibration_error(p, v))
        assert _in_unit_or_nan(auc(p, v))
        assert _in_unit_or_nan(gini(p))
        assert _in_unit_or_nan(uncertain_fraction(p))
        assert _in_unit_or_nan(acceptance_rate(acc))
        assert _in_unit_or_nan(hard_accuracy(p, v))
        assert quality_distribution(p).sum() == p.size
        m = soft_metrics(p, acc, v=v)
        assert all(type(x) is float for x in m.values())


@settings(max_examples=100, deadline=None)
@given(batches(min_size=1))
def test_property_auc_matches_bruteforce(batch):
    p, _, v = batch
    a = auc(p, v)
    if len(set(v.tolist())) < 2:
        assert math.isnan(a)
    else:
        assert a == approx(_brute_auc(p.tolist(), v.tolist()))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), max_size=50))
def test_property_gini_range(xs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = gini(xs)
    if not xs:
        assert math.isnan(g)
    else:
        assert 0.0 <= g <= 1.0


def test_all_public_names_exported():
    for name in metrics_module.__all__:
        assert hasattr(metrics_module, name)


# --------------------------------------------------------------------------------------------
# input rule: p in [0, 1] (no nan), accepted boolean or exactly 0/1, in every function
# --------------------------------------------------------------------------------------------

# every public function that takes p, called with p (and otherwise valid arguments)
P_FUNCTIONS = {
    "toxicity": lambda p: toxicity(p, [1, 0, 1]),
    "hard_toxicity": lambda p: hard_toxicity(p, [1, 0, 1]),
    "quality_gap": lambda p: quality_gap(p, [1, 0, 1]),
    "hard_quality_gap": lambda p: hard_quality_gap(p, [1, 0, 1]),
    "spread": lambda p: spread(p, [1, 0, 1]),
    "hard_spread": lambda p: hard_spread(p, [1, 0, 1]),
    "participation_by_quality": lambda p: participation_by_quality(p, [1, 0, 1]),
    "uncertain_fraction": lambda p: uncertain_fraction(p),
    "quality_distribution": lambda p: quality_distribution(p),
    "brier_score": lambda p: brier_score(p, V),
    "hard_brier_score": lambda p: hard_brier_score(p, V),
    "hard_accuracy": lambda p: hard_accuracy(p, V),
    "expected_calibration_error": lambda p: expected_calibration_error(p, V),
    "calibration_curve": lambda p: calibration_curve(p, V),
    "log_loss": lambda p: log_loss(p, V),
    "auc": lambda p: auc(p, V),
    "soft_metrics": lambda p: soft_metrics(p, [1, 0, 1], v=V),
    "MetricsReporter.compute": lambda p: MetricsReporter().compute(p, [1, 0, 1]),
}
# every public function that takes accepted
ACC_FUNCTIONS = {
    "toxicity": lambda a: toxicity(P, a),
    "hard_toxicity": lambda a: hard_toxicity(P, a),
    "quality_gap": lambda a: quality_gap(P, a),
    "hard_quality_gap": lambda a: hard_quality_gap(P, a),
    "conditional_loss": lambda a: conditional_loss([1.0, 2.0, 3.0], a),
    "spread": lambda a: spread(P, a),
    "hard_spread": lambda a: hard_spread(P, a),
    "participation_by_quality": lambda a: participation_by_quality(P, a),
    "acceptance_rate": lambda a: acceptance_rate(a),
    "welfare": lambda a: welfare([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], a),
    "soft_metrics": lambda a: soft_metrics(P, a),
    "MetricsReporter.compute": lambda a: MetricsReporter().compute(P, a),
}
BAD_P = [
    pytest.param([0.9, 1.5, 0.6], r"p must lie in \[0, 1\].*got 1\.5", id="above-1"),
    pytest.param([0.9, -0.2, 0.6], r"p must lie in \[0, 1\].*got -0\.2", id="below-0"),
    pytest.param([0.9, float("nan"), 0.6], r"p must lie in \[0, 1\].*got nan", id="nan"),
    pytest.param([0.9, float("inf"), 0.6], r"p must lie in \[0, 1\].*got inf", id="inf"),
    pytest.param(["0.9", "0.2", "0.6"], r"p must be numbers in \[0, 1\].*'0\.9'", id="strings"),
]
BAD_ACCEPTED = [
    pytest.param([1, 0.3, 1], r"accepted must be booleans \(or 0/1\); got 0\.3", id="0.3"),
    pytest.param([1, 2, 0], r"accepted must be booleans \(or 0/1\); got 2\b", id="int-2"),
    pytest.param([1, -1, 0], r"accepted must be booleans \(or 0/1\); got -1\b", id="int-neg"),
    pytest.param([1.0, float("nan"), 0.0], r"accepted must be booleans.*got nan", id="nan"),
    pytest.param(["yes", "no", "yes"], r"accepted must be booleans.*'yes'", id="strings"),
    pytest.param([True, None, False], r"accepted must be booleans.*dtype object", id="None"),
]


@pytest.mark.parametrize("name", sorted(P_FUNCTIONS))
@pytest.mark.parametrize(("p", "pattern"), BAD_P)
def test_bad_p_is_an_error_everywhere(name, p, pattern):
    with pytest.raises(ValueError, match=pattern):
        P_FUNCTIONS[name](p)


@pytest.mark.parametrize("name", sorted(ACC_FUNCTIONS))
@pytest.mark.parametrize(("accepted", "pattern"), BAD_ACCEPTED)
def test_non_boolean_accepted_is_an_error_everywhere(name, accepted, pattern):
    with pytest.raises(ValueError, match=pattern):
        ACC_FUNCTIONS[name](accepted)


def test_valid_flag_and_label_forms_are_accepted():
    for acc in ([1, 0, 1], [True, False, True], [1.0, 0.0, 1.0], np.array([1, 0, 1], np.uint8)):
        assert toxicity(P, acc) == approx(0.25)
    assert toxicity([1, 0, 1], [True, False, True]) == 0.0  # integer labels 0/1 are in [0, 1]
    assert quality_gap([True, False, True], [1, 0, 0]) == approx(0.5)  # indicators


def test_error_names_how_many_values_are_bad():
    with pytest.raises(ValueError, match=r"got 1\.5 \(and 2 more\)"):
        toxicity([1.5, 2.0, -1.0], [1, 1, 1])
