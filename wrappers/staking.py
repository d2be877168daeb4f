"""Staking: an agent must keep a minimum stake of resources to act, and audited harm costs
part of it.

At the end of every step (after any epoch-end charge), an agent whose resources are below
``min_stake`` is frozen (it may only pass and reject) until they are back at or above it —
by a redistribution, say. When a
:class:`~wrappers.random_audit.RandomAudit` in the same stack catches an initiator's harmful
interaction, ``slash_fraction`` of that agent's resources is taken in the same step
(``gov_slashed``). Freezes and releases are governance events (``gov_freezes``,
``gov_releases``).

Example:
    >>> import envs
    >>> from wrappers.staking import Staking
    >>> env = Staking(envs.make("sandbox-v0", n_agents=4), min_stake=10.0)
    >>> obs, infos = env.reset(seed=0)
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from envs.core.payoff import MAX_AMOUNT
from wrappers.base import GovernanceWrapper, LeverParams


class Staking(GovernanceWrapper):
    """Freeze below ``min_stake``; slash ``slash_fraction`` on audited harm."""

    lever = "staking"

    class Params(LeverParams):
        min_stake: float = Field(ge=0.0, le=MAX_AMOUNT, description="resources needed to act")
        slash_fraction: float = Field(0.1, ge=0.0, le=1.0,
                                      description="share of resources taken per audited harm")

    def _install(self, seam) -> None:
        seam.add_reset_hook(self._reset)
        seam.add_settle_hook(self._check)  # after epoch-end debits too
        seam.add_listener(self._on_event)

    def _reset(self, rng: np.random.Generator) -> None:
        self.staked_out = np.zeros(len(self.seam.possible_agents), dtype=bool)

    def _check(self, batch) -> None:
        below = self.seam.get_resources() < self.params.min_stake
        freeze = below & ~self.staked_out
        release = ~below & self.staked_out
        if freeze.any() or release.any():
            self.seam.set_frozen(freeze, True, lever=self.lever)
            self.seam.set_frozen(release, False, lever=self.lever)
            self.staked_out = below
            self.seam.log_governance(self.lever, {
                "frozen": np.flatnonzero(freeze).tolist(),
                "released": np.flatnonzero(release).tolist(),
                "summary": {"freezes": int(freeze.sum()), "releases": int(release.sum())}},
                agents=np.flatnonzero(freeze | release))

    def _on_event(self, lever: str, data) -> None:
        hits = data.get("hit_initiators") if lever == "random_audit" else None
        if not hits or self.params.slash_fraction == 0.0:
            return
        counts = np.bincount(np.asarray(hits, dtype=np.int64),
                             minlength=len(self.seam.possible_agents))
        who = np.flatnonzero(counts)
        caught = counts[who]
        keep = (1.0 - self.params.slash_fraction) ** caught  # one slash per caught harm
        amounts = np.maximum(self.seam.get_resources()[who], 0.0) * (1.0 - keep)
        delta = np.zeros(len(self.seam.possible_agents))
        delta[who] = -amounts
        self.seam.add_rewards(delta)
        paid = amounts > 0
        self.seam.log_governance(self.lever, {
            "slashed_agents": who[paid].tolist(), "amounts": amounts[paid].tolist(),
            "summary": {"slashed": float(amounts.sum())}}, agents=who[paid])
