"""Hand-computed values and properties of the proxy, the sigmoid, the payoffs and records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core.payoff import PayoffConfig, SoftPayoffEngine
from envs.core.proxy import (
    ProxyComputer,
    ProxyObservables,
    ProxyWeights,
    calibrate,
    count_signal,
    sigmoid,
)
from envs.core.records import InteractionBatch, InteractionType, SoftInteraction

finite = st.floats(-50, 50, allow_nan=False)
unit = st.floats(0, 1, allow_nan=False)


# ----------------------------------------------------------------- sigmoid and count signals
def test_sigmoid_hand_values():
    assert sigmoid(0.0, k=2.0) == 0.5
    # 1 / (1 + e^-2) = 0.8807970779778823
    assert sigmoid(1.0, k=2.0) == pytest.approx(0.8807970779778823, rel=1e-15)
    assert sigmoid(-1.0, k=2.0) == pytest.approx(1 - 0.8807970779778823, rel=1e-12)
    assert sigmoid(1e6) == 1.0 and sigmoid(-1e6) == 0.0  # no overflow


def test_count_signal_hand_values():
    # 2 * d^n - 1
    assert count_signal(0, 0.3) == 1.0
    assert count_signal(1, 0.3) == pytest.approx(-0.4)
    assert count_signal(2, 0.4) == pytest.approx(2 * 0.16 - 1)
    assert count_signal(3, 0.5) == pytest.approx(-0.75)


# ----------------------------------------------------------------- proxy
def test_proxy_hand_value_all_signals():
    obs = ProxyObservables(task_progress=0.6, rework_count=1, verifier_rejections=2,
                           tool_misuse=1, engagement=-0.2)
    # rework: 2*0.3 - 1 = -0.4; rejections: 2*0.16 - 1 = -0.68; misuse: 2*0.5 - 1 = 0
    # verifier = (-0.68 + 0) / 2 = -0.34
    # v_hat = 0.4*0.6 + 0.2*(-0.4) + 0.2*(-0.34) + 0.2*(-0.2) = 0.24 - 0.08 - 0.068 - 0.04
    v_hat, p = ProxyComputer().compute_labels(obs)
    assert v_hat == pytest.approx(0.052)
    assert p == pytest.approx(1 / (1 + math.exp(-2 * 0.052)))


def test_proxy_clamps_and_renormalises():
    pc = ProxyComputer(ProxyWeights(task_progress=2.0, rework=0.0, verifier=0.0,
                                    engagement=0.0), k=1.0)
    # weights renormalised to (1, 0, 0, 0); progress 3.0 clamped to 1
    v_hat, p = pc.compute_arrays([3.0, -0.5], [0, 9], [0, 0], [0, 0], [0.0, 0.0])
    assert v_hat.tolist() == [1.0, -0.5]
    assert p[0] == pytest.approx(sigmoid(1.0))


def test_proxy_rejects_bad_input():
    with pytest.raises(ValueError, match="rework_decay"):
        ProxyComputer(rework_decay=1.5)
    with pytest.raises(ValueError, match="non-zero"):
        ProxyWeights(task_progress=0, rework=0, verifier=0, engagement=0)
    with pytest.raises(ValueError, match="count signals"):
        ProxyComputer().compute_labels(ProxyObservables(rework_count=-1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(finite, st.integers(0, 200), st.integers(0, 200),
                          st.integers(0, 200), finite), min_size=1, max_size=30),
       st.floats(0.01, 20))
def test_proxy_outputs_bounded(rows, k):
    prog, rw, rej, mis, eng = map(np.array, zip(*rows))
    v_hat, p = ProxyComputer(k=k).compute_arrays(prog, rw, rej, mis, eng)
    assert np.all((v_hat >= -1) & (v_hat <= 1))
    assert np.all((p >= 0) & (p <= 1))


def test_vectorised_equals_scalar():
    rng = np.random.default_rng(0)
    pc = ProxyComputer()
    cols = (rng.uniform(-1, 1, 50), rng.integers(0, 5, 50), rng.integers(0, 4, 50),
            rng.integers(0, 3, 50), rng.uniform(-1, 1, 50))
    v_hat, p = pc.compute_arrays(*cols)
    for i in range(50):
        o = ProxyObservables(task_progress=cols[0][i], rework_count=int(cols[1][i]),
                             verifier_rejections=int(cols[2][i]), tool_misuse=int(cols[3][i]),
                             engagement=cols[4][i])
        assert pc.compute_labels(o) == (pytest.approx(v_hat[i]), pytest.approx(p[i]))


def test_calibration_recovers_k_and_bias():
    rng = np.random.default_rng(1)
    v_hat = rng.uniform(-1, 1, 40_000)
    v = np.where(rng.random(40_000) < sigmoid(1.2 * v_hat + 0.3), 1, -1)
    res = calibrate(v_hat, v)
    assert res.k == pytest.approx(1.2, abs=0.08) and res.bias == pytest.approx(0.3, abs=0.05)
    assert res.log_loss_after <= res.log_loss_before
    with pytest.raises(ValueError, match="at least one"):
        calibrate([], [])


# ----------------------------------------------------------------- payoffs
def test_payoff_hand_values_defaults():
    eng = SoftPayoffEngine()
    # p = 0.75: S = 0.75*2 - 0.25*1 = 1.25; E = 0.25*2 = 0.5
    assert eng.expected_surplus(0.75) == pytest.approx(1.25)
    assert eng.expected_harm(0.75) == pytest.approx(0.5)
    # pi_a = 0.5*1.25 - 0.2 - 0.1 - 0*0.5 + 1.0*0.25 = 0.575
    assert eng.payoff_initiator(0.75, tau=0.2, c_a=0.1, r_a=0.25) == pytest.approx(0.575)
    # pi_b = 0.5*1.25 + 0.2 - 0.05 - 0 + 1.0*0 = 0.775
    assert eng.payoff_counterparty(0.75, tau=0.2, c_b=0.05) == pytest.approx(0.775)
    assert eng.break_even_p == pytest.approx(1 / 3)
    assert eng.social_break_even_p == pytest.approx(3 / 5)


def test_payoff_hand_values_externality_weights():
    cfg = PayoffConfig(s_plus=3, s_minus=1.5, h=2.5, theta=0.6, rho_a=0.1, rho_b=0.2,
                       w_rep=2.0)
    eng = SoftPayoffEngine(cfg)
    # p = 0.4: S = 1.2 - 0.9 = 0.3; E = 0.6*2.5 = 1.5
    # pi_a = 0.6*0.3 - 0 - 0 - 0.1*1.5 + 2*(-0.1) = 0.18 - 0.15 - 0.2 = -0.17
    # pi_b = 0.4*0.3 + 0 - 0 - 0.2*1.5 + 2*0 = 0.12 - 0.3 = -0.18
    pi_a, pi_b = eng.payoffs(0.4, r_a=-0.1)
    assert pi_a == pytest.approx(-0.17) and pi_b == pytest.approx(-0.18)
    assert eng.payoff_initiator(0.4, r_a=-0.1) == pytest.approx(pi_a)
    # realized: v = -1 -> p = 0: S = -1.5, E = 2.5
    ra, rb = eng.realized_payoffs(-1)
    assert ra == pytest.approx(0.6 * -1.5 - 0.1 * 2.5)
    assert rb == pytest.approx(0.4 * -1.5 - 0.2 * 2.5)


payoff_cfgs = st.builds(PayoffConfig, s_plus=st.floats(0, 10), s_minus=st.floats(0, 10),
                        h=st.floats(0, 10), theta=unit, rho_a=st.floats(0, 2),
                        rho_b=st.floats(0, 2), w_rep=st.floats(-3, 3))


@settings(max_examples=300, deadline=None)
@given(payoff_cfgs, unit, st.floats(-5, 5), st.floats(0, 5), st.floats(0, 5),
       st.floats(-1, 1), st.floats(-1, 1))
def test_payoffs_sum_to_surplus_minus_costs(cfg, p, tau, c_a, c_b, r_a, r_b):
    eng = SoftPayoffEngine(cfg)
    pi_a, pi_b = eng.payoffs(p, tau, c_a, c_b, r_a, r_b)
    s, e = eng.expected_surplus(p), eng.expected_harm(p)
    expected = s - c_a - c_b - (cfg.rho_a + cfg.rho_b) * e + cfg.w_rep * (r_a + r_b)
    assert pi_a + pi_b == pytest.approx(float(expected), abs=1e-9)
    assert pi_a == pytest.approx(float(eng.payoff_initiator(p, tau, c_a, r_a)), abs=1e-12)
    assert pi_b == pytest.approx(float(eng.payoff_counterparty(p, tau, c_b, r_b)), abs=1e-12)


def test_payoff_config_rejects_bad_values():
    with pytest.raises(ValueError, match="theta"):
        PayoffConfig(theta=1.5)
    with pytest.raises(ValueError, match="s_plus"):
        PayoffConfig(s_plus=-1)


# ----------------------------------------------------------------- records
def test_records_round_trip_through_batch():
    rng = np.random.default_rng(3)
    n = 7
    b = InteractionBatch.from_columns({
        "initiator": rng.integers(0, 4, n), "counterparty": rng.integers(0, 4, n),
        "kind": rng.integers(0, 5, n), "accepted": rng.random(n) < 0.5,
        "v": np.where(rng.random(n) < 0.5, 1, -1), "p": rng.random(n),
        "v_hat": rng.uniform(-1, 1, n), "rework_count": rng.integers(0, 3, n),
        "payoff_a": rng.normal(size=n), "step": np.arange(n)})
    names = [f"agent_{i}" for i in range(4)]
    recs = b.to_records(names)
    assert all(isinstance(r, SoftInteraction) for r in recs)
    back = InteractionBatch.from_records(recs, {a: i for i, a in enumerate(names)})
    assert back.equals(b)
    assert InteractionBatch.concat([b, b]).select(np.arange(n, 2 * n)).equals(b)


def test_soft_interaction_validates():
    r = SoftInteraction(initiator="a", counterparty="b", kind="vote", p=0.3)
    assert r.kind is InteractionType.VOTE
    with pytest.raises(ValueError, match="allowed"):
        SoftInteraction(initiator="a", counterparty="b", kind="bribe")
    with pytest.raises(ValueError):
        SoftInteraction(initiator="a", counterparty="b", p=1.5)
    with pytest.raises(ValueError, match="unknown interaction fields"):
        InteractionBatch.from_columns({"colour": [1]})


def test_vectorised_proxy_rejects_bad_counts():
    pc = ProxyComputer()
    with pytest.raises(ValueError, match="rework_count must be >= 0"):
        pc.compute_arrays([0.1], [-1], [0], [0], [0.0])
    with pytest.raises(ValueError, match="tool_misuse must be whole counts"):
        pc.compute_arrays([0.1], [0], [0], [1.7], [0.0])
    v_hat, _ = pc.compute_arrays([0.1], [0], [0], [1.0], [0.0])  # whole floats are fine
    assert v_hat.shape == (1,)
