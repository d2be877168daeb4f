"""The soft-label core shared by every variant: records, proxy, payoffs, metrics, network, log."""

from envs.core.payoff import PayoffConfig, SoftPayoffEngine
from envs.core.proxy import (
    CalibrationResult,
    ProxyComputer,
    ProxyObservables,
    ProxyWeights,
    calibrate,
    count_signal,
    sigmoid,
)
from envs.core.records import InteractionBatch, InteractionType, SoftInteraction

__all__ = [
    "CalibrationResult", "InteractionBatch", "InteractionType", "PayoffConfig",
    "ProxyComputer", "ProxyObservables", "ProxyWeights", "SoftInteraction",
    "SoftPayoffEngine", "calibrate", "count_signal", "sigmoid",
]
