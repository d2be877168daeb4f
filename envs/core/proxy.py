"""Proxy: observable signals -> ``v_hat`` in [-1, 1] -> soft label ``p = P(v = +1)``.

The defaults reproduce the original soft-label sandbox (restated in ``docs/reference.md``):

* weights: task progress 0.4, rework 0.2, verifier 0.2, engagement 0.2, renormalised by the sum
  of absolute weights;
* a count signal ``n`` (rework requests, verifier rejections, tool-misuse flags) maps to
  ``2 * d**n - 1`` (``n = 0`` gives +1) with decay ``d`` = 0.3 rework, 0.4 rejections,
  0.5 misuse; the verifier signal is the mean of the rejection and the misuse signals;
* progress and engagement are clamped to [-1, 1]; ``v_hat`` is the weighted sum clamped to
  [-1, 1]; ``p = 1 / (1 + exp(-k * v_hat))`` with ``k = 2``.

Because our simulator knows the hidden truth ``v``, :func:`calibrate` fits ``k`` and a bias so
that ``p = sigmoid(k * v_hat + bias)`` matches ``P(v = +1)`` by maximum likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from envs.core.records import ProxyObservablesModel

#: the observable signals, as a pydantic model (one interaction)
ProxyObservables = ProxyObservablesModel


_W = 1e6  # bound on a weight's magnitude: their sum of absolute values stays finite


class ProxyWeights(BaseModel):
    """Weights of the four proxy signals (renormalised by the sum of their absolute values).

    Strict: finite numbers (ints accepted) in ``[-1e6, 1e6]``, at least one non-zero.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    task_progress: float = Field(0.4, ge=-_W, le=_W, description="weight of the task-progress "
                                 "signal")
    rework: float = Field(0.2, ge=-_W, le=_W, description="weight of the rework-count signal")
    verifier: float = Field(0.2, ge=-_W, le=_W, description="weight of the verifier signal")
    engagement: float = Field(0.2, ge=-_W, le=_W, description="weight of the engagement signal")

    @model_validator(mode="after")
    def _not_all_zero(self) -> ProxyWeights:
        if self.total == 0.0:
            raise ValueError("proxy weights: at least one weight must be non-zero; received "
                             "all zero")
        return self

    @property
    def total(self) -> float:
        return abs(self.task_progress) + abs(self.rework) + abs(self.verifier) + abs(
            self.engagement)

    def normalised(self) -> tuple[float, float, float, float]:
        t = self.total
        return (self.task_progress / t, self.rework / t, self.verifier / t, self.engagement / t)


def sigmoid(x: np.ndarray | float, k: float = 1.0) -> np.ndarray | float:
    """Logistic function ``1 / (1 + exp(-k x))``, numerically stable for large ``|k x|``.

    Example:
        >>> round(float(sigmoid(0.5, k=2.0)), 6)
        0.731059
    """
    z = np.multiply(k, x, dtype=np.float64)
    e = np.exp(-np.abs(z))  # exp of a non-positive number never overflows
    out = np.where(z >= 0, 1.0, e) / (1.0 + e)
    return float(out) if out.ndim == 0 else out


def count_signal(n: np.ndarray | int, decay: float) -> np.ndarray | float:
    """Map a count ``n >= 0`` to ``2 * decay**n - 1`` in (-1, 1] (``n = 0`` gives +1).

    Example:
        >>> [round(float(count_signal(n, 0.3)), 2) for n in (0, 1, 2)]
        [1.0, -0.4, -0.82]
    """
    out = 2.0 * np.power(decay, np.asarray(n, dtype=np.float64)) - 1.0
    return float(out) if out.ndim == 0 else out


class ProxyComputer:
    """Turns observables into ``(v_hat, p)``, for one interaction or for arrays of them.

    Example:
        >>> pc = ProxyComputer()
        >>> v_hat, p = pc.compute_labels(ProxyObservables(task_progress=0.5, rework_count=0,
        ...                             verifier_rejections=0, tool_misuse=0, engagement=0.5))
        >>> round(v_hat, 3), round(p, 3)   # 0.4*0.5 + 0.2*1 + 0.2*1 + 0.2*0.5
        (0.7, 0.802)
    """

    def __init__(self, weights: ProxyWeights | None = None, k: float = 2.0,
                 rework_decay: float = 0.3, rejection_decay: float = 0.4,
                 misuse_decay: float = 0.5, bias: float = 0.0) -> None:
        for name, d in (("rework_decay", rework_decay), ("rejection_decay", rejection_decay),
                        ("misuse_decay", misuse_decay)):
            if not 0.0 < d <= 1.0:
                raise ValueError(f"ProxyComputer.{name} must be in (0, 1], got {d}")
        self.weights = weights or ProxyWeights()
        self.k = float(k)
        self.bias = float(bias)
        self.rework_decay = rework_decay
        self.rejection_decay = rejection_decay
        self.misuse_decay = misuse_decay
        self._w = np.array(self.weights.normalised())
        # lookup tables for count signals: counts above the table size saturate at -1
        n = np.arange(64, dtype=np.float64)
        self._lut_rework = 2.0 * rework_decay**n - 1.0
        self._lut_verifier_rej = 2.0 * rejection_decay**n - 1.0
        self._lut_verifier_mis = 2.0 * misuse_decay**n - 1.0

    def v_hat_arrays(self, task_progress: np.ndarray, rework_count: np.ndarray,
                     verifier_rejections: np.ndarray, tool_misuse: np.ndarray,
                     engagement: np.ndarray) -> np.ndarray:
        """Vectorised ``v_hat`` for arrays of observables (counts must be >= 0)."""
        top = len(self._lut_rework) - 1
        rw = self._lut_rework[np.minimum(rework_count, top)]
        ver = 0.5 * (self._lut_verifier_rej[np.minimum(verifier_rejections, top)]
                     + self._lut_verifier_mis[np.minimum(tool_misuse, top)])
        w0, w1, w2, w3 = self._w
        v = (w0 * np.minimum(np.maximum(task_progress, -1.0), 1.0) + w1 * rw + w2 * ver
             + w3 * np.minimum(np.maximum(engagement, -1.0), 1.0))
        np.maximum(v, -1.0, out=v)
        return np.minimum(v, 1.0, out=v)

    def p_from_v_hat(self, v_hat: np.ndarray | float) -> np.ndarray | float:
        """``p = sigmoid(k * v_hat + bias)``."""
        return sigmoid(np.asarray(v_hat, dtype=np.float64) * self.k + self.bias)

    def compute_arrays(self, task_progress, rework_count, verifier_rejections, tool_misuse,
                       engagement) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``(v_hat, p)``."""
        v_hat = self.v_hat_arrays(np.asarray(task_progress, dtype=np.float64),
                                  _as_counts(rework_count, "rework_count"),
                                  _as_counts(verifier_rejections, "verifier_rejections"),
                                  _as_counts(tool_misuse, "tool_misuse"),
                                  np.asarray(engagement, dtype=np.float64))
        return v_hat, np.asarray(self.p_from_v_hat(v_hat))

    def compute_labels(self, obs: ProxyObservables) -> tuple[float, float]:
        """``(v_hat, p)`` for one interaction's observables."""
        if min(obs.rework_count, obs.verifier_rejections, obs.tool_misuse) < 0:
            raise ValueError(f"count signals must be >= 0, got {obs}")
        v_hat, p = self.compute_arrays([obs.task_progress], [obs.rework_count],
                                       [obs.verifier_rejections], [obs.tool_misuse],
                                       [obs.engagement])
        return float(v_hat[0]), float(p[0])


def _as_counts(x, name: str) -> np.ndarray:
    """Counts as a non-negative integer array (no copy when already integer)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        if arr.size and not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"ProxyComputer: {name} must be whole counts, got "
                             f"{arr[np.mod(arr, 1) != 0][:3].tolist()}")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"ProxyComputer: {name} must be >= 0, got {int(arr.min())}")
    return arr


@dataclass(frozen=True)
class CalibrationResult:
    """Fitted ``p = sigmoid(k * v_hat + bias)`` and its log loss before and after."""

    k: float
    bias: float
    log_loss_before: float
    log_loss_after: float
    n: int


def calibrate(v_hat: np.ndarray, v: np.ndarray, k0: float = 2.0, fit_bias: bool = True,
              max_iter: int = 100, tol: float = 1e-10) -> CalibrationResult:
    """Fit ``k`` (and a bias) to the hidden truth by Newton's method on the log likelihood.

    ``v`` is the hidden truth (+1 / -1, or 1 / 0). A small ridge term keeps the fit finite
    when the classes are separable.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> vh = rng.uniform(-1, 1, 20000)
        >>> y = rng.random(20000) < sigmoid(3.0 * vh - 0.5)
        >>> res = calibrate(vh, y)
        >>> abs(res.k - 3.0) < 0.2, abs(res.bias + 0.5) < 0.1
        (True, True)
        >>> res.log_loss_after < res.log_loss_before
        True
    """
    x = np.asarray(v_hat, dtype=np.float64)
    y = (np.asarray(v) > 0).astype(np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"calibrate: v_hat and v must be 1-D of one length, got {x.shape}, "
                         f"{y.shape}")
    if len(x) == 0:
        raise ValueError("calibrate: need at least one interaction, got none")

    def nll(k: float, b: float) -> float:
        q = np.clip(sigmoid(k * x + b), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    X = np.stack([x, np.ones_like(x)], axis=1) if fit_bias else x[:, None]
    theta = np.array([k0, 0.0]) if fit_bias else np.array([k0])
    ridge = 1e-6
    for _ in range(max_iter):
        q = sigmoid(X @ theta)
        grad = X.T @ (q - y) / len(x) + ridge * theta
        hess = (X * (q * (1 - q))[:, None]).T @ X / len(x) + ridge * np.eye(len(theta))
        delta = np.linalg.solve(hess, grad)
        theta = theta - delta
        if np.max(np.abs(delta)) < tol:
            break
    k, b = float(theta[0]), float(theta[1]) if fit_bias else 0.0
    return CalibrationResult(k=k, bias=b, log_loss_before=nll(k0, 0.0),
                             log_loss_after=nll(k, b), n=len(x))
