"""The thin door shared by every variant: actions dict -> array, lazy per-agent infos, and
the error that config models use to report several problems with their field paths.

The kernel of each environment works on arrays indexed by agent (the batched door); this
module turns PettingZoo's per-agent dicts into those arrays and back without building anything
per agent that nobody reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from pydantic_core import PydanticCustomError

#: pydantic error type of :func:`config_problems` (``ctx["problems"]``: ``(path, problem)``)
CONFIG_PROBLEMS = "config_problems"


def config_problems(problems: Sequence[tuple[str, str]]) -> PydanticCustomError:
    """One pydantic error carrying several ``(dotted.sub.path, problem)`` pairs.

    Raise it from a model validator that checks fields together: pydantic gives a model
    validator's error the model's location only, so the sub-paths travel in the error's
    context, where :class:`baselines.scenario.ConfigError` finds them (one line each).

    Args:
        problems: ``(path relative to the model, what is wrong)`` pairs, at least one.

    Returns:
        The error to raise; its message lists the problems, one per line.
    """
    problems = [(str(path), str(problem)) for path, problem in problems]
    text = "\n".join(f"{path}: {problem}" if path else problem for path, problem in problems)
    return PydanticCustomError(CONFIG_PROBLEMS, "{text}", {"text": text, "problems": problems})


def episode_problems(n_agents: int, n_epochs: int, steps_per_epoch: int, network: Any,
                     **per_agent: Sequence[Any] | None) -> list[tuple[str, str]]:
    """The checks every variant's config shares: the run length fits the records' int32
    steps, per-agent tuples (``groups=...``) have one entry per agent, custom edges name
    existing agents. ``(path, problem)`` pairs for :func:`config_problems`."""
    problems: list[tuple[str, str]] = []
    if n_epochs * steps_per_epoch >= 2**31:  # steps are int32 in the records
        problems.append(("n_epochs", f"n_epochs * steps_per_epoch must be below 2**31 "
                                     f"steps, got {n_epochs * steps_per_epoch}"))
    for name, values in per_agent.items():
        if values is not None and len(values) != n_agents:
            problems.append((name, f"has {len(values)} entries, expected n_agents = "
                                   f"{n_agents}"))
    if network.topology == "custom" and network.edges:
        bad = [pos for pos, (a, b) in enumerate(network.edges) if max(a, b) >= n_agents]
        for pos in bad[:10]:
            problems.append((f"network.edges[{pos}]", (
                f"agent index out of range: the agents are 0..{n_agents - 1}, "
                f"received {tuple(network.edges[pos])}")))
        if len(bad) > 10:
            problems.append(("network.edges", f"{len(bad) - 10} more edges name agents "
                                              f"outside 0..{n_agents - 1}"))
    return problems


class ActionError(ValueError):
    """An action outside its space: names the agent, the dimension and the allowed values."""


def stack_actions(actions: Any, agents: Sequence[str], index: dict[str, int],
                  nvec: np.ndarray, dim_names: Sequence[str], env_name: str,
                  noop: np.ndarray) -> np.ndarray:
    """Gather a ``{agent: action}`` dict (or an ``(n, d)`` array) into an int64 array.

    Agents missing from the dict take ``noop``. Every value is checked against ``nvec`` in one
    vectorised pass (integer vectors, the common case, cost one ``np.concatenate`` and two
    comparisons); only when that check fails is the input searched for the first offending
    agent, which the :class:`ActionError` names together with the dimension, the allowed
    values and the value received as given (a float or a huge integer is shown as it is, not
    as the integer it would wrap to).

    Args:
        actions: ``{agent: action vector}`` or an ``(n_agents, n_dims)`` array.
        agents: Agent names in index order.
        index: Agent name -> row.
        nvec: Number of values of each action dimension.
        dim_names: Name of each action dimension.
        env_name: Environment name used in messages.
        noop: The action of an agent missing from the dict.

    Returns:
        The ``(n_agents, n_dims)`` int64 actions.

    Raises:
        ActionError: Unknown agents, a wrong shape, a value that is not an integer (strings,
            ``None``, complex numbers, nested junk, non-integral or non-finite floats), or an
            integer outside its dimension's range.
    """
    n, d = len(agents), len(nvec)
    if isinstance(actions, np.ndarray):
        arr = actions
        if arr.shape != (n, d):
            raise ActionError(f"{env_name}: batched actions must have shape ({n}, {d}), "
                              f"got {arr.shape}")
        pairs: Any = None
    elif isinstance(actions, dict):
        if len(actions) == n and list(actions) == agents:  # full and in order: no lookups
            vals = list(actions.values())
        elif actions.keys() <= index.keys():
            get = actions.get
            vals = [get(a, noop) for a in agents]  # missing agents take the no-op
        else:
            unknown = [a for a in actions if a not in index]
            raise ActionError(f"{env_name}: actions given for unknown agents {unknown[:5]}; "
                              f"agents are {list(agents[:5])}{'...' if n > 5 else ''}")
        pairs = zip(agents, vals)
        try:  # one C-level pass when every action is a flat vector (the common case)
            arr = np.concatenate(vals)
        except (TypeError, ValueError, OverflowError):
            arr = None
        if arr is None or arr.shape != (n * d,):
            _raise_bad_entry(pairs, d, nvec, dim_names, env_name)
        arr = arr.reshape(n, d)
    else:
        raise ActionError(f"{env_name}: step() expects a dict {{agent: action}} or an array of "
                          f"shape ({n}, {d}), got {type(actions).__name__}")
    kind = arr.dtype.kind
    if kind in "iu":
        bad = (arr < 0) | (arr >= nvec)
        if bad.any():
            _raise_first_bad(arr, pairs, agents, nvec, dim_names, env_name)
        return arr.astype(np.int64, copy=False)
    if kind in "bf":
        with np.errstate(invalid="ignore"):  # nan and inf are reported, not warned about
            bad = (arr < 0) | (arr >= nvec) | (np.mod(arr, 1) != 0) | ~np.isfinite(arr)
        if bad.any():
            _raise_first_bad(arr, pairs, agents, nvec, dim_names, env_name)
        return arr.astype(np.int64)
    # strings, None, complex numbers, objects: find the first offending entry
    _raise_first_bad(arr, pairs, agents, nvec, dim_names, env_name)
    raise AssertionError("unreachable")  # pragma: no cover


def _entry_problem(x: Any, size: int) -> str | None:
    """Why one action entry is not an integer in ``0..size-1`` (``None``: it is one)."""
    value = x.item() if isinstance(x, np.generic) else x
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        whole: Any = int(value)
    elif isinstance(value, int):  # bool included: True is 1
        whole = int(value)
    else:
        return (f"expects an integer in 0..{size - 1}, got {value!r} "
                f"({type(value).__name__})")
    if not 0 <= whole < size:
        return f"allows 0..{size - 1}, got {value!r}"
    return None


def _raise_first_bad(arr: np.ndarray, pairs: Any, agents: Sequence[str], nvec: np.ndarray,
                     dim_names: Sequence[str], env_name: str) -> None:
    """Raise for the first offending agent, reading the values as the caller gave them."""
    _raise_bad_entry(zip(agents, arr) if pairs is None else pairs, len(nvec), nvec,
                     dim_names, env_name)


def _raise_bad_entry(pairs: Any, d: int, nvec: np.ndarray, dim_names: Sequence[str],
                     env_name: str) -> None:
    """Raise an :class:`ActionError` for the first agent whose action is malformed.

    Slow (a Python loop over agents) but only run once a vectorised check has failed.
    """
    for a, act in pairs:
        entries = None
        if isinstance(act, (str, bytes, dict)) or act is None:
            shape: Any = type(act).__name__
        else:
            try:
                entries = np.asarray(act, dtype=object)
                shape = entries.shape
            except (ValueError, TypeError):  # ragged nested sequences
                shape = "a ragged nested sequence"
        if shape != (d,) or entries is None:
            got = f"shape {shape}" if isinstance(shape, tuple) else shape
            raise ActionError(f"{env_name}: action for agent {a!r} must have {d} entries "
                              f"({', '.join(dim_names)}), got {got}: {act!r}")
        for c, x in enumerate(entries):
            problem = _entry_problem(x, int(nvec[c]))
            if problem is not None:
                what = "is out of its space" if problem.startswith("allows") else \
                    "must be integers"
                full = [v.item() if isinstance(v, np.generic) else v for v in entries]
                raise ActionError(f"{env_name}: action for agent {a!r} {what}: dimension {c} "
                                  f"({dim_names[c]!r}) {problem} (full action {full}; nvec "
                                  f"{nvec.tolist()})")
    raise ActionError(f"{env_name}: actions must be integer vectors of length {d}")


class AgentInfo(dict):
    """``infos[agent]``: a real ``dict`` whose heavy entries are built on first access.

    The env keeps one ``AgentInfo`` per agent for the whole episode. Keys listed in
    ``lazy`` (e.g. ``"interactions"``, ``"view"``) are computed by ``builder(key, index)`` the
    first time they are read in a step and cached until the env's next step; entries written
    by wrappers are per-step too. So an agent whose info nobody reads costs nothing. Like
    observations, an info is valid until the next ``step``; call :meth:`materialize` for a
    plain ``dict`` to keep.
    """

    __slots__ = ("_builder", "_index", "_lazy", "_touched")

    def __init__(self, builder: Callable[[str, int], Any], index: int,
                 lazy: tuple[str, ...], touched: list) -> None:
        super().__init__()
        self._builder = builder
        self._index = index
        self._lazy = lazy
        self._touched = touched

    def __missing__(self, key: str) -> Any:
        if key not in self._lazy:
            raise KeyError(key)
        value = self._builder(key, self._index)
        self[key] = value
        return value

    def _register(self) -> None:
        if not dict.__len__(self):  # first entry this step: forget it at the next step
            self._touched.append(self)

    def __setitem__(self, key: str, value: Any) -> None:
        self._register()
        dict.__setitem__(self, key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def __ior__(self, other: Any) -> AgentInfo:
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def _fill(self) -> None:
        for k in self._lazy:
            if not dict.__contains__(self, k):
                self[k]  # noqa: B018 - builds and caches

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self._lazy or dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)

    def keys(self):  # type: ignore[override]
        self._fill()
        return dict.keys(self)

    def items(self):  # type: ignore[override]
        self._fill()
        return dict.items(self)

    def values(self):  # type: ignore[override]
        self._fill()
        return dict.values(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AgentInfo):
            other._fill()
        self._fill()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AgentInfo({self.materialize()!r})"

    def __copy__(self) -> dict:
        return self.materialize()

    def __deepcopy__(self, memo: dict) -> dict:
        import copy
        return copy.deepcopy(self.materialize(), memo)

    def __reduce__(self):
        return (dict, (self.materialize(),))

    def materialize(self) -> dict:
        """A plain ``dict`` with every entry built (safe to keep across steps)."""
        self._fill()
        return dict(dict.items(self))

    def invalidate(self) -> None:
        dict.clear(self)


def invalidate_infos(touched: list) -> None:
    """Forget what was built for the last step (called by the env at each step)."""
    for info in touched:
        info.invalidate()
    touched.clear()


class DictDoor:
    """PettingZoo's dict API as a thin door onto a variant's array kernel.

    The host environment sets ``_obs_space`` (its ``Dict`` observation space) and calls
    ``_make_spaces()`` in ``__init__``; it provides ``possible_agents``,
    ``agent_name_mapping``, ``nvec``, ``action_dim_names``, ``_noop`` (the no-op action),
    ``_label``, ``obs_arrays`` (its preallocated observation arrays: ``named()`` and the flat
    ``action_mask``), ``reward_array``, ``t``, ``max_steps``, ``config.copy_observations``,
    ``render_mode`` and ``render()``, ``_info_keys`` (the lazy ``infos`` entries) with
    ``_build_info(key, i)``, and ``step_arrays(actions, validate)``. It calls
    ``_build_dicts()`` at reset, once the arrays exist: the per-agent observation dicts are
    views into them, built once per episode, and ``step`` only converts actions in and
    rewards out.
    """

    # the per-agent observation dicts and infos are views and caches over the arrays: a copy
    # (copy.deepcopy, pickle) rebuilds them over its own arrays instead of carrying stale ones
    _VIEWS = ("_obs_dicts", "infos", "_touched", "_false")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._VIEWS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if getattr(self, "obs_arrays", None) is not None:
            self._build_dicts()

    def _make_spaces(self) -> None:
        """One observation space (a copy of ``_obs_space``) and one ``MultiDiscrete(nvec)``
        per agent: seeding one agent's space leaves the others alone."""
        from gymnasium import spaces

        self._obs_spaces = {a: spaces.Dict(dict(self._obs_space.spaces))
                            for a in self.possible_agents}
        self._act_spaces = {a: spaces.MultiDiscrete(self.nvec) for a in self.possible_agents}
        self._seg = np.concatenate([[0], np.cumsum(self.nvec)])

    def observation_space(self, agent: str) -> Any:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> Any:
        return self._act_spaces[agent]

    @property
    def epoch(self) -> int:
        """The epoch of the step being played (the last epoch once the episode is over)."""
        return min(self.t, self.max_steps - 1) // self.config.steps_per_epoch

    def allowed_actions(self, i: int) -> dict[str, list[int]]:
        """Agent ``i``'s action mask by dimension name: the value indices allowed now (what a
        text policy's view carries as ``"mask"``)."""
        row = self.obs_arrays.action_mask[i]
        seg = self._seg
        return {name: np.flatnonzero(row[seg[d]:seg[d + 1]]).tolist()
                for d, name in enumerate(self.action_dim_names)}

    def action_masks(self) -> np.ndarray:
        """Flat ``(n_agents, sum(nvec))`` int8 masks (the layout MaskablePPO expects)."""
        return self.obs_arrays.action_mask

    def actions_by_name(self, **per_dim: Any) -> np.ndarray:
        """An ``(n_agents, n_dims)`` action array: every dimension's no-op, except the
        dimensions named (``action_dim_names``), each set to a scalar or one value per agent.

        Example:
            >>> import envs
            >>> env = envs.make("commons-v0", n_agents=3)
            >>> env.actions_by_name(take=2, accuse=[0, 1, 1])[:, :2].tolist()
            [[2, 0], [2, 0], [2, 0]]
        """
        index = {name: d for d, name in enumerate(self.action_dim_names)}
        unknown = sorted(set(per_dim) - set(index))
        if unknown:
            raise ValueError(f"{self._label}: unknown action dimensions {unknown}; allowed: "
                             f"{', '.join(self.action_dim_names)}")
        out = np.tile(np.asarray(self._noop, dtype=np.int64), (len(self.possible_agents), 1))
        for name, value in per_dim.items():
            out[:, index[name]] = value
        return out

    def sample_actions(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Uniformly random valid actions of every agent, in one vectorised draw.

        Per agent and dimension, uniform over the values the current action mask allows (0
        when it allows none): the batched equivalent of ``action_space(a).sample(mask=...)``
        for all agents, in milliseconds at 100 000 agents.

        Args:
            rng: The generator to draw from (the env's own generator is left alone); a fresh
                unseeded one when ``None``, so pass a seeded one for reproducible draws.

        Returns:
            ``(n_agents, len(nvec))`` int64 actions, valid input to ``step_arrays``.

        Example:
            >>> import envs
            >>> env = envs.make("sandbox-v0", n_agents=3, n_epochs=1, steps_per_epoch=2)
            >>> _ = env.reset(seed=0)
            >>> a = env.sample_actions(np.random.default_rng(0))
            >>> a.shape, bool((a[:, 5:] == 0).all())   # empty inboxes: only "reject"
            ((3, 9), True)
        """
        if getattr(self, "obs_arrays", None) is None:
            raise RuntimeError(f"{self._label}: sample_actions called before reset(); call "
                               "reset()")
        rng = np.random.default_rng() if rng is None else rng
        mask = self.obs_arrays.action_mask != 0
        starts, widths = self._seg[:-1], np.diff(self._seg)
        allowed = np.add.reduceat(mask, starts, axis=1, dtype=np.int64)  # (n, dims)
        pick = (rng.random(allowed.shape) * allowed).astype(np.int64)  # 0 .. allowed - 1
        # the pick-th allowed value of a dimension is the number of its columns with at most
        # `pick` allowed values up to and including them
        cum = np.cumsum(mask, axis=1, dtype=np.int64)
        before = np.zeros_like(allowed)
        before[:, 1:] = cum[:, starts[1:] - 1]
        below = cum <= np.repeat(pick + before, widths, axis=1)
        value = np.add.reduceat(below, starts, axis=1, dtype=np.int64)
        return np.where(allowed > 0, value, 0)

    def _build_dicts(self) -> None:
        oa = self.obs_arrays
        seg = np.concatenate([[0], np.cumsum(self.nvec)])
        named = oa.named()
        self._obs_dicts = {}
        for i, a in enumerate(self.possible_agents):
            mask_row = oa.action_mask[i]
            obs = {name: arr[i] for name, arr in named.items()}
            obs["action_mask"] = tuple(mask_row[seg[d]:seg[d + 1]] for d in range(len(seg) - 1))
            self._obs_dicts[a] = obs
        self._touched: list[AgentInfo] = []
        self.infos = {a: AgentInfo(self._build_info, i, self._info_keys, self._touched)
                      for i, a in enumerate(self.possible_agents)}
        self._false = dict.fromkeys(self.possible_agents, False)

    def _observations_out(self) -> dict:
        if not self.config.copy_observations:
            return self._obs_dicts
        return {a: {k: (tuple(x.copy() for x in v) if isinstance(v, tuple) else v.copy())
                    for k, v in d.items()} for a, d in self._obs_dicts.items()}

    def step(self, actions: dict[str, Any]):
        """PettingZoo's ``step``: the actions dict through the kernel, dicts out."""
        arr = stack_actions(actions, self.possible_agents, self.agent_name_mapping, self.nvec,
                            self.action_dim_names, self._label, self._noop)
        self.step_arrays(arr, validate=False)
        rewards = dict(zip(self.possible_agents, self.reward_array.tolist()))
        # fresh dicts each step: callers may mutate them
        ended = getattr(self, "terminated", False)
        terms = dict.fromkeys(self.possible_agents, True) if ended else self._false.copy()
        truncs = (dict.fromkeys(self.possible_agents, True)
                  if self.t >= self.max_steps and not ended else self._false.copy())
        infos = self.infos
        if self.config.copy_observations:
            infos = {a: info.materialize() for a, info in infos.items()}
        if self.render_mode == "human":
            print(self.render())
        return self._observations_out(), rewards, terms, truncs, infos
