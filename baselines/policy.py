"""One policy interface for scripted, RL and LLM agents.

A :class:`Policy` maps an observation (and the agent's ``info``) to an action::

    action = policy.act(observation, info)
    actions = policy.act_batch(observations, infos)     # many agents, one call

Scripted policies are vectorised: they implement :meth:`Policy.act_arrays`, one numpy pass
over an :class:`ObsBatch` (rows = agents). ``act`` and ``act_batch`` stack dict observations
into an ``ObsBatch`` and call it, so every door runs the same decision code. The runner feeds
``act_arrays`` straight from the environment's preallocated arrays (the batched door).

Policies draw randomness only from their own seeded ``np.random.Generator``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator


@dataclass
class ObsBatch:
    """Observations of many agents as arrays (rows = agents).

    ``action_mask`` is flat: the per-dimension masks concatenated, ``nvec`` gives their sizes.
    """

    self_: np.ndarray          # (n, n_self_features)
    neighbors: np.ndarray      # (n, K, n_neighbor_features)
    neighbor_mask: np.ndarray  # (n, K)
    inbox: np.ndarray          # (n, M, n_inbox_features)
    action_mask: np.ndarray    # (n, sum(nvec))
    nvec: np.ndarray           # (n_dims,)

    def __len__(self) -> int:
        return self.self_.shape[0]

    @classmethod
    def from_dicts(cls, observations: Sequence[dict]) -> ObsBatch:
        """Stack per-agent dict observations (as the sandbox returns them)."""
        if not observations:
            raise ValueError("ObsBatch.from_dicts: need at least one observation, got none")
        masks = observations[0]["action_mask"]
        nvec = np.array([len(m) for m in masks], dtype=np.int64)
        return cls(
            self_=np.stack([o["self"] for o in observations]),
            neighbors=np.stack([o["neighbors"] for o in observations]),
            neighbor_mask=np.stack([o["neighbor_mask"] for o in observations]),
            inbox=np.stack([o["inbox"] for o in observations]),
            action_mask=np.stack([np.concatenate(o["action_mask"]) for o in observations]),
            nvec=nvec,
        )

    @classmethod
    def from_env(cls, env: Any, rows: np.ndarray | slice | None = None) -> ObsBatch:
        """Rows of an environment's preallocated observation arrays (the batched door)."""
        oa = env.obs_arrays
        sel = slice(None) if rows is None else rows
        return cls(self_=oa.self_[sel], neighbors=oa.neighbors[sel],
                   neighbor_mask=oa.neighbor_mask[sel], inbox=oa.inbox[sel],
                   action_mask=oa.action_mask[sel], nvec=env.nvec)

    def mask(self, dim: int) -> np.ndarray:
        """The ``(n, nvec[dim])`` mask of one action dimension."""
        start = int(self.nvec[:dim].sum())
        return self.action_mask[:, start:start + int(self.nvec[dim])]


class Policy:
    """Base class of every policy.

    Subclasses set ``name`` and a ``classifier`` dict of properties (Axelrod style: memory
    depth, stochastic, uses signals, ...), and implement :meth:`act_arrays` (vectorised) or
    override :meth:`act_batch` (e.g. LLM policies, which read ``info["view"]``); the runner
    uses the array door only when every policy is :meth:`batched`.
    """

    name: ClassVar[str] = "policy"
    classifier: ClassVar[dict[str, Any]] = {}

    class Params(BaseModel):
        """A policy's parameters: subclass it in a policy class (``class Params(Policy.Params)``).

        Frozen, unknown keys are errors, and strict: an int field takes an int (not ``"3"`` or
        ``2.0``), a bool field a bool (not ``"yes"`` or 1), a float field a finite number (an
        int is fine; a string, ``nan`` or ``inf`` is not). Tuple fields accept lists (as YAML
        gives them).
        """

        model_config = ConfigDict(frozen=True, extra="forbid", strict=True,
                                  allow_inf_nan=False)

        @model_validator(mode="before")
        @classmethod
        def _lists_as_tuples(cls, data: Any) -> Any:
            if not isinstance(data, dict):
                return data
            out = dict(data)
            for name, field in cls.model_fields.items():
                tp = field.annotation
                options = typing.get_args(tp) if typing.get_origin(tp) in (
                    typing.Union, types.UnionType) else (tp,)
                if isinstance(out.get(name), list) and any(
                        typing.get_origin(t) is tuple for t in options):
                    out[name] = tuple(out[name])
            return out

    def __init__(self, seed: int | None = None, **params: Any) -> None:
        self.params = self.Params(**params)
        self._seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Re-seed the policy's generator (``None``: back to the constructor's seed)."""
        self.rng = np.random.default_rng(self._seed if seed is None else seed)

    def act(self, observation: Any, info: dict | None = None) -> np.ndarray:
        """One agent's action."""
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: Sequence[Any],
                  infos: Sequence[dict | None] | None = None) -> np.ndarray:
        """Actions of many agents, ``(n, n_dims)``; default: stack and call ``act_arrays``."""
        return self.act_arrays(ObsBatch.from_dicts(observations))

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        """Vectorised decision over an :class:`ObsBatch`; returns ``(n, n_dims)`` ints.

        Array-batched policies (scripted ones) implement this; policies that need ``infos``
        (e.g. LLM policies reading ``info["view"]``) override :meth:`act_batch` instead.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no act_arrays: it acts through act_batch(observations, "
            f"infos)")

    @classmethod
    def batched(cls) -> bool:
        """Whether the policy acts from the env's arrays alone: it implements act_arrays and
        does not override act_batch (an override may read infos)."""
        return cls.act_arrays is not Policy.act_arrays and cls.act_batch is Policy.act_batch

    def __repr__(self) -> str:
        params = self.params.model_dump()
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"
