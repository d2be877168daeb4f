"""The ``governance:`` block of a scenario, and the stack of levers it builds.

.. code-block:: yaml

    governance:
      transaction_tax: {rate: 0.05, split: 0.5, redistribute: false}
      reputation_decay: {rate: 0.95}
      vote_normalization: {k: 10}
      staking: {min_stake: 10.0, slash_fraction: 0.1}
      circuit_breaker: {window: 10, threshold: 0.6, violations: 3, freeze_epochs: 2}
      random_audit: {probability: 0.15, penalty_multiplier: 2.0, mode: truth}
      collusion_detector: {z_threshold: 5.0, min_interactions: 3, action: penalize}
      reputation_disconnect: {threshold: -1.0}
      monitoring: {detector: scripted}          # the commons only

Every key is optional; an absent lever is off. Unknown keys and bad values are configuration
errors like any other. :func:`governance_stack` wraps the environment in the fixed order of
:data:`ORDER` (innermost first), whatever the order of the YAML keys: weights before costs,
audits before the staking that slashes on them, reputation decay before the disconnect that
reads reputation at the same epoch end.

Example:
    >>> import envs
    >>> env = governance_stack(envs.make("sandbox-v0", n_agents=4),
    ...                        {"transaction_tax": {"rate": 0.1}, "reputation_decay":
    ...                         {"rate": 0.9}})
    >>> [type(w).__name__ for w in levers(env)]
    ['ReputationDecay', 'TransactionTax']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wrappers.base import GovernanceWrapper
from wrappers.circuit_breaker import CircuitBreaker
from wrappers.collusion_detector import CollusionDetector
from wrappers.monitoring import Monitoring
from wrappers.random_audit import RandomAudit
from wrappers.reputation_decay import ReputationDecay
from wrappers.reputation_disconnect import ReputationDisconnect
from wrappers.staking import Staking
from wrappers.transaction_tax import TransactionTax
from wrappers.vote_normalization import VoteNormalization

__all__ = ["GovernanceConfig", "LEVERS", "ORDER", "governance_stack", "levers"]

#: the order in which a stack is built, innermost first
ORDER: tuple[type[GovernanceWrapper], ...] = (
    ReputationDecay, VoteNormalization, TransactionTax, RandomAudit, Staking, CircuitBreaker,
    CollusionDetector, ReputationDisconnect, Monitoring)
LEVERS: dict[str, type[GovernanceWrapper]] = {cls.lever: cls for cls in ORDER}


class GovernanceConfig(BaseModel):
    """Which levers are on, with their parameters (absent = off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reputation_decay: ReputationDecay.Params | None = Field(None)
    vote_normalization: VoteNormalization.Params | None = Field(None)
    transaction_tax: TransactionTax.Params | None = Field(None)
    random_audit: RandomAudit.Params | None = Field(None)
    staking: Staking.Params | None = Field(None)
    circuit_breaker: CircuitBreaker.Params | None = Field(None)
    collusion_detector: CollusionDetector.Params | None = Field(None)
    reputation_disconnect: ReputationDisconnect.Params | None = Field(None)
    monitoring: Monitoring.Params | None = Field(None)

    def enabled(self) -> list[str]:
        """The levers that are on, in stack order."""
        return [cls.lever for cls in ORDER if getattr(self, cls.lever) is not None]


def governance_stack(env: Any, config: GovernanceConfig | Mapping[str, Any] | None) -> Any:
    """Wrap ``env`` in the levers ``config`` turns on, in :data:`ORDER`."""
    if config is None:
        return env
    if not isinstance(config, GovernanceConfig):
        config = GovernanceConfig.model_validate(dict(config))
    for cls in ORDER:
        params = getattr(config, cls.lever)
        if params is not None:
            env = cls(env, **params.model_dump())
    return env


def levers(env: Any) -> list[GovernanceWrapper]:
    """The governance wrappers around an environment, innermost first."""
    out = []
    while isinstance(env, GovernanceWrapper):
        out.append(env)
        env = env.env
    return out[::-1]
