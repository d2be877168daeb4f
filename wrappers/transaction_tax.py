"""Transaction tax: a share of every paid transfer goes to the platform.

On each accepted interaction with transfer ``tau`` the initiator pays
``rate * |tau| * split`` and the counterparty ``rate * |tau| * (1 - split)``, as governance
costs ``c_a``/``c_b`` in the same step (a rejected interaction pays nothing). The revenue is
reported each epoch (``gov_tax_revenue``); with ``redistribute=True`` it is paid back in
equal shares to every agent at the epoch's end (``gov_redistributed``).

Example:
    >>> import envs
    >>> from wrappers.transaction_tax import TransactionTax
    >>> env = TransactionTax(envs.make("sandbox-v0", n_agents=4), rate=0.1)
    >>> obs, infos = env.reset(seed=0)
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from wrappers.base import GovernanceWrapper, LeverParams


class TransactionTax(GovernanceWrapper):
    """``c_a += rate*|tau|*split``, ``c_b += rate*|tau|*(1-split)`` on accepted interactions."""

    lever = "transaction_tax"
    variants = ("sandbox",)
    acts_on = "transfers (tau)"

    class Params(LeverParams):
        rate: float = Field(ge=0.0, le=1.0, description="tax per unit of transfer")
        split: float = Field(0.5, ge=0.0, le=1.0, description="share paid by the initiator")
        redistribute: bool = Field(False, description="pay the revenue back equally at each "
                                                      "epoch end")

    def _install(self, seam) -> None:
        self.revenue = 0.0        # this epoch
        self.total_revenue = 0.0  # this episode
        seam.add_reset_hook(self._reset)
        seam.add_cost_hook(self._tax)
        seam.add_epoch_hook(self._epoch_end)

    def _reset(self, rng: np.random.Generator) -> None:
        self.revenue = self.total_revenue = 0.0

    def _tax(self, batch):
        p = self.params
        tax = p.rate * np.abs(batch.tau) * batch.accepted
        collected = float(tax.sum())
        self.revenue += collected
        self.total_revenue += collected
        return tax * p.split, tax * (1.0 - p.split)

    def _epoch_end(self, epoch: int) -> None:
        paid = 0.0
        if self.params.redistribute and self.revenue:
            n = len(self.seam.possible_agents)
            self.seam.add_rewards(np.full(n, self.revenue / n))
            paid = self.revenue
        self.seam.log_governance(self.lever, {
            "revenue": self.revenue, "redistributed": paid,
            "summary": {"tax_revenue": self.revenue, "redistributed": paid}})
        self.revenue = 0.0
