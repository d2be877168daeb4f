"""The governance seam: the only door through which a lever touches an environment.

Every variant implements :class:`GovernanceSeam`; a lever (``wrappers/``) registers hooks on it
and calls its methods, and never reaches into an environment's private state. Hooks run inside
the environment's kernel (``step_arrays``), which both doors share, so a lever governs
``env.step`` (dicts) and ``step_arrays`` (arrays) alike.

======================  ==============================================================
seam                    what a lever may do with it
======================  ==============================================================
``add_cost_hook``       ``hook(batch) -> (c_a, c_b) | None`` on each step's resolved
                        interactions, before payoffs: the costs land on the records'
                        ``c_a``/``c_b``, the payoffs, rewards, resources and the log in the
                        same step (a rejected interaction pays nothing)
``add_weight_hook``     ``hook(batch) -> weight | None``: multiplies an interaction's
                        surplus, externality and reputation effect (vote normalisation)
``add_step_hook``       ``hook(batch)`` after the step's interactions are paid
``add_epoch_hook``      ``hook(epoch)`` at each epoch end, before the epoch is logged
``add_settle_hook``     ``hook(batch)`` last in every step, after the epoch hooks: the
                        step's rewards are final (stake checks)
``add_reset_hook``      ``hook(rng)`` at each reset, with the lever's own generator
``add_listener``        ``hook(lever, data)`` for every governance event (audit -> slash)
``set_frozen``          freeze / release agents for one lever (each lever its own reason:
                        one lever's release never lifts another's freeze or a bankruptcy)
``frozen_mask``         who is frozen now, for any reason
``get_reputation``      public reputation (a copy); ``set_reputation`` writes it
``get_resources``       resources (a copy)
``add_rewards``         inside a hook: credit / debit agents this step (rewards and
                        resources agree)
``cut_edges``           remove every edge of some agents (dynamic networks)
``log_governance``      a governance event: the event log, ``infos[agent]["governance"]``
                        for the agents it names, the per-epoch metrics, the listeners
``clock``               ``(step, epoch)`` of the step being played
======================  ==============================================================

A governance event's ``data`` may carry a ``summary`` of numbers under the keys of
:data:`SUMMARY_KEYS`; the runner sums them per epoch into ``gov_<key>`` metric columns (the
same function reads them back from a log, so replayed metrics equal live ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["GovernanceSeam", "SUMMARY_KEYS", "governance_columns"]

#: numbers a governance event may report in ``data["summary"]``; summed per epoch
SUMMARY_KEYS = ("tax_revenue", "redistributed", "audits", "audit_hits", "audit_misses",
                "penalties", "slashed", "freezes", "releases", "flags", "edges_cut")


@runtime_checkable
class GovernanceSeam(Protocol):
    """What a governance lever may use of an environment (see the module docstring)."""

    possible_agents: list[str]

    def add_cost_hook(self, hook: Callable[[Any], Any]) -> None: ...

    def add_weight_hook(self, hook: Callable[[Any], Any]) -> None: ...

    def add_step_hook(self, hook: Callable[[Any], None]) -> None: ...

    def add_epoch_hook(self, hook: Callable[[int], None]) -> None: ...

    def add_settle_hook(self, hook: Callable[[Any], None]) -> None: ...

    def add_reset_hook(self, hook: Callable[[np.random.Generator], None]) -> None: ...

    def add_listener(self, hook: Callable[[str, Mapping[str, Any]], None]) -> None: ...

    def set_frozen(self, agents: Any, frozen: bool = True, *, lever: str = "manual"
                   ) -> None: ...

    def frozen_mask(self) -> np.ndarray: ...

    def get_reputation(self) -> np.ndarray: ...

    def set_reputation(self, values: Any) -> None: ...

    def get_resources(self) -> np.ndarray: ...

    def add_rewards(self, delta: Any) -> None: ...

    def cut_edges(self, agents: Any) -> int: ...

    def log_governance(self, lever: str, data: Mapping[str, Any],
                       agents: Iterable[int] = ()) -> None: ...

    @property
    def clock(self) -> tuple[int, int]: ...


def governance_columns(events: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Per-epoch ``gov_<key>`` columns: the sums of the events' ``summary`` numbers.

    Every key of :data:`SUMMARY_KEYS` is present (0.0 when no event reported it), so the
    metrics of a governed and an ungoverned run have the same columns.

    Example:
        >>> cols = governance_columns([{"summary": {"audits": 3, "audit_hits": 1}},
        ...                            {"summary": {"audits": 2}}])
        >>> cols["gov_audits"], cols["gov_audit_hits"], cols["gov_flags"]
        (5.0, 1.0, 0.0)
    """
    totals = dict.fromkeys(SUMMARY_KEYS, 0.0)
    for data in events:
        summary = data.get("summary") or {}
        for key, value in summary.items():
            if key in totals:
                totals[key] += float(value)
    return {f"gov_{k}": v for k, v in totals.items()}
