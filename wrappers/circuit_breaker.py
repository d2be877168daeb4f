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

from wrappers.base import GovernanceWrapper, LeverParams, occurrence


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
        self.total = np.zeros(n)  # row sums of history, kept incrementally
        self.count = np.zeros(n, dtype=np.int64)
        self.strikes = np.zeros(n, dtype=np.int64)
        self.release_after = np.full(n, -1, dtype=np.int64)  # epoch; -1: not tripped

    def _check(self, batch) -> None:
        if len(batch) == 0:
            return
        w = self.params.window
        who = batch.initiator
        initiated = np.bincount(who)
        if initiated.max() == 1:  # one interaction per initiator (the sandbox's case)
            count = self.count[who]
            slot = count % w
            new = 1.0 - batch.p
            total = self.total[who] + (new - self.history[who, slot])
            self.total[who] = total
            self.history[who, slot] = new
            count += 1
            self.count[who] = count
            agents, mean = who, total / np.minimum(count, w)
        else:  # several: the k-th of an agent's rows goes k slots further, in row order
            who = who.astype(np.int64)
            pos = (self.count[who] + occurrence(who)) % w  # later rows overwrite earlier
            self.history[who, pos] = 1.0 - batch.p
            agents = np.unique(who)
            self.total[agents] = self.history[agents].sum(axis=1)
            self.count[agents] += initiated[agents]
            mean = self.total[agents] / np.minimum(self.count[agents], w)
        over = mean >= self.params.threshold
        if not over.any():
            return
        bad = agents[over]
        bad = bad[self.release_after[bad] < 0]  # a frozen agent's in-flight work: no strike
        self.strikes[bad] += 1
        tripped = bad[self.strikes[bad] >= self.params.violations].astype(np.int64)
        if len(tripped):
            _, epoch = self.seam.clock
            self.release_after[tripped] = epoch + self.params.freeze_epochs
            self.strikes[tripped] = 0
            self.count[tripped] = 0
            self.history[tripped] = 0.0
            self.total[tripped] = 0.0
            self.seam.set_frozen(tripped, True, lever=self.lever)
            self.seam.log_governance(self.lever, {
                "frozen": tripped.tolist(), "release_after_epoch": epoch + self.params.
                freeze_epochs, "summary": {"freezes": len(tripped)}}, agents=tripped)

    def _release(self, epoch: int) -> None:
        np.sum(self.history, axis=1, out=self.total)  # no drift of the running sums
        due = np.flatnonzero((self.release_after >= 0) & (self.release_after <= epoch))
        if len(due):
            self.release_after[due] = -1
            # a clean slate: what resolved while frozen (the proposal in flight when it
            # tripped) must not count against it after the release
            self.count[due] = 0
            self.history[due] = 0.0
            self.total[due] = 0.0
            self.strikes[due] = 0
            self.seam.set_frozen(due, False, lever=self.lever)
            self.seam.log_governance(self.lever, {
                "released": due.tolist(), "summary": {"releases": len(due)}}, agents=due)
