"""Vote normalisation: each further vote an agent casts in an epoch counts for less.

A vote interaction's weight is ``1 / (1 + votes_this_epoch / k)``, where ``votes_this_epoch``
counts the votes the same agent cast earlier in the epoch (its first vote weighs 1). The
weight enters what the vote does: it scales the vote's surplus and externality, and so its
payoffs, and the reputation it moves (``records.weight``). Flooding votes buys little.

Example:
    >>> import envs
    >>> from wrappers.vote_normalization import VoteNormalization
    >>> env = VoteNormalization(envs.make("sandbox-v0", n_agents=4), k=10)
    >>> obs, infos = env.reset(seed=0)
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from envs.core.records import InteractionType
from wrappers.base import GovernanceWrapper, LeverParams, occurrence


class VoteNormalization(GovernanceWrapper):
    """Weight ``1 / (1 + votes_this_epoch / k)`` on each vote."""

    lever = "vote_normalization"
    variants = ("sandbox",)
    acts_on = "votes"

    class Params(LeverParams):
        k: float = Field(10.0, gt=0.0, description="votes at which a vote's weight halves")

    def _install(self, seam) -> None:
        seam.add_reset_hook(self._reset)
        seam.add_weight_hook(self._weigh)
        seam.add_epoch_hook(self._epoch_end)

    def _reset(self, rng: np.random.Generator) -> None:
        self.votes = np.zeros(len(self.seam.possible_agents), dtype=np.int64)
        self.epoch_votes, self.weight_sum = 0, 0.0

    def _weigh(self, batch):
        rows = np.flatnonzero(batch.kind == InteractionType.VOTE)
        if len(rows) == 0:
            return None
        who = batch.initiator[rows].astype(np.int64)
        prior = self.votes[who] + occurrence(who)  # earlier rows count first
        weight = np.ones(len(batch))
        weight[rows] = 1.0 / (1.0 + prior / self.params.k)
        self.votes += np.bincount(who, minlength=len(self.votes))
        self.epoch_votes += len(rows)
        self.weight_sum += float(weight[rows].sum())
        return weight

    def _epoch_end(self, epoch: int) -> None:
        if self.epoch_votes:
            self.seam.log_governance(self.lever, {
                "votes": self.epoch_votes,
                "mean_weight": self.weight_sum / self.epoch_votes})
        self.votes[:] = 0
        self.epoch_votes, self.weight_sum = 0, 0.0
