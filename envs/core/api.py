"""The thin dict door shared by every variant: actions dict -> array, lazy per-agent infos.

The kernel of each environment works on arrays indexed by agent (the batched door); this
module turns PettingZoo's per-agent dicts into those arrays and back without building anything
per agent that nobody reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


class ActionError(ValueError):
    """An action outside its space: names the agent, the dimension and the allowed values."""


def stack_actions(actions: Any, agents: Sequence[str], index: dict[str, int],
                  nvec: np.ndarray, dim_names: Sequence[str], env_name: str,
                  noop: np.ndarray) -> np.ndarray:
    """Gather a ``{agent: action}`` dict (or an ``(n, d)`` array) into an int64 array.

    Agents missing from the dict take ``noop``. Every value is checked against ``nvec`` in one
    vectorised pass; the first offending agent is named in the :class:`ActionError`.
    """
    n, d = len(agents), len(nvec)
    if isinstance(actions, np.ndarray):
        arr = actions
        if arr.shape != (n, d):
            raise ActionError(f"{env_name}: batched actions must have shape ({n}, {d}), "
                              f"got {arr.shape}")
        names = agents
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
        try:  # one C-level pass when every action is a flat vector (the common case)
            arr = np.concatenate(vals)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (n * d,):
            _raise_bad_shape(actions, d, dim_names, env_name)
        arr = arr.reshape(n, d)
        names = agents
    else:
        raise ActionError(f"{env_name}: step() expects a dict {{agent: action}} or an array of "
                          f"shape ({n}, {d}), got {type(actions).__name__}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            bad = int(np.flatnonzero(np.any(np.mod(arr, 1) != 0, axis=1))[0])
            raise ActionError(f"{env_name}: action for agent {names[bad]!r} must be integers, "
                              f"got {arr[bad].tolist()}")
        arr = arr.astype(np.int64)
    bad_cells = (arr < 0) | (arr >= nvec)
    if bad_cells.any():
        r, c = np.argwhere(bad_cells)[0]
        raise ActionError(
            f"{env_name}: action for agent {names[r]!r} is out of its space: dimension "
            f"{c} ({dim_names[c]!r}) allows 0..{int(nvec[c]) - 1}, got {int(arr[r, c])} "
            f"(full action {arr[r].tolist()}; nvec {nvec.tolist()})")
    return arr


def _raise_bad_shape(actions: dict, d: int, dim_names: Sequence[str], env_name: str) -> None:
    for a, act in actions.items():
        try:
            shape = np.shape(act)
        except ValueError:  # ragged nested sequences
            shape = None
        if shape != (d,):
            raise ActionError(f"{env_name}: action for agent {a!r} must have {d} entries "
                              f"({', '.join(dim_names)}), got shape {shape}: {act!r}")
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
