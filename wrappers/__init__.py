"""Governance levers as PettingZoo ``BaseParallelWrapper`` subclasses, one lever per file.

Empty in the foundation release: the levers (tax, reputation decay, staking, circuit breaker,
audits, monitoring) stand on the interaction records and event log of ``envs.core``.
"""
