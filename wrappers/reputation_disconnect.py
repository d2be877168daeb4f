"""Reputation disconnect: cut the network ties of agents whose reputation falls too low.

At each epoch end every edge of an agent whose public reputation is below ``threshold`` is
removed (dynamic networks only: ``network.dynamic: true``), so it can no longer propose to or
be reached by anyone until new edges form — in this sandbox, never. ``gov_edges_cut``.

Example:
    >>> import envs
    >>> from wrappers.reputation_disconnect import ReputationDisconnect
    >>> base = envs.make("sandbox-v0", n_agents=4, network={"dynamic": True})
    >>> obs, infos = ReputationDisconnect(base, threshold=-1.0).reset(seed=0)
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from envs.core.payoff import MAX_AMOUNT
from wrappers.base import GovernanceWrapper, LeverParams


class ReputationDisconnect(GovernanceWrapper):
    """Cut every edge of agents with reputation below ``threshold``, each epoch end."""

    lever = "reputation_disconnect"
    # the commons is played by everyone at once: no edge carries its game
    variants = ("sandbox", "dilemma")
    acts_on = "the network's edges (who plays whom)"

    class Params(LeverParams):
        threshold: float = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)

    def _install(self, seam) -> None:
        network = getattr(getattr(seam, "config", None), "network", None)
        if network is not None and not network.dynamic:
            raise ValueError("ReputationDisconnect needs a dynamic network "
                             "(network.dynamic: true)")
        seam.add_epoch_hook(self._cut)

    def _cut(self, epoch: int) -> None:
        low = np.flatnonzero(self.seam.get_reputation() < self.params.threshold)
        if len(low):
            cut = self.seam.cut_edges(low)
            if cut:
                self.seam.log_governance(self.lever, {
                    "agents": low.tolist(), "summary": {"edges_cut": cut}}, agents=low)
