"""Interaction records: one pydantic model for the API boundary, one columnar batch for hot paths.

Every variant emits, every step, the interactions that happened. On the hot path they live in
an :class:`InteractionBatch` — one numpy array per field, one row per interaction — so that
proxies, payoffs and metrics run as single vectorised passes. At the API boundary (infos,
serialisation, tests) a row becomes a :class:`SoftInteraction`.

Fields (both forms):

================  =========  ================================================================
field             dtype      meaning
================  =========  ================================================================
initiator         int32      index of the proposing agent (names live in the env)
counterparty      int32      index of the agent that accepted or rejected
kind              int8       :class:`InteractionType`
accepted          bool       did the counterparty accept
v                 int8       hidden truth, +1 beneficial / -1 harmful (the simulator knows it)
effort            float64    initiator's effort in [0, 1] (sets P(v=+1)); hidden
dressing          float64    initiator's signal dressing in [0, 1]; hidden
task_progress     float64    observable: task progress delta in [-1, 1]
rework_count      int16      observable: rework requests
verifier_rejections int16    observable: verifier rejections
tool_misuse       int16      observable: tool-misuse flags
engagement        float64    observable: counterparty engagement delta in [-1, 1]
v_hat             float64    proxy score in [-1, 1]
p                 float64    soft label P(v=+1) = sigmoid(k * v_hat)
tau               float64    transfer offered initiator -> counterparty (paid only if accepted)
c_a, c_b          float64    governance costs charged to initiator / counterparty
r_a, r_b          float64    reputation terms of initiator / counterparty
payoff_a          float64    initiator payoff   (0 when rejected: nothing happened)
payoff_b          float64    counterparty payoff (0 when rejected)
weight            float64    weight of the interaction (1; a governance lever may lower it,
                             e.g. vote normalisation): scales its surplus, externality and
                             reputation effect
step, epoch       int32      when it was resolved
================  =========  ================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class InteractionType(IntEnum):
    """Kinds of interaction: what a sandbox agent proposes (its action ``kind - 1``, the first
    five), the dilemma's games (``GAME``) and the commons' extractions (``HARVEST``)."""

    COLLABORATION = 0
    REPLY = 1
    TRADE = 2
    TASK = 3
    VOTE = 4
    GAME = 5  #: one player's move in a pairwise game of the dilemma
    HARVEST = 6  #: one agent's extraction from the commons (the agent on both sides)

    @classmethod
    def names(cls) -> list[str]:
        return [m.name.lower() for m in cls]


class ProxyObservablesModel(BaseModel):
    """Observable signals of one interaction, as seen by the counterparty."""

    model_config = ConfigDict(frozen=True)

    task_progress: float = 0.0
    rework_count: int = 0
    verifier_rejections: int = 0
    tool_misuse: int = 0
    engagement: float = 0.0


class SoftInteraction(BaseModel):
    """One interaction with its soft label, at the API boundary.

    Example:
        >>> r = SoftInteraction(initiator="agent_0", counterparty="agent_1", kind="trade",
        ...                     accepted=True, v=1, p=0.8)
        >>> r.kind, r.p
        (<InteractionType.TRADE: 2>, 0.8)
    """

    model_config = ConfigDict(frozen=True)

    initiator: str
    counterparty: str
    kind: InteractionType = InteractionType.COLLABORATION
    accepted: bool = False
    v: int = Field(1, description="hidden truth: +1 beneficial, -1 harmful")
    effort: float = 1.0
    dressing: float = 0.0
    observables: ProxyObservablesModel = ProxyObservablesModel()
    v_hat: float = 0.0
    p: float = Field(0.5, ge=0.0, le=1.0)
    tau: float = 0.0
    c_a: float = 0.0
    c_b: float = 0.0
    r_a: float = 0.0
    r_b: float = 0.0
    payoff_a: float = 0.0
    payoff_b: float = 0.0
    weight: float = 1.0
    step: int = 0
    epoch: int = 0

    def __init__(self, **data: Any) -> None:
        kind = data.get("kind")
        if isinstance(kind, str):
            try:
                data["kind"] = InteractionType[kind.upper()]
            except KeyError:
                raise ValueError(
                    f"unknown interaction kind {kind!r}; allowed: {InteractionType.names()}"
                ) from None
        super().__init__(**data)


_OBS_FIELDS = ("task_progress", "rework_count", "verifier_rejections", "tool_misuse",
               "engagement")

#: field name -> dtype of every column of an :class:`InteractionBatch`
BATCH_DTYPES: dict[str, type] = {
    "initiator": np.int32,
    "counterparty": np.int32,
    "kind": np.int8,
    "accepted": np.bool_,
    "v": np.int8,
    "effort": np.float64,
    "dressing": np.float64,
    "task_progress": np.float64,
    "rework_count": np.int16,
    "verifier_rejections": np.int16,
    "tool_misuse": np.int16,
    "engagement": np.float64,
    "v_hat": np.float64,
    "p": np.float64,
    "tau": np.float64,
    "c_a": np.float64,
    "c_b": np.float64,
    "r_a": np.float64,
    "r_b": np.float64,
    "payoff_a": np.float64,
    "payoff_b": np.float64,
    "weight": np.float64,
    "step": np.int32,
    "epoch": np.int32,
}


@dataclass
class InteractionBatch:
    """Columnar interactions: one numpy array per field, all of one length.

    Example:
        >>> b = InteractionBatch.empty(2)
        >>> b.p[:] = [0.9, 0.2]; b.accepted[:] = [True, False]
        >>> len(b), float(b.select(b.accepted).p[0])
        (2, 0.9)
    """

    initiator: np.ndarray
    counterparty: np.ndarray
    kind: np.ndarray
    accepted: np.ndarray
    v: np.ndarray
    effort: np.ndarray
    dressing: np.ndarray
    task_progress: np.ndarray
    rework_count: np.ndarray
    verifier_rejections: np.ndarray
    tool_misuse: np.ndarray
    engagement: np.ndarray
    v_hat: np.ndarray
    p: np.ndarray
    tau: np.ndarray
    c_a: np.ndarray
    c_b: np.ndarray
    r_a: np.ndarray
    r_b: np.ndarray
    payoff_a: np.ndarray
    payoff_b: np.ndarray
    weight: np.ndarray
    step: np.ndarray
    epoch: np.ndarray

    FIELDS = tuple(BATCH_DTYPES)

    @classmethod
    def empty(cls, n: int = 0) -> InteractionBatch:
        """A batch of ``n`` zeroed rows (``v`` = +1, ``p`` = 0.5, ``weight`` = 1)."""
        cols = {k: np.zeros(n, dtype=dt) for k, dt in BATCH_DTYPES.items()}
        cols["v"][:] = 1
        cols["p"][:] = 0.5
        cols["weight"][:] = 1.0
        return cls(**cols)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], n: int | None = None) -> InteractionBatch:
        """Build from a mapping of field -> array-like; missing fields take their defaults."""
        if n is None:
            n = len(next(iter(columns.values()))) if columns else 0
        unknown = set(columns) - set(BATCH_DTYPES)
        if unknown:
            raise ValueError(
                f"unknown interaction fields {sorted(unknown)}; allowed: {list(BATCH_DTYPES)}"
            )
        batch = cls.empty(n)
        for k, col in columns.items():
            arr = np.asarray(col, dtype=BATCH_DTYPES[k])
            if arr.shape != (n,):
                raise ValueError(f"field {k!r} has shape {arr.shape}, expected ({n},)")
            setattr(batch, k, arr)
        return batch

    @classmethod
    def concat(cls, batches: Iterable[InteractionBatch]) -> InteractionBatch:
        """Stack batches row-wise (an empty iterable gives an empty batch)."""
        batches = list(batches)
        if not batches:
            return cls.empty(0)
        return cls(**{k: np.concatenate([getattr(b, k) for b in batches]) for k in cls.FIELDS})

    def __len__(self) -> int:
        return int(self.p.shape[0])

    def select(self, index: np.ndarray) -> InteractionBatch:
        """Rows chosen by a boolean mask or an index array (copies)."""
        return InteractionBatch(**{k: getattr(self, k)[index] for k in self.FIELDS})

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_json_columns(self) -> dict[str, list]:
        """Columns as plain Python lists (floats round-trip exactly through JSON)."""
        return {k: v.tolist() for k, v in self.columns().items()}

    def equals(self, other: InteractionBatch) -> bool:
        """Exact equality of every column."""
        return len(self) == len(other) and all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in self.FIELDS
        )

    def to_records(self, agent_names: Sequence[str] | None = None) -> list[SoftInteraction]:
        """Materialise rows as :class:`SoftInteraction` (slow path: API boundary only)."""
        cols = self.to_json_columns()
        out = []
        for i in range(len(self)):
            row = {k: cols[k][i] for k in self.FIELDS}
            a, b = row.pop("initiator"), row.pop("counterparty")
            obs = ProxyObservablesModel(**{k: row.pop(k) for k in _OBS_FIELDS})
            out.append(SoftInteraction(
                initiator=agent_names[a] if agent_names is not None else str(a),
                counterparty=agent_names[b] if agent_names is not None else str(b),
                observables=obs, **row,
            ))
        return out

    @classmethod
    def from_records(cls, records: Sequence[SoftInteraction],
                     agent_index: Mapping[str, int]) -> InteractionBatch:
        """Inverse of :meth:`to_records` given a name -> index map."""
        cols: dict[str, list] = {k: [] for k in BATCH_DTYPES}
        for r in records:
            d = r.model_dump()
            obs = d.pop("observables")
            d["initiator"] = agent_index[r.initiator]
            d["counterparty"] = agent_index[r.counterparty]
            d["kind"] = int(r.kind)
            d.update(obs)
            for k in BATCH_DTYPES:
                cols[k].append(d[k])
        return cls.from_columns(cols, n=len(records))
