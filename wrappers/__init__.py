"""Governance levers as PettingZoo ``BaseParallelWrapper`` subclasses, one lever per file.

Each lever registers hooks on the environment's governance seam
(:mod:`envs.core.governance`), so it governs both doors (``env.step`` and ``step_arrays``):

=========================  ===============================================================
``TransactionTax``         a share of every paid transfer, optionally redistributed
``ReputationDecay``        reputation shrinks each epoch
``VoteNormalization``      each further vote in an epoch weighs less
``Staking``                frozen below a minimum stake; audited harm is slashed
``CircuitBreaker``         frozen after repeated high mean ``1 - p``, then released
``RandomAudit``            audits the hidden truth: the lever dressing cannot fool
``CollusionDetector``      flags pairs that deal with each other far above the population
``ReputationDisconnect``   cuts the edges of low-reputation agents (dynamic networks)
``Monitoring``             the commons: flags deception, blame shifting, weaponised
                           accusations and collusion; audits, fines or removes
=========================  ===============================================================

:func:`wrappers.stack.governance_stack` builds a stack from a scenario's ``governance:``
block.
"""

from wrappers.base import GovernanceWrapper
from wrappers.circuit_breaker import CircuitBreaker
from wrappers.collusion_detector import CollusionDetector
from wrappers.monitoring import Monitoring
from wrappers.random_audit import RandomAudit
from wrappers.reputation_decay import ReputationDecay
from wrappers.reputation_disconnect import ReputationDisconnect
from wrappers.stack import GovernanceConfig, governance_stack, levers
from wrappers.staking import Staking
from wrappers.transaction_tax import TransactionTax
from wrappers.vote_normalization import VoteNormalization

__all__ = ["CircuitBreaker", "CollusionDetector", "GovernanceConfig", "GovernanceWrapper",
           "Monitoring", "RandomAudit", "ReputationDecay", "ReputationDisconnect", "Staking",
           "TransactionTax", "VoteNormalization", "governance_stack", "levers"]
