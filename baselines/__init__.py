"""Policies and runners: the policy interface, scripted baselines, rollouts, the CLI."""

from baselines.policy import ObsBatch, Policy

__all__ = ["ObsBatch", "Policy"]
