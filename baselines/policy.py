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
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator


class ObsBatch:
    """Observations of many agents as arrays (rows = agents), for any variant.

    An ``ObsBatch`` holds the environment's **named observation arrays** (``arrays``: the keys
    of its ``Dict`` observation space without ``action_mask``, each with one row per agent),
    the **flat action mask** ``(n, sum(nvec))`` (the per-dimension masks concatenated) and
    ``nvec``. Arrays are read as attributes: ``obs.neighbors`` is ``obs.arrays["neighbors"]``,
    and a trailing underscore reaches a name that is not a good identifier (the sandbox's
    ``obs.self_`` is ``obs.arrays["self"]``). So a policy of any variant uses the same doors,
    runner and CLI; only the names it reads are its variant's.

    Example:
        >>> import numpy as np
        >>> obs = ObsBatch({"self": np.zeros((2, 3))}, action_mask=np.ones((2, 5), np.int8),
        ...                nvec=np.array([2, 3]))
        >>> len(obs), obs.self_.shape, obs.names, obs.mask(1).shape
        (2, (2, 3), ['self'], (2, 3))
    """

    __slots__ = ("arrays", "action_mask", "nvec")

    def __init__(self, arrays: Mapping[str, np.ndarray] | None = None, *,
                 action_mask: np.ndarray, nvec: np.ndarray, **named: np.ndarray) -> None:
        merged = dict(arrays or {})
        for key, value in named.items():  # self_=... is the array named "self"
            merged[key[:-1] if key.endswith("_") else key] = value
        self.arrays = merged
        self.action_mask = action_mask
        self.nvec = np.asarray(nvec)

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = object.__getattribute__(self, "arrays")
        if name in arrays:
            return arrays[name]
        if name.endswith("_") and name[:-1] in arrays:
            return arrays[name[:-1]]
        raise AttributeError(f"ObsBatch has no array {name!r}; this variant's arrays are "
                             f"{sorted(arrays)}")

    @property
    def names(self) -> list[str]:
        """The names of the observation arrays."""
        return list(self.arrays)

    def __len__(self) -> int:
        return int(self.action_mask.shape[0])

    @classmethod
    def from_dicts(cls, observations: Sequence[Mapping[str, Any]]) -> ObsBatch:
        """Stack per-agent dict observations (any variant's ``Dict`` observation)."""
        if not observations:
            raise ValueError("ObsBatch.from_dicts: need at least one observation, got none")
        first = observations[0]
        masks = first["action_mask"]
        nvec = np.array([len(m) for m in masks], dtype=np.int64)
        arrays = {k: np.stack([o[k] for o in observations]) for k in first
                  if k != "action_mask"}
        return cls(arrays, action_mask=np.stack([np.concatenate(o["action_mask"])
                                                 for o in observations]), nvec=nvec)

    @classmethod
    def from_env(cls, env: Any, rows: np.ndarray | slice | None = None) -> ObsBatch:
        """Rows of an environment's preallocated observation arrays (the batched door).

        The environment's ``obs_arrays`` gives its named arrays by ``named()`` and the flat
        mask as ``action_mask``.
        """
        oa = env.obs_arrays
        sel = slice(None) if rows is None else rows
        return cls({k: v[sel] for k, v in oa.named().items()},
                   action_mask=oa.action_mask[sel], nvec=env.nvec)

    def mask(self, dim: int) -> np.ndarray:
        """The ``(n, nvec[dim])`` mask of one action dimension."""
        start = int(self.nvec[:dim].sum())
        return self.action_mask[:, start:start + int(self.nvec[dim])]


class Parametrised:
    """A small declarative decision-maker (a policy, a dilemma strategy): a ``name``, a
    ``classifier`` dict, validated ``Params`` and its own seeded ``np.random.Generator``."""

    name: ClassVar[str] = "parametrised"
    classifier: ClassVar[dict[str, Any]] = {}

    class Params(BaseModel):
        """Parameters: subclass it in a class of your own (``class Params(Policy.Params)``).

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
        """Re-seed the generator (``None``: back to the constructor's seed)."""
        self.rng = np.random.default_rng(self._seed if seed is None else seed)

    def __repr__(self) -> str:
        params = self.params.model_dump()
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"


class Policy(Parametrised):
    """Base class of every policy.

    Subclasses set ``name`` and a ``classifier`` dict of properties (Axelrod style: memory
    depth, stochastic, uses signals, ...), and implement :meth:`act_arrays` (vectorised) or
    override :meth:`act_batch` (e.g. LLM policies, which read ``info["view"]``); the runner
    uses the array door only when every policy is :meth:`batched`. Parameters are a
    ``Params`` model (``class Params(Policy.Params)``); randomness comes only from
    ``self.rng``.
    """

    name: ClassVar[str] = "policy"
    #: the variants (environment ids without their version, e.g. ``"sandbox"``) whose
    #: observations the policy reads; ``None``: any variant
    variants: ClassVar[tuple[str, ...] | None] = None
    #: whether ``act_batch`` mostly waits on I/O (an LLM provider): the runner then lets
    #: such policies of different scenario entries wait at the same time
    io_bound: ClassVar[bool] = False

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

    def pop_turns(self) -> list[dict]:
        """What the policy said since the last call, one dict per agent and step (an LLM
        policy's prompt, reply, reasoning, action, fallback); each names its ``agent``. The
        runner writes them to the event log as ``turn`` events. Default: nothing."""
        return []

    def bind_run(self, run_dir: Any, **options: Any) -> None:
        """Called by ``distsafe run`` before the run with its folder (an LLM policy keeps its
        response cache there) and run-wide options (``dry_run``). Default: nothing."""

    @classmethod
    def batched(cls) -> bool:
        """Whether the policy acts from the env's arrays alone: it implements act_arrays and
        does not override act_batch (an override may read infos)."""
        return cls.act_arrays is not Policy.act_arrays and cls.act_batch is Policy.act_batch
