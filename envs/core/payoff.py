"""Soft payoffs: expectations under the soft label ``p``.

With ``S = p * s_plus - (1 - p) * s_minus`` (expected surplus) and ``E = (1 - p) * h``
(expected externality borne by the rest of the system):

* initiator:    ``pi_a = theta * S - tau - c_a - rho_a * E + w_rep * r_a``
* counterparty: ``pi_b = (1 - theta) * S + tau - c_b - rho_b * E + w_rep * r_b``

``tau`` is the transfer from initiator to counterparty, ``c_a``/``c_b`` governance costs,
``r_a``/``r_b`` reputation terms. Everything is vectorised: pass scalars or numpy arrays.

:class:`PayoffConfig` is strict: every field must be a finite number (an int is accepted, a
string, a bool, ``nan`` or ``inf`` is not), and amounts are bounded by ``MAX_AMOUNT`` in
magnitude so that sums of payoffs over a long run stay finite.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: bound on the magnitude of payoff parameters (and of costs, transfers and resources in the
#: environments' configs): far beyond any meaningful value, small enough that a run's sums of
#: payoffs cannot overflow to ``inf`` (and ``inf - inf`` to a ``nan`` welfare)
MAX_AMOUNT = 1e12


class PayoffConfig(BaseModel):
    """Payoff parameters.

    The defaults are the original soft-label sandbox's: ``s_plus = 2``, ``s_minus = 1``,
    ``h = 2``, ``theta = 0.5``, ``rho_a = rho_b = 0``, ``w_rep = 1`` (see ``docs/reference.md``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    s_plus: float = Field(2.0, ge=0.0, le=MAX_AMOUNT,
                          description="surplus when the interaction is beneficial")
    s_minus: float = Field(1.0, ge=0.0, le=MAX_AMOUNT,
                           description="loss when the interaction is harmful")
    h: float = Field(2.0, ge=0.0, le=MAX_AMOUNT,
                     description="harm to others when the interaction is harmful")
    theta: float = Field(0.5, ge=0.0, le=1.0, description="initiator's share of the surplus")
    rho_a: float = Field(0.0, ge=0.0, le=MAX_AMOUNT,
                         description="initiator's weight on the externality")
    rho_b: float = Field(0.0, ge=0.0, le=MAX_AMOUNT,
                         description="counterparty's weight on the externality")
    w_rep: float = Field(1.0, ge=-MAX_AMOUNT, le=MAX_AMOUNT,
                         description="weight of the reputation term in payoffs")


class SoftPayoffEngine:
    """Computes soft payoffs for one interaction or for arrays of them.

    Example:
        >>> eng = SoftPayoffEngine(PayoffConfig())
        >>> # p = 0.8: S = 0.8*2 - 0.2*1 = 1.4; pi_a = 0.5*1.4 - 0.1 + 1.0*0.3 = 0.9
        >>> round(float(eng.payoff_initiator(0.8, tau=0.1, r_a=0.3)), 6)
        0.9
    """

    def __init__(self, config: PayoffConfig | None = None) -> None:
        self.config = config or PayoffConfig()

    def expected_surplus(self, p):
        c = self.config
        p = np.asarray(p, dtype=np.float64)
        return p * c.s_plus - (1.0 - p) * c.s_minus

    def expected_harm(self, p):
        p = np.asarray(p, dtype=np.float64)
        return (1.0 - p) * self.config.h

    def payoff_initiator(self, p, tau=0.0, c_a=0.0, r_a=0.0):
        c = self.config
        return (c.theta * self.expected_surplus(p) - tau - c_a
                - c.rho_a * self.expected_harm(p) + c.w_rep * np.asarray(r_a))

    def payoff_counterparty(self, p, tau=0.0, c_b=0.0, r_b=0.0):
        c = self.config
        return ((1.0 - c.theta) * self.expected_surplus(p) + tau - c_b
                - c.rho_b * self.expected_harm(p) + c.w_rep * np.asarray(r_b))

    def payoffs(self, p, tau=0.0, c_a=0.0, c_b=0.0, r_a=0.0, r_b=0.0, weight=None):
        """Both payoffs at once, sharing ``S`` and ``E`` (the hot-path form).

        ``weight`` (an interaction's weight, default 1) scales ``S`` and ``E``; the
        reputation terms are passed already weighted.
        """
        c = self.config
        p = np.asarray(p, dtype=np.float64)
        s = p * c.s_plus - (1.0 - p) * c.s_minus
        e = (1.0 - p) * c.h
        if weight is not None:
            s = s * weight
            e = e * weight
        pi_a = c.theta * s - tau - c_a - c.rho_a * e + c.w_rep * r_a
        pi_b = (1.0 - c.theta) * s + tau - c_b - c.rho_b * e + c.w_rep * r_b
        return pi_a, pi_b

    def realized_payoffs(self, v, tau=0.0, c_a=0.0, c_b=0.0, r_a=0.0, r_b=0.0, weight=None):
        """Payoffs with the hidden truth in place of ``p`` (``p = 1`` if v = +1 else 0)."""
        return self.payoffs((np.asarray(v) > 0).astype(np.float64), tau, c_a, c_b, r_a, r_b,
                            weight)

    def social_surplus(self, p):
        """``S - E``: what the interaction is worth to everyone."""
        return self.expected_surplus(p) - self.expected_harm(p)

    @property
    def break_even_p(self) -> float:
        """``p`` at which ``S = 0``: ``s_minus / (s_plus + s_minus)``."""
        c = self.config
        return c.s_minus / (c.s_plus + c.s_minus)

    @property
    def social_break_even_p(self) -> float:
        """``p`` at which ``S - E = 0``: ``(s_minus + h) / (s_plus + s_minus + h)``."""
        c = self.config
        return (c.s_minus + c.h) / (c.s_plus + c.s_minus + c.h)
