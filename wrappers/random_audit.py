"""Random audit: inspect a random share of accepted interactions for **hidden** harm.

Each accepted interaction is audited with probability ``probability``. In the default
``mode="truth"`` an audit looks at the interaction's hidden truth ``v`` — what actually
happened, not what its signals said — and, unless it misses (``miss_rate``), charges the
initiator of a harmful one ``penalty * penalty_multiplier`` as a governance cost in the same
step. **Auditing is the one lever that dressing cannot fool**: dressed-up signals move ``p``,
never ``v``. ``mode="proxy"`` is the original sandbox's audit, keyed to the proxy: it charges
``(threshold - p) * penalty_multiplier`` when ``p < threshold`` — gameable by dressing, kept
for the comparison. The initiators of audited interactions are reported
(``audited_initiators``) and those caught (``hit_initiators``), which
:class:`~wrappers.staking.Staking` slashes.

Example:
    >>> import envs
    >>> from wrappers.random_audit import RandomAudit
    >>> env = RandomAudit(envs.make("sandbox-v0", n_agents=4), probability=0.2)
    >>> obs, infos = env.reset(seed=0)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from envs.core.payoff import MAX_AMOUNT
from wrappers.base import GovernanceWrapper, LeverParams


class RandomAudit(GovernanceWrapper):
    """Audit accepted interactions with ``probability``; penalise hidden harm."""

    lever = "random_audit"

    class Params(LeverParams):
        probability: float = Field(0.1, ge=0.0, le=1.0, description="audit rate")
        penalty_multiplier: float = Field(2.0, ge=0.0, le=MAX_AMOUNT)
        penalty: float = Field(1.0, ge=0.0, le=MAX_AMOUNT,
                               description="truth mode: base penalty per harm caught")
        threshold: float = Field(0.5, ge=0.0, le=1.0,
                                 description="proxy mode: p below which an audit penalises")
        miss_rate: float = Field(0.0, ge=0.0, le=1.0,
                                 description="truth mode: chance an audit misses a harm")
        mode: Literal["truth", "proxy"] = Field("truth", description="what an audit inspects")

    def _install(self, seam) -> None:
        seam.add_reset_hook(self._reset)
        seam.add_cost_hook(self._audit)

    def _reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def _audit(self, batch):
        n = len(batch)
        if n == 0:
            return None
        p = self.params
        # drawn for every row, so the stream does not depend on who accepted; a second row
        # of draws for misses only when misses are possible
        u = self.rng.random((2 if p.miss_rate > 0 else 1, n))
        audited = batch.accepted & (u[0] < p.probability)
        if not audited.any():
            return None
        if p.mode == "truth":
            harmful = audited & (batch.v < 0)
            caught = harmful & (u[1] >= p.miss_rate) if p.miss_rate > 0 else harmful
            missed = harmful & ~caught
            cost = caught * (p.penalty * p.penalty_multiplier)
        else:
            caught = audited & (batch.p < p.threshold)
            missed = np.zeros(n, dtype=bool)
            cost = np.where(caught, (p.threshold - batch.p) * p.penalty_multiplier, 0.0)
        hits = np.flatnonzero(caught)
        initiators = batch.initiator[hits].astype(np.int64)
        self.seam.log_governance(self.lever, {
            "audited": int(audited.sum()),
            "hits": np.stack([batch.initiator[hits], batch.counterparty[hits]], 1).tolist(),
            "hit_initiators": initiators.tolist(),
            "audited_initiators": batch.initiator[audited].astype(np.int64).tolist(),
            "summary": {"audits": int(audited.sum()), "audit_hits": len(hits),
                        "audit_misses": int(missed.sum()), "penalties": float(cost.sum())}},
            agents=batch.initiator[audited])
        return cost, 0.0
