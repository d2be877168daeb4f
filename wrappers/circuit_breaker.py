"""Circuit breaker: freeze an agent whose recent interactions look harmful, then release it.

For each agent, the mean of ``1 - p`` over its last ``window`` initiated interactions
(delivered ones, accepted or not) is checked after every step in which it initiated; a
**violation** is a check at or above ``threshold``. At ``violations`` violations the agent is
frozen (it may only pass and reject) for the rest of the epoch and ``freeze_epochs`` whole
epochs after it, then released with a clean slate (history and violations cleared).
Keyed to the proxy ``p``: dressed-up signals can fool it (compare the random audit).

Example:
    >>> import envs
    >>> from wrappers.circuit_breaker import CircuitBreaker
    >>> env = CircuitBreaker(envs.make("sandbox-v0", n_agents=4), threshold=0.7)
    >>> obs, infos = env.reset(seed=0)
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from wrappers.base import GovernanceWrapper, LeverParams


class CircuitBreaker(GovernanceWrapper):
    """Mean ``1 - p`` over the last ``window`` initiated interactions >= ``threshold``,
    ``violations`` times: frozen for ``freeze_epochs`` epochs."""

    lever = "circuit_breaker"

    class Params(LeverParams):
        window: int = Field(10, ge=1, le=10_000, description="interactions averaged")
        threshold: float = Field(0.7, ge=0.0, le=1.0, description="mean 1-p of a violation")
        violations: int = Field(3, ge=1, description="violations that trip the breaker")
        freeze_epochs: int = Field(2, ge=0, description="whole epochs frozen after the trip")

    def _install(self, seam) -> None:
        seam.add_reset_hook(self._reset)
        seam.add_step_hook(self._check)
        seam.add_epoch_hook(self._release)

    def _reset(self, rng: np.random.Generator) -> None:
        n = len(self.seam.possible_agents)
        self.history = np.zeros((n, self.params.window))
        self.count = np.zeros(n, dtype=np.int64)
        self.strikes = np.zeros(n, dtype=np.int64)
        self.release_after = np.full(n, -1, dtype=np.int64)  # epoch; -1: not tripped

    def _check(self, batch) -> None:
        if len(batch) == 0:
            return
        w = self.params.window
        who = batch.initiator.astype(np.int64)
        initiated = np.bincount(who, minlength=len(self.count))
        agents = np.flatnonzero(initiated)
        if len(agents) == len(who):  # one interaction per initiator (the sandbox's case)
            self.history[who, self.count[who] % w] = 1.0 - batch.p
        else:  # several: the k-th of an agent's rows goes k slots further, in row order
            order = np.argsort(who, kind="stable")
            sorted_who = who[order]
            first = np.ones(len(who), dtype=bool)
            first[1:] = sorted_who[1:] != sorted_who[:-1]
            idx = np.arange(len(who))
            rank = idx - np.maximum.accumulate(np.where(first, idx, 0))
            pos = (self.count[sorted_who] + rank) % w
            self.history[sorted_who, pos] = 1.0 - batch.p[order]
        self.count += initiated
        active = agents[self.release_after[agents] < 0]
        filled = np.minimum(self.count[active], w)
        mean = self.history[active].sum(axis=1) / filled
        bad = active[mean >= self.params.threshold]
        self.strikes[bad] += 1
        tripped = bad[self.strikes[bad] >= self.params.violations]
        if len(tripped):
            _, epoch = self.seam.clock
            self.release_after[tripped] = epoch + self.params.freeze_epochs
            self.strikes[tripped] = 0
            self.count[tripped] = 0
            self.history[tripped] = 0.0
            self.seam.set_frozen(tripped, True, lever=self.lever)
            self.seam.log_governance(self.lever, {
                "frozen": tripped.tolist(), "release_after_epoch": epoch + self.params.
                freeze_epochs, "summary": {"freezes": len(tripped)}}, agents=tripped)

    def _release(self, epoch: int) -> None:
        due = np.flatnonzero((self.release_after >= 0) & (self.release_after <= epoch))
        if len(due):
            self.release_after[due] = -1
            # a clean slate: what resolved while frozen (the proposal in flight when it
            # tripped) must not count against it after the release
            self.count[due] = 0
            self.history[due] = 0.0
            self.strikes[due] = 0
            self.seam.set_frozen(due, False, lever=self.lever)
            self.seam.log_governance(self.lever, {
                "released": due.tolist(), "summary": {"releases": len(due)}}, agents=due)
