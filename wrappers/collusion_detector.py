"""Collusion detection: flag pairs (and the small groups they form) that deal with each
other far more than the population does.

At each epoch end the accepted interactions of the epoch are counted per unordered pair,
with the transfers they paid. A pair is flagged when it has at least ``min_interactions``
accepted interactions and its count or its transfer total has a z-score of at least
``z_threshold`` among the pairs that interacted. Flagged pairs joined by a shared agent are
reported as groups. Per-pair counts are small and skewed, so the default ``z_threshold`` is 5
(at 3, honest pairs on a dense network are flagged in most epochs); note that among ``m``
interacting pairs no z-score can exceed ``sqrt(m - 1)``, so a small population needs a lower
threshold. ``action="penalize"`` charges every member ``penalty`` per flagged pair
it is in; ``action="freeze"`` freezes the members for ``freeze_epochs`` whole epochs.

Example:
    >>> import envs
    >>> from wrappers.collusion_detector import CollusionDetector
    >>> env = CollusionDetector(envs.make("sandbox-v0", n_agents=4), z_threshold=2.0)
    >>> obs, infos = env.reset(seed=0)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from envs.core.payoff import MAX_AMOUNT
from wrappers.base import GovernanceWrapper, LeverParams


class CollusionDetector(GovernanceWrapper):
    """z-score of each pair's accepted interactions (and transfers) within the epoch."""

    lever = "collusion_detector"
    variants = ("sandbox",)
    # in the dilemma every shown pair plays every round: pair counts say nothing of
    # collusion, and flagging them would fine cooperators
    acts_on = "how often pairs choose to interact"

    class Params(LeverParams):
        z_threshold: float = Field(5.0, gt=0.0, le=1e6,
                                   description="z-score that flags a pair")
        min_interactions: int = Field(3, ge=1, description="accepted interactions to flag")
        action: Literal["penalize", "freeze"] = "penalize"
        penalty: float = Field(1.0, ge=0.0, le=MAX_AMOUNT)
        freeze_epochs: int = Field(1, ge=0)

    def _install(self, seam) -> None:
        seam.add_reset_hook(self._reset)
        seam.add_step_hook(self._collect)
        seam.add_epoch_hook(self._detect)

    def _reset(self, rng: np.random.Generator) -> None:
        n = len(self.seam.possible_agents)
        self.keys: list[np.ndarray] = []
        self.transfers: list[np.ndarray] = []
        self.release_after = np.full(n, -1, dtype=np.int64)

    def _collect(self, batch) -> None:
        acc = batch.accepted
        if acc.any():
            a = batch.initiator[acc].astype(np.int64)
            b = batch.counterparty[acc].astype(np.int64)
            self.keys.append(np.minimum(a, b) * len(self.release_after) + np.maximum(a, b))
            self.transfers.append(np.abs(batch.tau[acc]))

    def _detect(self, epoch: int) -> None:
        n = len(self.release_after)
        due = np.flatnonzero((self.release_after >= 0) & (self.release_after <= epoch))
        if len(due):
            self.release_after[due] = -1
            self.seam.set_frozen(due, False, lever=self.lever)
            self.seam.log_governance(self.lever, {"released": due.tolist(),
                                                  "summary": {"releases": len(due)}}, due)
        if not self.keys:
            return
        keys = np.concatenate(self.keys)
        transfers = np.concatenate(self.transfers)
        self.keys, self.transfers = [], []
        pairs, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        paid = np.bincount(inverse, weights=transfers)
        flagged = (counts >= self.params.min_interactions) & (
            (_z(counts) >= self.params.z_threshold) | (_z(paid) >= self.params.z_threshold))
        if not flagged.any():
            return
        a, b = pairs[flagged] // n, pairs[flagged] % n
        members = np.concatenate([a, b])
        summary = {"flags": int(flagged.sum())}
        if self.params.action == "penalize":
            charge = np.bincount(members, minlength=n) * self.params.penalty
            self.seam.add_rewards(-charge)
            summary["penalties"] = float(charge.sum())
        elif self.params.freeze_epochs:  # flagged at an epoch end: 0 epochs, no freeze
            who = np.unique(members)
            self.release_after[who] = epoch + self.params.freeze_epochs
            self.seam.set_frozen(who, True, lever=self.lever)
            summary["freezes"] = len(who)
        self.seam.log_governance(self.lever, {
            "pairs": [[int(x), int(y), int(c)] for x, y, c in zip(a, b, counts[flagged])],
            "groups": _groups(a, b), "summary": summary}, agents=np.unique(members))


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return np.zeros(len(x)) if sd == 0 else (x - x.mean()) / sd


def _groups(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """Agents linked by flagged pairs, as sorted groups (union-find over the pairs)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        parent[find(x)] = find(y)
    groups: dict[int, list[int]] = {}
    for x in sorted(parent):
        groups.setdefault(find(x), []).append(x)
    return sorted(groups.values())
