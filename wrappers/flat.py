"""Flat views: one ``Box`` observation per agent and a flat action mask, for RL libraries.

Stable-Baselines3 rejects our ``Dict`` observations (the action mask inside them is a
``Tuple``), and SuperSuit's ``flatten_v0`` cannot flatten them either. The flat view lays every
named observation array of an agent out in one float32 vector:

- **Feature order**: the observation space's keys in their order (gymnasium's ``Dict`` sorts
  them: the sandbox's ``inbox``, ``neighbor_mask``, ``neighbors``, ``self``), each array
  row-major, ``action_mask`` left out. So the flat vector equals
  ``gymnasium.spaces.flatten`` of the observation without its mask, and
  :attr:`FlatLayout.names` names every position: ``self.resources``,
  ``neighbors[2].trust``, ``neighbor_mask[2]``, ``inbox[0].p``, ``their_moves[1].lag_3``.
- **The action mask** stays beside it, flat: ``(sum(nvec),)`` int8, the per-dimension masks
  concatenated (what sb3-contrib's ``MaskablePPO`` expects of a ``MultiDiscrete`` space), as
  ``action_masks()`` and ``info["action_mask"]``. Every dimension allows at least one value
  in every state, so a masked distribution is always defined.

:class:`FlatObservation` is the PettingZoo wrapper (any variant, with or without levers);
:class:`~wrappers.single_agent.SingleAgentEnv` and
:class:`~wrappers.vec_env.SharedPolicyVecEnv` use the same :class:`FlatLayout`, and so does
:class:`baselines.rl.RLPolicy` when it acts, so a model sees the same features in training
and in a run.

Example:
    >>> import envs
    >>> env = FlatObservation(envs.make("sandbox-v0", n_agents=3))
    >>> obs, infos = env.reset(seed=0)
    >>> obs["agent_0"].shape, env.layout.names[-11], infos["agent_0"]["action_mask"].shape
    ((123,), 'self.resources', (33,))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo.utils import BaseParallelWrapper

__all__ = ["FlatLayout", "FlatObservation", "flatten_batch"]


class FlatLayout:
    """Where each observation array of a variant lies in the flat vector of one agent.

    Built from an environment (wrapped or not; before or after ``reset``): its observation
    space gives the arrays, their order and shapes, and the variant's ``OBS_FEATURES`` the
    labels of each array's last axis.

    Attributes:
        parts: ``(name, shape per agent, start, stop)`` of each array, in flat order.
        names: The name of every flat position.
        size: The length of the flat vector.
        nvec: The action space's ``nvec``; ``mask_size`` is ``sum(nvec)``.
    """

    def __init__(self, env: Any) -> None:
        base = env.unwrapped
        agent = base.possible_agents[0]
        space = base.observation_space(agent)
        labels: Mapping[str, tuple[str, ...]] = getattr(base, "OBS_FEATURES", {})
        self.parts: list[tuple[str, tuple[int, ...], int, int]] = []
        self.names: list[str] = []
        start = 0
        for name, sub in space.spaces.items():
            if name == "action_mask":
                continue
            shape = tuple(int(x) for x in sub.shape)
            size = int(np.prod(shape)) if shape else 1
            self.parts.append((name, shape, start, start + size))
            self.names += _position_names(name, shape, labels.get(name))
            start += size
        self.size = start
        self.nvec = np.asarray(base.nvec, dtype=np.int64)
        self.mask_size = int(self.nvec.sum())
        self.env_id = getattr(base, "env_id", "")

    def space(self) -> spaces.Box:
        """The flat observation space of one agent."""
        return spaces.Box(-np.inf, np.inf, (self.size,), np.float32)

    def fill(self, named: Mapping[str, np.ndarray], out: np.ndarray,
             rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Write the flat observations of ``rows`` (all agents: ``None``) into ``out``.

        Args:
            named: The named observation arrays (``env.obs_arrays.named()`` or an
                :class:`~baselines.policy.ObsBatch`'s ``arrays``), rows = agents.
            out: ``(len(rows), size)`` float32, written in place.
            rows: The agents to take.
        """
        sel = slice(None) if rows is None else rows
        for name, _shape, lo, hi in self.parts:
            part = named[name][sel]
            out[:, lo:hi] = part.reshape(len(part), hi - lo)
        return out

    def flatten(self, named: Mapping[str, np.ndarray],
                rows: np.ndarray | slice | None = None) -> np.ndarray:
        """A new ``(n, size)`` float32 array of the flat observations of ``rows``."""
        first = named[self.parts[0][0]]
        n = len(first) if rows is None else len(np.arange(len(first))[rows])
        return self.fill(named, np.empty((n, self.size), dtype=np.float32), rows)

    def describe(self) -> dict[str, Any]:
        """What a saved model records of the layout it was trained on (JSON-able)."""
        return {"env": self.env_id, "size": self.size, "nvec": self.nvec.tolist(),
                "parts": [[name, list(shape)] for name, shape, _, _ in self.parts]}

    def mismatch(self, described: Mapping[str, Any]) -> str | None:
        """How this layout differs from a :meth:`describe`-d one (``None``: it does not)."""
        mine = self.describe()
        if described.get("env") and mine["env"] and described["env"] != mine["env"]:
            return f"it was trained on {described['env']}, this environment is {mine['env']}"
        for key, what in (("parts", "observation arrays"), ("nvec", "action space nvec")):
            if key in described and [list(x) if isinstance(x, (list, tuple)) else x
                                      for x in described[key]] != mine[key]:
                return (f"its {what} were {described[key]}, this environment's are "
                        f"{mine[key]} (different max_neighbors, inbox_size, history_length "
                        f"or action levels?)")
        return None


def _position_names(name: str, shape: tuple[int, ...],
                    labels: tuple[str, ...] | None) -> list[str]:
    """``name``, ``name.label``, ``name[k].label``, ``name[k]``, ``name[k][j]``..."""
    if not shape:
        return [name]
    if labels is not None and len(labels) != shape[-1]:
        labels = None
    lead = [f"{name}{''.join(f'[{i}]' for i in idx)}" for idx in np.ndindex(*shape[:-1])]
    last = ([f".{x}" for x in labels] if labels is not None
            else [f"[{j}]" for j in range(shape[-1])])
    return [f"{head}{tail}" for head in lead for tail in last]


def flatten_batch(obs: Any, layout: FlatLayout | None = None) -> np.ndarray:
    """The ``(n, size)`` flat observations of an :class:`~baselines.policy.ObsBatch`: its
    arrays in sorted name order (the observation space's), each row-major."""
    arrays = obs.arrays
    if layout is not None:
        return layout.flatten(arrays)
    n = len(obs)
    return np.concatenate([np.asarray(arrays[k], dtype=np.float32).reshape(n, -1)
                           for k in sorted(arrays)], axis=1)


class FlatObservation(BaseParallelWrapper):
    """PettingZoo wrapper: ``Box`` observations and the flat mask in ``infos``.

    Wrap it outermost (over the levers). Observations are rows of one preallocated
    ``(n_agents, size)`` array, updated in place at each step (valid until the next step,
    like the environment's own; ``copy=True`` returns fresh arrays); ``infos[agent]
    ["action_mask"]`` and :meth:`action_masks` give the flat masks.
    """

    def __init__(self, env: Any, copy: bool = False) -> None:
        super().__init__(env)
        self.layout = FlatLayout(env)
        self._copy = copy
        self._space = self.layout.space()
        self._flat: np.ndarray | None = None
        self._views: dict[str, np.ndarray] = {}

    def observation_space(self, agent: str) -> spaces.Box:
        return self._space

    def _out(self) -> dict[str, np.ndarray]:
        base = self.env.unwrapped
        self.layout.fill(base.obs_arrays.named(), self._flat)
        if self._copy:
            return {a: v.copy() for a, v in self._views.items()}
        return self._views

    def reset(self, seed: int | None = None, options: dict | None = None):
        _, infos = self.env.reset(seed=seed, options=options)
        base = self.env.unwrapped
        n = len(base.possible_agents)
        if self._flat is None or len(self._flat) != n:
            self._flat = np.zeros((n, self.layout.size), dtype=np.float32)
            self._views = {a: self._flat[i] for i, a in enumerate(base.possible_agents)}
        return self._out(), infos

    def step(self, actions: dict[str, Any]):
        _, rewards, terms, truncs, infos = self.env.step(actions)
        return self._out(), rewards, terms, truncs, infos

    def action_masks(self) -> np.ndarray:
        """Flat ``(n_agents, sum(nvec))`` int8 masks."""
        return self.env.unwrapped.obs_arrays.action_mask
