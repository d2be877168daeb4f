"""Distributional-safety metrics over batches of soft-labelled interactions.

Every interaction carries a soft label ``p = P(v = +1)`` in ``[0, 1]`` (``v`` in ``{-1, +1}`` is
the hidden truth, known to the simulator), an ``accepted`` flag, and payoffs for its initiator
and counterparty. All functions here are pure, vectorised numpy functions of array-likes (no
Python loop runs over records), safe on empty / all-accepted / all-rejected inputs, and silent
(no numpy ``RuntimeWarning``): where a quantity is undefined (an empty selection: nothing
accepted, no rejected, an empty bin, one class only, empty input) they return
``float('nan')``, and only there. Scalar results are Python ``float``.

Input rule, the same for every function: ``p`` must be numbers in ``[0, 1]`` (bools count as
0/1; ``nan``, values outside ``[0, 1]`` and strings are errors), and ``accepted`` must be
booleans or numbers exactly 0 or 1 (``0.3``, ``2``, ``nan`` or strings are errors). A violation
raises ``ValueError`` naming the argument and an offending value; the check is one vectorised
pass (a min and a max) per argument per call.

Notation: ``A`` = accepted, ``R`` = rejected, ``t`` = threshold, ``y = 1[v > 0]`` (``v`` may be
``±1`` ints, ``0/1`` ints or bools), ``h = 1[p >= t]`` (hard label), ``N`` = number of records.

Selection / quality metrics
    - ``toxicity``                  ``E[1 - p | A]``
    - ``hard_toxicity``             ``P(p < t | A)``
    - ``quality_gap``               ``E[p | A] - E[p | R]`` (negative = adverse selection)
    - ``hard_quality_gap``          ``E[h | A] - E[h | R]``
    - ``conditional_loss``          ``E[payoff | A] - E[payoff]``
    - ``spread``                    ``(s_plus + s_minus) * (E[p] - E[p | A])``
    - ``hard_spread``               ``(s_plus + s_minus) * (E[h] - E[h | A])``
    - ``participation_by_quality``  ``{"high": P(A | p >= t), "low": P(A | p < t)}``
    - ``uncertain_fraction``        ``P(|p - 0.5| < band)``
    - ``quality_distribution``      histogram counts of ``p`` over ``bins`` equal bins of ``[0, 1]``
    - ``acceptance_rate``           ``P(A)``
    - ``welfare``                   ``sum(payoff_initiator + payoff_counterparty)`` (over ``A``
      when ``accepted`` is given)

Calibration metrics (need the truth ``v``)
    - ``brier_score``               ``mean((p - y)^2)``
    - ``hard_brier_score``          ``mean((h - y)^2)``
    - ``hard_accuracy``             ``mean(h == y)``
    - ``expected_calibration_error`` ``sum_b (n_b / N) * |mean_b(p) - mean_b(y)|``
    - ``calibration_curve``         per non-empty bin: ``(mean_b(p), mean_b(y), n_b)``
    - ``log_loss``                  ``-mean(y log p' + (1 - y) log(1 - p'))``, ``p' = clip(p, eps,
      1 - eps)``
    - ``auc``                       ``(sum of ranks of positives - n1 (n1 + 1) / 2) / (n1 n0)``
      (Mann-Whitney, average ranks for ties)

Distribution / inequality metrics
    - ``variance``                  ``mean((x - mean(x))^2)`` (population, ``ddof = 0``)
    - ``coefficient_of_variation``  ``std(x) / |mean(x)|`` (population ``std``)
    - ``gini``                      ``sum_ij |x_i - x_j| / (2 N^2 mean(x))`` after shifting ``x``
      by ``-min(x)`` when any value is negative
    - ``payoff_by_group``           ``{group: mean(agent_payoff_totals[group_labels == group])}``
    - ``sum_by_agent``              ``bincount(agent_idx, weights=values, minlength=n_agents)``

Summaries
    - ``soft_metrics``              one flat ``dict[str, float]`` of every scalar metric the
      given inputs allow (see its docstring for the keys)
    - ``MetricsReporter``           ``compute`` (delegates to ``soft_metrics``) and a
      ``metric | soft | hard`` text table
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "MetricsReporter",
    "acceptance_rate",
    "auc",
    "brier_score",
    "calibration_curve",
    "coefficient_of_variation",
    "conditional_loss",
    "expected_calibration_error",
    "gini",
    "hard_accuracy",
    "hard_brier_score",
    "hard_quality_gap",
    "hard_spread",
    "hard_toxicity",
    "log_loss",
    "participation_by_quality",
    "payoff_by_group",
    "quality_distribution",
    "quality_gap",
    "soft_metrics",
    "spread",
    "sum_by_agent",
    "toxicity",
    "uncertain_fraction",
    "variance",
    "welfare",
]

NAN = float("nan")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _floats(x: ArrayLike) -> np.ndarray:
    """1-D float64 view/copy of ``x``."""
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _sample(arr: np.ndarray, bad: np.ndarray) -> str:
    """The first offending value of ``arr`` (and how many there are) for a message."""
    values = arr[bad]
    more = f" (and {values.size - 1} more)" if values.size > 1 else ""
    return f"{values[0].item()!r}{more}"


def _is_unit(x: object) -> bool:
    return isinstance(x, (bool, int, float, np.bool_, np.integer, np.floating)) \
        and 0 <= x <= 1


def _is_flag(x: object) -> bool:
    return isinstance(x, (bool, int, float, np.bool_, np.integer, np.floating)) \
        and x in (0, 1)


def _first_odd(arr: np.ndarray, ok) -> object:
    """The first element of a non-numeric array that ``ok`` rejects (error messages only)."""
    for x in arr.reshape(-1).tolist():
        if not ok(x):
            return x
    return arr.reshape(-1)[0].item() if arr.size else arr


def _probs(p: ArrayLike, name: str = "p") -> np.ndarray:
    """``p`` as a 1-D float64 array, checked: numbers (bools allowed) in ``[0, 1]``, no nan."""
    arr = np.asarray(p)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numbers in [0, 1] (soft labels); got "
                         f"{_first_odd(arr, _is_unit)!r} (dtype {arr.dtype})")
    pa = arr.astype(np.float64, copy=False).reshape(-1)
    if pa.size and not (pa.min() >= 0.0 and pa.max() <= 1.0):  # nan fails both
        raise ValueError(f"{name} must lie in [0, 1] (soft labels); got "
                         f"{_sample(pa, ~((pa >= 0.0) & (pa <= 1.0)))}")
    return pa


def _bools(x: ArrayLike, name: str = "accepted") -> np.ndarray:
    """1-D bool view/copy of ``x``, checked: bools, or numbers that are exactly 0 or 1."""
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "b":
        return arr.reshape(-1)
    if kind not in "iuf":
        raise ValueError(f"{name} must be booleans (or 0/1); got "
                         f"{_first_odd(arr, _is_flag)!r} (dtype {arr.dtype})")
    flat = arr.reshape(-1)
    if flat.size and not (flat.min() >= 0 and flat.max() <= 1):  # nan fails both
        raise ValueError(f"{name} must be booleans (or 0/1); got "
                         f"{_sample(flat, ~((flat == 0) | (flat == 1)))}")
    if kind == "f" and flat.size:
        fraction = (flat != 0) & (flat != 1)
        if fraction.any():
            raise ValueError(f"{name} must be booleans (or 0/1); got {_sample(flat, fraction)}")
    return flat != 0


def _labels(v: ArrayLike) -> np.ndarray:
    """Positive-class indicator ``y = 1[v > 0]`` as a 1-D bool array."""
    return (np.asarray(v) > 0).reshape(-1)


def _check_same_length(**arrays: np.ndarray) -> None:
    sizes = {name: a.size for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"length mismatch: {sizes}")


def _check_bins(bins: int) -> int:
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    return bins


def _mean(x: np.ndarray) -> float:
    """Mean of a 1-D array; nan when empty (no warning)."""
    if x.size == 0:
        return NAN
    return float(x.sum(dtype=np.float64) / x.size)


def _cond_mean(x: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``x`` over ``mask``; nan when the mask selects nothing (no warning)."""
    n = int(np.count_nonzero(mask))
    if n == 0:
        return NAN
    return float(x[mask].sum(dtype=np.float64) / n)


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each ``p`` over ``[0, 1]``; ``p = 1`` goes to the last bin.

    ``p`` is checked to lie in ``[0, 1]`` by the callers; the clip guards rounding only.
    """
    idx = np.floor(np.clip(p, 0.0, 1.0) * bins)
    return np.minimum(idx, bins - 1).astype(np.intp)


# --------------------------------------------------------------------------------------------
# selection / quality metrics
# --------------------------------------------------------------------------------------------


def toxicity(p: ArrayLike, accepted: ArrayLike) -> float:
    """Expected harm among accepted interactions, ``E[1 - p | accepted]``.

    Args:
        p: Soft labels ``P(v = +1)`` in ``[0, 1]``.
        accepted: Acceptance flags (bool or 0/1), same length as ``p``.

    Returns:
        The toxicity in ``[0, 1]``; nan when nothing was accepted (including empty input).

    Example:
        >>> round(toxicity([0.9, 0.2, 0.6], [1, 0, 1]), 4)
        0.25
    """
    pa, acc = _probs(p), _bools(accepted)
    _check_same_length(p=pa, accepted=acc)
    return _cond_mean(1.0 - pa, acc)


def hard_toxicity(p: ArrayLike, accepted: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of accepted interactions whose soft label is below ``threshold``.

    ``P(p < threshold | accepted)`` — the hard-label twin of :func:`toxicity`.

    Args:
        p: Soft labels in ``[0, 1]``.
        accepted: Acceptance flags, same length as ``p``.
        threshold: Hard-label cut; ``p >= threshold`` counts as beneficial.

    Returns:
        A fraction in ``[0, 1]``; nan when nothing was accepted.

    Example:
        >>> hard_toxicity([0.9, 0.2, 0.4], [1, 0, 1])
        0.5
    """
    pa, acc = _probs(p), _bools(accepted)
    _check_same_length(p=pa, accepted=acc)
    return _cond_mean((pa < threshold).astype(np.float64), acc)


def quality_gap(p: ArrayLike, accepted: ArrayLike) -> float:
    """Quality gap ``E[p | accepted] - E[p | rejected]``.

    Negative values signal adverse selection (worse interactions get accepted). Any values in
    ``[0, 1]`` can stand in for ``p``, e.g. the truth indicator ``(v == 1)`` or hard labels.

    Args:
        p: Per-interaction values in ``[0, 1]`` (soft labels, indicators, ...).
        accepted: Acceptance flags, same length as ``p``.

    Returns:
        The gap (in ``[-1, 1]`` for values in ``[0, 1]``); nan when either the accepted or the
        rejected set is empty.

    Example:
        >>> round(quality_gap([0.9, 0.2, 0.6], [1, 0, 1]), 4)
        0.55
    """
    pa, acc = _probs(p), _bools(accepted)
    _check_same_length(p=pa, accepted=acc)
    return _cond_mean(pa, acc) - _cond_mean(pa, ~acc)


def hard_quality_gap(p: ArrayLike, accepted: ArrayLike, threshold: float = 0.5) -> float:
    """Quality gap on hard labels: ``E[h | accepted] - E[h | rejected]``, ``h = 1[p >= t]``.

    Args:
        p: Soft labels in ``[0, 1]``.
        accepted: Acceptance flags, same length as ``p``.
        threshold: Hard-label cut.

    Returns:
        The gap in ``[-1, 1]``; nan when either side is empty.

    Example:
        >>> hard_quality_gap([0.9, 0.2, 0.4, 0.7], [1, 1, 0, 0])
        0.0
    """
    pa = _probs(p)
    return quality_gap((pa >= threshold).astype(np.float64), accepted)


def conditional_loss(payoff: ArrayLike, accepted: ArrayLike) -> float:
    """Selection effect on one side's payoff: ``E[payoff | accepted] - E[payoff]``.

    Call once per side (initiator payoffs, counterparty payoffs).

    Args:
        payoff: Per-interaction payoff of one side.
        accepted: Acceptance flags, same length as ``payoff``.

    Returns:
        The difference; nan when nothing was accepted (including empty input).

    Example:
        >>> conditional_loss([3.0, -1.0, 1.0], [1, 0, 1])
        1.0
    """
    pay, acc = _floats(payoff), _bools(accepted)
    _check_same_length(payoff=pay, accepted=acc)
    return _cond_mean(pay, acc) - _mean(pay)


def spread(
    p: ArrayLike, accepted: ArrayLike, s_plus: float = 2.0, s_minus: float = 1.0
) -> float:
    """Quality spread ``(s_plus + s_minus) * (E[p] - E[p | accepted])``.

    Positive when the accepted pool is worse than the offered pool, in units of soft surplus
    (``S = p s_plus - (1 - p) s_minus`` is linear in ``p`` with slope ``s_plus + s_minus``).

    Args:
        p: Soft labels in ``[0, 1]``.
        accepted: Acceptance flags, same length as ``p``.
        s_plus: Surplus of a beneficial interaction.
        s_minus: Loss of a harmful interaction.

    Returns:
        The spread; nan when nothing was accepted.

    Example:
        >>> round(spread([0.9, 0.2, 0.6], [1, 0, 1]), 4)
        -0.55
    """
    pa, acc = _probs(p), _bools(accepted)
    _check_same_length(p=pa, accepted=acc)
    return (s_plus + s_minus) * (_mean(pa) - _cond_mean(pa, acc))


def hard_spread(
    p: ArrayLike,
    accepted: ArrayLike,
    s_plus: float = 2.0,
    s_minus: float = 1.0,
    threshold: float = 0.5,
) -> float:
    """Spread on hard labels: ``(s_plus + s_minus) * (E[h] - E[h | accepted])``.

    Args:
        p: Soft labels in ``[0, 1]``.
        accepted: Acceptance flags, same length as ``p``.
        s_plus: Surplus of a beneficial interaction.
        s_minus: Loss of a harmful interaction.
        threshold: Hard-label cut, ``h = 1[p >= threshold]``.

    Returns:
        The spread; nan when nothing was accepted.

    Example:
        >>> hard_spread([0.9, 0.2, 0.6, 0.1], [1, 0, 0, 1])
        0.0
    """
    pa = _probs(p)
    return spread((pa >= threshold).astype(np.float64), accepted, s_plus, s_minus)


def participation_by_quality(
    p: ArrayLike, accepted: ArrayLike, threshold: float = 0.5
) -> dict[str, float]:
    """Acceptance rate split by quality.

    Args:
        p: Soft labels in ``[0, 1]``.
        accepted: Acceptance flags, same length as ``p``.
        threshold: Cut between the ``"high"`` (``p >= threshold``) and ``"low"`` groups.

    Returns:
        ``{"high": P(accepted | p >= t), "low": P(accepted | p < t)}``; a group's value is nan
        when the group is empty.

    Example:
        >>> participation_by_quality([0.9, 0.8, 0.2], [1, 0, 0])
        {'high': 0.5, 'low': 0.0}
    """
    pa, acc = _probs(p), _bools(accepted)
    _check_same_length(p=pa, accepted=acc)
    high = pa >= threshold
    accf = acc.astype(np.float64)
    return {"high": _cond_mean(accf, high), "low": _cond_mean(accf, ~high)}


def uncertain_fraction(p: ArrayLike, band: float = 0.2) -> float:
    """Fraction of soft labels close to 0.5: ``P(|p - 0.5| < band)`` (strict inequality).

    Args:
        p: Soft labels in ``[0, 1]``.
        band: Half-width of the uncertain band around 0.5.

    Returns:
        A fraction in ``[0, 1]``; nan for empty input.

    Example:
        >>> uncertain_fraction([0.5, 0.65, 0.9, 0.1])
        0.5
    """
    pa = _probs(p)
    return _mean((np.abs(pa - 0.5) < band).astype(np.float64))


def quality_distribution(p: ArrayLike, bins: int = 10) -> np.ndarray:
    """Histogram counts of soft labels over ``[0, 1]`` in ``bins`` equal-width bins.

    Bins are half-open ``[lo, hi)`` except the last, which also holds ``p = 1.0``.

    Args:
        p: Soft labels in ``[0, 1]``.
        bins: Number of bins (>= 1).

    Returns:
        Integer counts of shape ``(bins,)`` (all zeros for empty input).

    Example:
        >>> quality_distribution([0.05, 0.5, 0.55, 1.0], bins=4).tolist()
        [1, 0, 2, 1]
    """
    bins = _check_bins(bins)
    pa = _probs(p)
    return np.bincount(_bin_index(pa, bins), minlength=bins).astype(np.int64)


def acceptance_rate(accepted: ArrayLike) -> float:
    """Fraction of interactions accepted.

    Args:
        accepted: Acceptance flags (bool or 0/1).

    Returns:
        ``P(accepted)`` in ``[0, 1]``; nan for empty input.

    Example:
        >>> acceptance_rate([True, False, True, True])
        0.75
    """
    return _mean(_bools(accepted).astype(np.float64))


def welfare(
    payoff_initiator: ArrayLike,
    payoff_counterparty: ArrayLike,
    accepted: ArrayLike | None = None,
) -> float:
    """Total payoff summed over both sides of every (accepted) interaction.

    Args:
        payoff_initiator: Per-interaction initiator payoff.
        payoff_counterparty: Per-interaction counterparty payoff, same length.
        accepted: Optional acceptance flags; when given only accepted interactions count.

    Returns:
        ``sum(payoff_initiator + payoff_counterparty)`` (over accepted rows when ``accepted``
        is given). A sum is defined on empty input: it returns ``0.0`` there, never nan.

    Example:
        >>> welfare([1.0, 2.0, 5.0], [0.5, -1.0, 5.0], accepted=[1, 1, 0])
        2.5
    """
    a, b = _floats(payoff_initiator), _floats(payoff_counterparty)
    _check_same_length(payoff_initiator=a, payoff_counterparty=b)
    total = a + b
    if accepted is not None:
        acc = _bools(accepted)
        _check_same_length(payoff_initiator=a, accepted=acc)
        total = total[acc]
    return float(total.sum(dtype=np.float64))


# --------------------------------------------------------------------------------------------
# calibration metrics
# --------------------------------------------------------------------------------------------


def brier_score(p: ArrayLike, v: ArrayLike) -> float:
    """Brier score ``mean((p - y)^2)`` with ``y = 1[v > 0]``.

    Args:
        p: Soft labels in ``[0, 1]``.
        v: Truth, ``±1`` ints or ``0/1`` / bool (``v > 0`` is the positive class).

    Returns:
        The score in ``[0, 1]`` (lower is better); nan for empty input.

    Example:
        >>> round(brier_score([0.9, 0.2, 0.6], [1, -1, -1]), 4)
        0.1367
    """
    pa, y = _probs(p), _labels(v)
    _check_same_length(p=pa, v=y)
    return _mean((pa - y) ** 2)


def hard_brier_score(p: ArrayLike, v: ArrayLike, threshold: float = 0.5) -> float:
    """Brier score of the hard labels ``h = 1[p >= threshold]`` (= error rate).

    Args:
        p: Soft labels in ``[0, 1]``.
        v: Truth, ``±1`` ints or ``0/1`` / bool.
        threshold: Hard-label cut.

    Returns:
        ``mean((h - y)^2)`` in ``[0, 1]``; nan for empty input.

    Example:
        >>> round(hard_brier_score([0.9, 0.2, 0.6], [1, -1, -1]), 4)
        0.3333
    """
    pa = _probs(p)
    return brier_score((pa >= threshold).astype(np.float64), v)


def hard_accuracy(p: ArrayLike, v: ArrayLike, threshold: float = 0.5) -> float:
    """Accuracy of the hard labels: ``mean(1[p >= threshold] == y)``.

    Args:
        p: Soft labels in ``[0, 1]``.
        v: Truth, ``±1`` ints or ``0/1`` / bool.
        threshold: Hard-label cut.

    Returns:
        Accuracy in ``[0, 1]``; nan for empty input.

    Example:
        >>> hard_accuracy([0.9, 0.2, 0.6, 0.4], [1, -1, -1, 1])
        0.5
    """
    pa, y = _probs(p), _labels(v)
    _check_same_length(p=pa, v=y)
    return _mean(((pa >= threshold) == y).astype(np.float64))


def expected_calibration_error(p: ArrayLike, v: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins of ``[0, 1]``.

    ``ECE = sum_b (n_b / N) |mean_b(p) - mean_b(y)| = sum_b |sum_b(p) - sum_b(y)| / N``; bins
    are as in :func:`quality_distribution` (``p = 1`` in the last bin), empty bins contribute 0.

    Args:
        p: Soft labels in ``[0, 1]``.
        v: Truth, ``±1`` ints or ``0/1`` / bool.
        bins: Number of bins (>= 1).

    Returns:
        ECE in ``[0, 1]``; nan for empty input.

    Example:
        >>> round(expected_calibration_error([0.2, 0.4, 0.8], [-1, 1, 1], bins=2), 4)
        0.2
    """
    bins = _check_bins(bins)
    pa, y = _probs(p), _labels(v)
    _check_same_length(p=pa, v=y)
    if pa.size == 0:
        return NAN
    idx = _bin_index(pa, bins)
    sum_p = np.bincount(idx, weights=pa, minlength=bins)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=bins)
    return float(np.abs(sum_p - sum_y).sum() / pa.size)


def calibration_curve(
    p: ArrayLike, v: ArrayLike, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability curve over equal-width bins of ``[0, 1]``, non-empty bins only.

    The x-coordinate is the **mean predicted p within each non-empty bin** (not the bin
    centre). Bins are as in :func:`quality_distribution`.

    Args:
        p: Soft labels in ``[0, 1]``.
        v: Truth, ``±1`` ints or ``0/1`` / bool.
        bins: Number of bins (>= 1).

    Returns:
        ``(mean_p, frac_positive, counts)``: float, float and int arrays, one entry per
        non-empty bin in increasing bin order (all three empty for empty input).

    Example:
        >>> mean_p, frac, counts = calibration_curve([0.2, 0.4, 0.8], [-1, 1, 1], bins=2)
        >>> [round(m, 4) for m in mean_p.tolist()], frac.tolist(), counts.tolist()
        ([0.3, 0.8], [0.5, 1.0], [2, 1])
    """
    bins = _check_bins(bins)
    pa, y = _probs(p), _labels(v)
    _check_same_length(p=pa, v=y)
    idx = _bin_index(pa, bins)
    counts = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=pa, minlength=bins)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=bins)
    nonempty = counts > 0
    n = counts[nonempty]
    return sum_p[nonempty] / n, sum_y[nonempty] / n, n.astype(np.int64)


def log_loss(p: ArrayLike, v: ArrayLike, eps: float = 1e-12) -> float:
    """Binary cross-entropy ``-mean(y log p' + (1 - y) log(1 - p'))``, ``p' = clip(p, eps, 1-eps)``.

    Args:
        p: Soft labels in ``[0, 1]``.
        v: Truth, ``±1`` ints or ``0/1`` / bool.
        eps: Clipping margin keeping the logs finite.

    Returns:
        The mean log loss (>= 0, at most ``-log(eps)``); nan for empty input.

    Example:
        >>> round(log_loss([0.5, 0.5], [1, -1]), 4)
        0.6931
    """
    pa, y = _probs(p), _labels(v)
    _check_same_length(p=pa, v=y)
    if pa.size == 0:
        return NAN
    pc = np.clip(pa, eps, 1.0 - eps)
    q = np.where(y, pc, 1.0 - pc)
    return float(-np.log(q).sum() / pa.size)


def auc(p: ArrayLike, v: ArrayLike) -> float:
    """ROC AUC by the Mann-Whitney rank formula, ties given average ranks.

    ``AUC = (R_1 - n_1 (n_1 + 1) / 2) / (n_1 n_0)`` where ``R_1`` is the rank sum of the
    positives; equals ``P(p_pos > p_neg) + 0.5 P(p_pos == p_neg)``.

    Args:
        p: Scores (soft labels).
        v: Truth, ``±1`` ints or ``0/1`` / bool.

    Returns:
        AUC in ``[0, 1]``; nan when only one class (or none) is present.

    Example:
        >>> auc([0.1, 0.4, 0.35, 0.8], [-1, -1, 1, 1])
        0.75
    """
    pa, y = _probs(p), _labels(v)
    _check_same_length(p=pa, v=y)
    n1 = int(np.count_nonzero(y))
    n0 = int(y.size - n1)
    if n1 == 0 or n0 == 0:
        return NAN
    _, inverse, counts = np.unique(pa, return_inverse=True, return_counts=True)
    # average (1-based) rank of each tie group: (#strictly smaller) + (count + 1) / 2
    below = np.cumsum(counts) - counts
    avg_rank = below + (counts + 1) / 2.0
    rank_sum = float(avg_rank[inverse.reshape(-1)][y].sum())
    u = rank_sum - n1 * (n1 + 1) / 2.0
    return float(min(max(u / (float(n1) * float(n0)), 0.0), 1.0))


# --------------------------------------------------------------------------------------------
# distribution / inequality metrics
# --------------------------------------------------------------------------------------------


def variance(x: ArrayLike) -> float:
    """Population variance (``ddof = 0``), ``mean((x - mean(x))^2)``.

    Args:
        x: Values.

    Returns:
        The variance; nan for empty input (0.0 for a single value).

    Example:
        >>> variance([1.0, 2.0, 3.0, 4.0])
        1.25
    """
    xa = _floats(x)
    m = _mean(xa)
    if math.isnan(m):
        return NAN
    return _mean((xa - m) ** 2)


def coefficient_of_variation(x: ArrayLike) -> float:
    """Coefficient of variation ``std(x) / |mean(x)|`` with the population std (``ddof = 0``).

    Args:
        x: Values.

    Returns:
        The ratio (>= 0); nan for empty input or when ``mean(x) == 0``.

    Example:
        >>> coefficient_of_variation([2.0, 4.0])
        0.3333333333333333
    """
    xa = _floats(x)
    m = _mean(xa)
    if math.isnan(m) or m == 0.0:
        return NAN
    return math.sqrt(variance(xa)) / abs(m)


def gini(x: ArrayLike) -> float:
    """Gini coefficient ``sum_ij |x_i - x_j| / (2 N^2 mean(x))``.

    If any value is negative, all values are first shifted by ``-min(x)`` so the minimum is 0
    (the Gini of a shifted vector measures relative inequality above the worst-off). Computed
    from the sorted values as ``sum_i (2i - N - 1) x_(i) / (N sum(x))``.

    Args:
        x: Values (e.g. per-agent payoff totals).

    Returns:
        Gini in ``[0, 1)`` (at most ``(N - 1) / N``); 0.0 when all values are equal (all zero
        included); nan for empty input.

    Example:
        >>> gini([1.0, 2.0, 3.0, 4.0])
        0.25
        >>> gini([5.0, 5.0, 5.0])
        0.0
    """
    xa = _floats(x)
    n = xa.size
    if n == 0:
        return NAN
    xs = np.sort(xa)
    if xs[0] < 0.0:
        xs = xs - xs[0]
    total = float(xs.sum())
    if total <= 0.0:
        return 0.0
    weights = 2.0 * np.arange(1, n + 1, dtype=np.float64) - n - 1.0
    g = float(np.dot(weights, xs)) / (n * total)
    return float(min(max(g, 0.0), 1.0))


def payoff_by_group(
    agent_payoff_totals: ArrayLike, group_labels: Sequence[str]
) -> dict[str, float]:
    """Mean total payoff per agent, by agent group.

    Args:
        agent_payoff_totals: Total payoff of each agent, length ``n_agents``.
        group_labels: Group name of each agent, length ``n_agents``.

    Returns:
        ``{group: mean payoff of that group's agents}``, keys sorted; ``{}`` for no agents.

    Example:
        >>> payoff_by_group([1.0, 3.0, -2.0], ["honest", "honest", "adversarial"])
        {'adversarial': -2.0, 'honest': 2.0}
    """
    totals = _floats(agent_payoff_totals)
    labels = np.asarray(list(group_labels), dtype=str).reshape(-1)
    _check_same_length(agent_payoff_totals=totals, group_labels=labels)
    if totals.size == 0:
        return {}
    groups, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=totals, minlength=groups.size)
    counts = np.bincount(inverse, minlength=groups.size)
    return {str(g): float(s / c) for g, s, c in zip(groups, sums, counts, strict=True)}


def sum_by_agent(agent_idx: ArrayLike, values: ArrayLike, n_agents: int) -> np.ndarray:
    """Sum per-record values into per-agent totals with ``np.bincount``.

    Args:
        agent_idx: Agent index of each record, integers in ``[0, n_agents)``.
        values: Value of each record, same length.
        n_agents: Number of agents (length of the result).

    Returns:
        Float array of shape ``(n_agents,)`` (zeros for agents with no record).

    Raises:
        ValueError: On a length mismatch or an index outside ``[0, n_agents)``.

    Example:
        >>> sum_by_agent([0, 2, 0], [1.0, 2.0, 3.0], 3).tolist()
        [4.0, 0.0, 2.0]
    """
    idx = np.asarray(agent_idx).reshape(-1)
    vals = _floats(values)
    _check_same_length(agent_idx=idx, values=vals)
    if idx.size == 0:
        return np.zeros(int(n_agents), dtype=np.float64)
    idx = idx.astype(np.intp)
    if idx.min() < 0 or idx.max() >= n_agents:
        raise ValueError(f"agent_idx must lie in [0, {n_agents}), got [{idx.min()}, {idx.max()}]")
    return np.bincount(idx, weights=vals, minlength=int(n_agents)).astype(np.float64)


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------


def soft_metrics(
    p: ArrayLike,
    accepted: ArrayLike,
    v: ArrayLike | None = None,
    payoff_initiator: ArrayLike | None = None,
    payoff_counterparty: ArrayLike | None = None,
    s_plus: float = 2.0,
    s_minus: float = 1.0,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Every scalar metric the given inputs allow, as one flat ``dict[str, float]``.

    Keys (always, in this order):
        ``n_interactions``, ``n_accepted``, ``acceptance_rate``, ``toxicity``,
        ``hard_toxicity``, ``quality_gap``, ``hard_quality_gap``, ``spread``, ``hard_spread``,
        ``participation_high``, ``participation_low``, ``uncertain_fraction``, ``mean_p``,
        ``variance_p``, ``coefficient_of_variation_p``.

    Keys when ``v`` is given:
        ``truth_quality_gap`` (``quality_gap(1[v > 0], accepted)``), ``realized_harm_rate``
        (``P(v <= 0 | accepted)``, i.e. ``P(v = -1 | accepted)``), ``brier_score``,
        ``hard_brier_score``, ``hard_accuracy``, ``expected_calibration_error`` (10 bins),
        ``log_loss``, ``auc``.

    Keys when payoffs are given:
        ``conditional_loss_initiator`` (with ``payoff_initiator``),
        ``conditional_loss_counterparty`` (with ``payoff_counterparty``), ``welfare`` (with
        both; accepted interactions only).

    ``uncertain_fraction`` uses its default band 0.2; hard twins and the participation split
    use ``threshold``. Undefined values are nan (see each metric). Per-agent metrics
    (``gini``, ``payoff_by_group``) need agent indices and are not included.

    Args:
        p: Soft labels in ``[0, 1]``.
        accepted: Acceptance flags, same length as ``p``.
        v: Optional truth (``±1`` or ``0/1`` / bool).
        payoff_initiator: Optional per-interaction initiator payoffs.
        payoff_counterparty: Optional per-interaction counterparty payoffs.
        s_plus: Surplus of a beneficial interaction (for the spreads).
        s_minus: Loss of a harmful interaction (for the spreads).
        threshold: Hard-label cut.

    Returns:
        ``{key: float}`` with the keys above.

    Example:
        >>> m = soft_metrics([0.9, 0.2, 0.6], [1, 0, 1], v=[1, -1, -1])
        >>> m["n_accepted"], round(m["toxicity"], 4), m["realized_harm_rate"]
        (2.0, 0.25, 0.5)
    """
    pa, acc = _probs(p), _bools(accepted)
    _check_same_length(p=pa, accepted=acc)
    part = participation_by_quality(pa, acc, threshold)
    out: dict[str, float] = {
        "n_interactions": float(pa.size),
        "n_accepted": float(np.count_nonzero(acc)),
        "acceptance_rate": acceptance_rate(acc),
        "toxicity": toxicity(pa, acc),
        "hard_toxicity": hard_toxicity(pa, acc, threshold),
        "quality_gap": quality_gap(pa, acc),
        "hard_quality_gap": hard_quality_gap(pa, acc, threshold),
        "spread": spread(pa, acc, s_plus, s_minus),
        "hard_spread": hard_spread(pa, acc, s_plus, s_minus, threshold),
        "participation_high": part["high"],
        "participation_low": part["low"],
        "uncertain_fraction": uncertain_fraction(pa),
        "mean_p": _mean(pa),
        "variance_p": variance(pa),
        "coefficient_of_variation_p": coefficient_of_variation(pa),
    }
    if v is not None:
        y = _labels(v)
        _check_same_length(p=pa, v=y)
        out["truth_quality_gap"] = quality_gap(y.astype(np.float64), acc)
        out["realized_harm_rate"] = _cond_mean((~y).astype(np.float64), acc)
        out["brier_score"] = brier_score(pa, y)
        out["hard_brier_score"] = hard_brier_score(pa, y, threshold)
        out["hard_accuracy"] = hard_accuracy(pa, y, threshold)
        out["expected_calibration_error"] = expected_calibration_error(pa, y)
        out["log_loss"] = log_loss(pa, y)
        out["auc"] = auc(pa, y)
    pay_a = None if payoff_initiator is None else _floats(payoff_initiator)
    pay_b = None if payoff_counterparty is None else _floats(payoff_counterparty)
    if pay_a is not None:
        out["conditional_loss_initiator"] = conditional_loss(pay_a, acc)
    if pay_b is not None:
        out["conditional_loss_counterparty"] = conditional_loss(pay_b, acc)
    if pay_a is not None and pay_b is not None:
        out["welfare"] = welfare(pay_a, pay_b, acc)
    return {k: float(val) for k, val in out.items()}


#: soft metric key -> its hard-label twin key (shown on the same report row).
HARD_TWINS: dict[str, str] = {
    "toxicity": "hard_toxicity",
    "quality_gap": "hard_quality_gap",
    "spread": "hard_spread",
    "brier_score": "hard_brier_score",
}

_COUNT_KEYS = frozenset({"n_interactions", "n_accepted"})


def _fmt(key: str, value: float) -> str:
    if math.isnan(value):
        return "nan"
    if key in _COUNT_KEYS and float(value).is_integer():
        return str(int(value))
    return f"{value:.4f}"


class MetricsReporter:
    """Computes :func:`soft_metrics` with fixed settings and formats them as a text table.

    Args:
        threshold: Hard-label cut.
        s_plus: Surplus of a beneficial interaction.
        s_minus: Loss of a harmful interaction.

    Example:
        >>> rep = MetricsReporter()
        >>> rep.compute([0.9, 0.2], [1, 0])["acceptance_rate"]
        0.5
        >>> "toxicity (hard_toxicity)" in rep.report([0.9, 0.2], [1, 0])
        True
    """

    def __init__(self, threshold: float = 0.5, s_plus: float = 2.0, s_minus: float = 1.0):
        self.threshold = float(threshold)
        self.s_plus = float(s_plus)
        self.s_minus = float(s_minus)

    def compute(
        self,
        p: ArrayLike,
        accepted: ArrayLike,
        v: ArrayLike | None = None,
        payoff_initiator: ArrayLike | None = None,
        payoff_counterparty: ArrayLike | None = None,
    ) -> dict[str, float]:
        """Return :func:`soft_metrics` of the inputs under this reporter's settings."""
        return soft_metrics(
            p,
            accepted,
            v=v,
            payoff_initiator=payoff_initiator,
            payoff_counterparty=payoff_counterparty,
            s_plus=self.s_plus,
            s_minus=self.s_minus,
            threshold=self.threshold,
        )

    @staticmethod
    def format_metrics(metrics: Mapping[str, float]) -> str:
        """Format a metrics dict as a ``metric | soft | hard`` text table.

        A soft metric and its hard twin (see ``HARD_TWINS``) share one row labelled
        ``"soft_key (hard_key)"``; other metrics fill one column and show ``"-"`` in the other
        (keys starting with ``hard_`` go to the hard column). Every key appears in the text.
        """
        rows: list[tuple[str, str, str]] = []
        twinned = {h for s, h in HARD_TWINS.items() if s in metrics and h in metrics}
        for key, value in metrics.items():
            if key in twinned:
                continue
            hard_key = HARD_TWINS.get(key)
            if hard_key is not None and hard_key in twinned:
                rows.append(
                    (f"{key} ({hard_key})", _fmt(key, value), _fmt(hard_key, metrics[hard_key]))
                )
            elif key.startswith("hard_"):
                rows.append((key, "-", _fmt(key, value)))
            else:
                rows.append((key, _fmt(key, value), "-"))
        header = ("metric", "soft", "hard")
        w0 = max(len(header[0]), *(len(r[0]) for r in rows)) if rows else len(header[0])
        w1 = max(len(header[1]), *(len(r[1]) for r in rows)) if rows else len(header[1])
        w2 = max(len(header[2]), *(len(r[2]) for r in rows)) if rows else len(header[2])
        lines = [
            f"{header[0]:<{w0}} | {header[1]:>{w1}} | {header[2]:>{w2}}",
            f"{'-' * w0}-+-{'-' * w1}-+-{'-' * w2}",
        ]
        lines += [f"{a:<{w0}} | {b:>{w1}} | {c:>{w2}}" for a, b, c in rows]
        return "\n".join(lines)

    def report(
        self,
        p: ArrayLike,
        accepted: ArrayLike,
        v: ArrayLike | None = None,
        payoff_initiator: ArrayLike | None = None,
        payoff_counterparty: ArrayLike | None = None,
    ) -> str:
        """Compute the metrics and return them as a ``metric | soft | hard`` text table."""
        return self.format_metrics(
            self.compute(p, accepted, v, payoff_initiator, payoff_counterparty)
        )

    def print_report(
        self,
        p: ArrayLike,
        accepted: ArrayLike,
        v: ArrayLike | None = None,
        payoff_initiator: ArrayLike | None = None,
        payoff_counterparty: ArrayLike | None = None,
    ) -> None:
        """Print :meth:`report` to stdout."""
        print(self.report(p, accepted, v, payoff_initiator, payoff_counterparty))
