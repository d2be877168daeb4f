"""Reputation decay: public reputation shrinks toward zero at every epoch end.

``reputation *= rate`` (1.0 leaves it alone; 0.9 forgets a tenth per epoch), so past good
behaviour must be renewed and a reputation bought early cannot be spent forever.

Example:
    >>> import envs
    >>> from wrappers.reputation_decay import ReputationDecay
    >>> env = ReputationDecay(envs.make("sandbox-v0", n_agents=4), rate=0.9)
    >>> obs, infos = env.reset(seed=0)
"""

from __future__ import annotations

from pydantic import Field

from wrappers.base import GovernanceWrapper, LeverParams


class ReputationDecay(GovernanceWrapper):
    """``reputation *= rate`` at each epoch end."""

    lever = "reputation_decay"

    class Params(LeverParams):
        rate: float = Field(ge=0.0, le=1.0, description="share of reputation kept per epoch")

    def _install(self, seam) -> None:
        seam.add_epoch_hook(self._decay)

    def _decay(self, epoch: int) -> None:
        self.seam.set_reputation(self.seam.get_reputation() * self.params.rate)
        self.seam.log_governance(self.lever, {"rate": self.params.rate})
