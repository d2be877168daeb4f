"""Append-only JSONL event log: one typed event per line, flushed after every line.

A run writes, in order: one :class:`RunStart`; per step an :class:`Interactions` event when
the step produced interactions (steps without interactions write nothing); optional
:class:`Governance` events (what a lever did); one :class:`EpochEnd` per finished epoch
(with the network's edge list and any JSON-able summary the env adds); one :class:`RunEnd`.

Properties the rest of distsafe relies on:

- **Replayable.** :func:`replay` / :func:`to_interactions` rebuild the exact interaction
  columns (floats are written with ``repr`` and round-trip bit for bit, ``NaN`` and
  ``Infinity`` included), so metrics computed from a log equal those of the live run.
- **Deterministic.** No wall-clock timestamps; compact separators; field order fixed by the
  event class. Two runs with one seed write byte-identical files.
- **Crash-tolerant.** Each line is written with one ``write`` call and flushed (to the OS,
  not ``fsync``-ed). A truncated final line (a crash mid-write) is skipped with a warning
  when reading, and cut off when the log is reopened with ``mode="a"``; a malformed line
  anywhere else raises ``ValueError("<path>:<line>: ...")``.
- **Resumable.** :func:`truncate_to_epoch` cuts a log back to the end of an epoch so a run
  can continue from its last complete epoch (``Replay.last_complete_epoch``).
- **Extensible.** An event type is one subclass of :class:`BaseEvent` with its own
  ``type: Literal["name"] = "name"`` field; defining the class registers it with the
  reader (a pydantic discriminated union over all registered classes).
"""

from __future__ import annotations

import json
import os
import platform
import stat
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import to_jsonable_python

from envs.core.records import BATCH_DTYPES, InteractionBatch

__all__ = [
    "BaseEvent", "Event", "RunStart", "Interactions", "EpochEnd", "Governance", "RunEnd",
    "EventLog", "Replay", "collect_versions", "event_types", "parse_event", "read_events",
    "replay", "to_interactions", "truncate_to_epoch",
]

_REGISTRY: dict[str, type[BaseEvent]] = {}
_ADAPTER: list[Any] = [None, 0]  # [TypeAdapter | None, registry size it was built for]

_VERSIONED = ("numpy", "pettingzoo", "gymnasium", "networkx", "pydantic", "distsafe")


def collect_versions() -> dict[str, str]:
    """Versions of python and of the packages a run depends on ("unknown" when missing)."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


class BaseEvent(BaseModel):
    """Base of all events. A subclass with a ``type`` literal default is registered.

    Example:
        >>> from typing import Literal
        >>> class Checkpoint(BaseEvent):
        ...     type: Literal["doc_checkpoint"] = "doc_checkpoint"
        ...     step: int
        >>> parse_event({"type": "doc_checkpoint", "step": 3})
        Checkpoint(type='doc_checkpoint', step=3)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        info = cls.model_fields.get("type")
        if info is None:
            return  # an abstract intermediate base
        tag = info.default
        if not isinstance(tag, str):
            raise TypeError(
                f"event class {cls.__qualname__} needs a default for its type field, e.g. "
                f'type: Literal["name"] = "name"'
            )
        existing = _REGISTRY.get(tag)
        if existing is not None and existing is not cls:
            if issubclass(cls, existing):
                return  # inherits its parent's tag; parsing yields the parent
            same = (existing.__module__, existing.__qualname__) == (cls.__module__,
                                                                    cls.__qualname__)
            if not same:
                raise TypeError(
                    f"event type {tag!r} is already registered by {existing.__qualname__}"
                )
        _REGISTRY[tag] = cls
        _ADAPTER[0] = None


#: Any registered event (for annotations; parsing goes through :func:`parse_event`).
Event = BaseEvent


def event_types() -> dict[str, type[BaseEvent]]:
    """The registered event classes by their ``type`` tag."""
    return dict(_REGISTRY)


def _adapter() -> TypeAdapter:
    if _ADAPTER[0] is None or _ADAPTER[1] != len(_REGISTRY):
        classes = tuple(_REGISTRY.values())
        union = Union[classes] if len(classes) > 1 else classes[0]  # noqa: UP007
        _ADAPTER[0] = TypeAdapter(Annotated[union, Field(discriminator="type")]
                                  if len(classes) > 1 else union)
        _ADAPTER[1] = len(_REGISTRY)
    return _ADAPTER[0]


def parse_event(obj: Mapping[str, Any] | BaseEvent) -> BaseEvent:
    """Validate a decoded JSON object (dict with a ``type`` key) into its event class."""
    if isinstance(obj, BaseEvent):
        return obj
    if not isinstance(obj, Mapping):
        raise ValueError(f"event must be a BaseEvent or a dict with 'type'; received "
                         f"{type(obj).__name__}")
    if obj.get("type") not in _REGISTRY:
        raise ValueError(f"unknown event type {obj.get('type')!r}; allowed: {sorted(_REGISTRY)}")
    return _adapter().validate_python(obj)


# ---------------------------------------------------------------------- event types
class RunStart(BaseEvent):
    """First line of a log: what ran, with which settings and software.

    Example:
        >>> ev = RunStart(env="sandbox", config={"n": 2}, seed=1, agents=["a", "b"],
        ...               versions={"python": "3.11"})
        >>> ev.type, ev.groups
        ('run_start', [])
    """

    type: Literal["run_start"] = "run_start"
    env: str = Field(description="environment name")
    config: dict[str, Any] = Field(default_factory=dict, description="the env's config")
    seed: int | None = Field(None, description="seed passed to reset (None: the env's "
                                               "generator ran on from the last episode)")
    episode: int = Field(0, ge=0, description="episode number within this env's log")
    agents: list[str] = Field(description="possible_agents, in index order")
    groups: list[str] = Field(
        default_factory=list, description="policy/group label per agent (may be empty)"
    )
    versions: dict[str, str] = Field(
        default_factory=collect_versions, description="python and package versions"
    )

    @model_validator(mode="after")
    def _check(self) -> RunStart:
        if self.groups and len(self.groups) != len(self.agents):
            raise ValueError(
                f"groups must be empty or have one label per agent ({len(self.agents)}); "
                f"received {len(self.groups)} labels"
            )
        return self


class Interactions(BaseEvent):
    """The interactions resolved in one step, as JSON columns (``to_json_columns()``).

    Example:
        >>> ev = Interactions(step=0, epoch=0, columns=InteractionBatch.empty(1).to_json_columns())
        >>> InteractionBatch.from_columns(ev.columns).p.tolist()
        [0.5]
    """

    type: Literal["interactions"] = "interactions"
    step: int
    epoch: int
    columns: dict[str, list] = Field(description="InteractionBatch field -> list of values")

    @model_validator(mode="after")
    def _check(self) -> Interactions:
        unknown = set(self.columns) - set(BATCH_DTYPES)
        if unknown:
            raise ValueError(f"columns has unknown fields {sorted(unknown)}; allowed: "
                             f"{list(BATCH_DTYPES)}")
        _check_one_length(self.columns, "columns")
        return self

    def batch(self) -> InteractionBatch:
        """The columns as an :class:`InteractionBatch`."""
        return InteractionBatch.from_columns(self.columns)


def _check_one_length(columns: Mapping[str, list], what: str) -> None:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"{what} must all have one length; received lengths "
                         f"{sorted(lengths)}")


class EpochEnd(BaseEvent):
    """End of an epoch: the network's edge list (``{"i", "j", "w"}``) and a summary.

    Example:
        >>> EpochEnd(epoch=0, step=9, edges={"i": [0], "j": [1], "w": [0.5]}).state
        {}
    """

    type: Literal["epoch_end"] = "epoch_end"
    epoch: int
    step: int
    edges: dict[str, list] | None = Field(
        None, description="network edge list: i < j, weight w (None when not logged)"
    )
    state: dict[str, Any] = Field(
        default_factory=dict, description="JSON-able summary the env adds (e.g. reputation)"
    )

    @model_validator(mode="after")
    def _check(self) -> EpochEnd:
        if self.edges is not None:
            if set(self.edges) != {"i", "j", "w"}:
                raise ValueError(f"edges must have exactly the keys i, j, w; received "
                                 f"{sorted(self.edges)}")
            _check_one_length(self.edges, "edges i, j, w")
        return self


class Governance(BaseEvent):
    """What a governance lever did (freeze, audit, tax ...), with lever-specific data.

    Example:
        >>> Governance(step=3, epoch=0, lever="circuit_breaker", data={"frozen": [2]}).lever
        'circuit_breaker'
    """

    type: Literal["governance"] = "governance"
    step: int
    epoch: int
    lever: str
    data: dict[str, Any] = Field(default_factory=dict)


class RunEnd(BaseEvent):
    """Last line of a complete run.

    Example:
        >>> RunEnd(step=100, epoch=10).type
        'run_end'
    """

    type: Literal["run_end"] = "run_end"
    step: int
    epoch: int


# ---------------------------------------------------------------------- writing
def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    return to_jsonable_python(obj)


def _event_line(event: BaseEvent) -> str:
    """One JSON line (without newline); fields in class order, compact, floats by repr."""
    obj = {name: getattr(event, name) for name in type(event).model_fields}
    return json.dumps(obj, separators=(",", ":"), sort_keys=False, allow_nan=True,
                      default=_default)


def _edges_payload(edges: Any) -> dict[str, list] | None:
    if edges is None:
        return None
    if hasattr(edges, "edge_list"):
        edges = edges.edge_list()
    if isinstance(edges, Mapping):
        return {k: np.asarray(edges[k]).tolist() for k in edges}
    if isinstance(edges, tuple | list) and len(edges) == 3:
        i, j, w = edges
        return {"i": np.asarray(i).tolist(), "j": np.asarray(j).tolist(),
                "w": np.asarray(w, dtype=np.float64).tolist()}
    raise ValueError(
        f"edges must be None, a Network, an (i, j, w) tuple or a dict with keys i, j, w; "
        f"received {type(edges).__name__}"
    )


def _repair_tail(path: Path) -> None:
    """Cut a partial final line (no trailing newline) before appending to ``path``."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        size = fh.seek(0, os.SEEK_END)
        block = 1 << 16
        end = size
        cut = 0
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            chunk = fh.read(end - start)
            k = chunk.rfind(b"\n")
            if k >= 0:
                cut = start + k + 1
                break
            end = start
        warnings.warn(f"{path}: dropping a truncated final line ({size - cut} bytes) before "
                      f"appending", RuntimeWarning, stacklevel=3)
        fh.truncate(cut)


class EventLog:
    """Writer of an append-only JSONL event log.

    Args:
        path: file to write; parent folders are created.
        mode: ``"w"`` truncates, ``"a"`` appends (a truncated final line is cut first).

    Each :meth:`write` serialises one event with a single ``json.dumps`` and flushes.
    ``interactions`` writes only non-empty batches: a step without interactions leaves no
    line (``EpochEnd.step`` and ``RunEnd.step`` carry the step counter).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
        >>> with EventLog(path) as log:
        ...     _ = log.run_start("sandbox", {"n": 2}, seed=1, agents=["a0", "a1"])
        ...     _ = log.interactions(0, 0, InteractionBatch.empty(3))
        ...     _ = log.epoch_end(0, 0, edges=([0], [1], [0.5]))
        ...     _ = log.run_end(1, 1)
        >>> r = replay(path)
        >>> len(r.interactions()), r.last_complete_epoch, r.complete
        (3, 0, True)
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "w") -> None:
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' (truncate) or 'a' (append); received {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "a":
            _repair_tail(self.path)
        self._fh = open(self.path, mode, encoding="utf-8", newline="\n")  # noqa: SIM115
        self.n_written = 0

    # -- core
    @property
    def closed(self) -> bool:
        return self._fh.closed

    def write(self, event: BaseEvent | Mapping[str, Any]) -> BaseEvent:
        """Write one event (a :class:`BaseEvent` or a dict with ``type``) and flush."""
        if self._fh.closed:
            raise ValueError(f"EventLog({str(self.path)!r}) is closed")
        if not isinstance(event, BaseEvent):
            event = parse_event(event)
        self._fh.write(_event_line(event) + "\n")
        self._fh.flush()
        self.n_written += 1
        return event

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- convenience
    def run_start(self, env: str, config: Mapping[str, Any] | BaseModel | None = None,
                  seed: int | None = None, agents: Iterable[str] = (),
                  groups: Iterable[str] = (), versions: Mapping[str, str] | None = None,
                  episode: int = 0) -> RunStart:
        """Write :class:`RunStart`; ``config`` may be a pydantic model (dumped as JSON)."""
        if isinstance(config, BaseModel):
            config = config.model_dump(mode="json")
        event = RunStart(
            env=env, config=dict(config or {}), seed=None if seed is None else int(seed),
            episode=int(episode), agents=list(agents), groups=list(groups),
            versions=dict(versions) if versions is not None else collect_versions(),
        )
        self.write(event)
        return event

    def interactions(self, step: int, epoch: int, batch: InteractionBatch
                     ) -> Interactions | None:
        """Write the step's interactions; nothing is written for an empty batch."""
        if not isinstance(batch, InteractionBatch):
            raise ValueError(f"batch must be an InteractionBatch; received "
                             f"{type(batch).__name__}")
        if len(batch) == 0:
            return None
        event = Interactions.model_construct(step=int(step), epoch=int(epoch),
                                             columns=batch.to_json_columns())
        self.write(event)
        return event

    def epoch_end(self, epoch: int, step: int, edges: Any = None,
                  state: Mapping[str, Any] | None = None) -> EpochEnd:
        """Write :class:`EpochEnd`; ``edges`` may be a Network, an (i, j, w) tuple or a dict.

        ``state`` values may be numpy arrays or scalars (written as lists / numbers).
        """
        event = EpochEnd(epoch=int(epoch), step=int(step), edges=_edges_payload(edges),
                         state=dict(state or {}))
        self.write(event)
        return event

    def governance(self, step: int, epoch: int, lever: str,
                   data: Mapping[str, Any] | None = None) -> Governance:
        """Write :class:`Governance` (``data`` values may be numpy arrays or scalars)."""
        event = Governance(step=int(step), epoch=int(epoch), lever=lever, data=dict(data or {}))
        self.write(event)
        return event

    def run_end(self, step: int, epoch: int) -> RunEnd:
        """Write :class:`RunEnd`."""
        event = RunEnd(step=int(step), epoch=int(epoch))
        self.write(event)
        return event

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.mode
        return f"EventLog({str(self.path)!r}, {state}, {self.n_written} written)"


# ---------------------------------------------------------------------- reading
def read_events(path: str | os.PathLike[str]) -> Iterator[BaseEvent]:
    """Yield the events of a log in order.

    Blank lines are skipped. A final line without a newline that does not parse (a crash
    mid-write) is skipped with a ``RuntimeWarning``.

    Raises:
        ValueError: ``"<path>:<line>: ..."`` for any other malformed line.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            complete = line.endswith(b"\n")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                event = parse_event(obj)
            except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
                if not complete:
                    warnings.warn(f"{path}:{lineno}: ignoring a truncated final line "
                                  f"({len(line)} bytes)", RuntimeWarning, stacklevel=2)
                    return
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"{path}:{lineno}: malformed event: {reason}") from exc
            yield event


def _concat_interactions(events: Iterable[BaseEvent]) -> InteractionBatch:
    merged: dict[str, list] = {}
    for ev in events:
        if isinstance(ev, Interactions):
            for k, v in ev.columns.items():
                merged.setdefault(k, []).extend(v)
    if not merged:
        return InteractionBatch.empty(0)
    return InteractionBatch.from_columns(merged)


@dataclass
class Replay:
    """A parsed log. Build it with :func:`replay`.

    Attributes:
        path: the log file (None when built from events).
        run_start: the :class:`RunStart` event.
        events: every event in file order (``run_start`` included).

    Example:
        >>> r = Replay(None, RunStart(env="x", agents=[], versions={}),
        ...            [EpochEnd(epoch=0, step=4), EpochEnd(epoch=1, step=9)])
        >>> r.last_complete_epoch, r.complete, sorted(r.by_epoch())
        (1, False, [0, 1])
    """

    path: Path | None
    run_start: RunStart
    events: list[BaseEvent] = field(default_factory=list)

    @property
    def epoch_ends(self) -> list[EpochEnd]:
        return [e for e in self.events if isinstance(e, EpochEnd)]

    @property
    def governance(self) -> list[Governance]:
        return [e for e in self.events if isinstance(e, Governance)]

    @property
    def run_end(self) -> RunEnd | None:
        ends = [e for e in self.events if isinstance(e, RunEnd)]
        return ends[-1] if ends else None

    @property
    def complete(self) -> bool:
        """Whether the run finished (a :class:`RunEnd` is present)."""
        return self.run_end is not None

    @property
    def last_complete_epoch(self) -> int:
        """Epoch of the last :class:`EpochEnd` (-1 when none)."""
        ends = self.epoch_ends
        return ends[-1].epoch if ends else -1

    def interactions(self) -> InteractionBatch:
        """Every logged interaction, concatenated in file order."""
        return _concat_interactions(self.events)

    def by_epoch(self) -> dict[int, InteractionBatch]:
        """Interactions grouped by the epoch of their event, ascending.

        Epochs that have an :class:`EpochEnd` but no interactions map to an empty batch.
        """
        groups: dict[int, list[BaseEvent]] = {e.epoch: [] for e in self.epoch_ends}
        for e in self.events:
            if isinstance(e, Interactions):
                groups.setdefault(e.epoch, []).append(e)
        return {k: _concat_interactions(groups[k]) for k in sorted(groups)}


def replay(path: str | os.PathLike[str], episode: int | None = None) -> Replay:
    """Read one episode of a log into a :class:`Replay`.

    A log holds one episode per ``run_start`` (an env reset again with the same log appends
    the next). ``episode`` picks one (``-1``: the last); it may be left out when the log
    holds a single episode.

    Raises:
        ValueError: a malformed line (see :func:`read_events`), no ``run_start`` event, or
            several episodes and no (or an unknown) ``episode``.
    """
    events = list(read_events(path))
    starts = [i for i, e in enumerate(events) if isinstance(e, RunStart)]
    if not starts:
        raise ValueError(f"{path}: no run_start event in the log ({len(events)} events)")
    if episode is None:
        if len(starts) > 1:
            raise ValueError(f"{path}: the log holds {len(starts)} episodes; choose one with "
                             f"episode=0..{len(starts) - 1}")
        episode = 0
    if not -len(starts) <= episode < len(starts):
        raise ValueError(f"{path}: no episode {episode}; the log holds {len(starts)} "
                         f"(0..{len(starts) - 1})")
    bounds = starts + [len(events)]
    k = episode % len(starts)
    chunk = events[bounds[k]:bounds[k + 1]]
    return Replay(Path(path), chunk[0], chunk)


def to_interactions(path_or_events: str | os.PathLike[str] | Replay
                    | Iterable[BaseEvent | Mapping[str, Any]]) -> InteractionBatch:
    """All interactions of a log file, a :class:`Replay` or an iterable of events."""
    if isinstance(path_or_events, str | os.PathLike):
        return _concat_interactions(read_events(path_or_events))
    if isinstance(path_or_events, Replay):
        return path_or_events.interactions()
    return _concat_interactions(parse_event(e) for e in path_or_events)


def truncate_to_epoch(path: str | os.PathLike[str], epoch: int) -> int:
    """Cut a log back to the end of ``epoch`` so that a run can resume from there.

    Keeps every line up to and including the first :class:`EpochEnd` of ``epoch`` and drops
    the rest (a later epoch's events, a ``RunEnd``, a truncated tail). The new file is
    written beside the old one and swapped in with ``os.replace``, so a crash leaves either
    the old or the new log.

    Returns:
        The number of lines kept.

    Raises:
        ValueError: ``epoch`` is not a non-negative integer or has no ``EpochEnd`` in the log.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0; received {epoch!r}")
    epoch = int(epoch)
    path = Path(path)
    seen: list[Any] = []
    kept = 0
    found = False
    with open(path, "rb") as src:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as dst:
                for line in src:
                    if not line.endswith(b"\n"):
                        break  # a truncated tail cannot precede the target line
                    dst.write(line)
                    kept += 1
                    if b'"epoch_end"' not in line:
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(obj, dict) and obj.get("type") == "epoch_end":
                        seen.append(obj.get("epoch"))
                        if obj.get("epoch") == epoch:
                            found = True
                            break
                if found:
                    dst.flush()
                    os.fsync(dst.fileno())
            if not found:
                raise ValueError(
                    f"{path}: no epoch_end for epoch={epoch}; logged epochs: {seen}"
                )
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return kept
