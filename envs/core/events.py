"""The event log of a run: typed JSON lines, with the interactions in columnar chunks.

A run writes, in order: one :class:`RunStart`; per step the step's interactions (steps
without interactions write nothing); optional :class:`Governance` events (what a lever did);
one :class:`EpochEnd` per finished epoch (with the network's edge list and any JSON-able
summary the env adds); one :class:`RunEnd`.

Formats (``EventLog(path, format=...)``):

- ``"jsonl"``: every event is one JSON line of ``path``, interactions included
  (:class:`Interactions`, the batch's columns as JSON lists). Easy to read by eye; about
  400 bytes per interaction. The default of :class:`EventLog` used directly.
- ``"arrow"`` (the default of ``distsafe run``) and ``"parquet"``: the interactions of each
  epoch are buffered and written, when the epoch ends (or every ``chunk_rows`` rows), as one
  chunk file in the folder ``<stem>.interactions/`` beside ``path`` — an Arrow IPC file
  (lz4) or a Parquet file (zstd), one column per :class:`InteractionBatch` field with its
  exact dtype — and the JSON lines get one :class:`InteractionChunk` event naming the file.
  A chunk is written beside under a dot-name and renamed into place before its line is
  written, so a line never names a missing or partial file. The folder is readable as one
  table by pandas (``pd.read_feather`` / ``pd.read_parquet``), polars and DuckDB.

Properties the rest of distsafe relies on:

- **Replayable.** :func:`replay` / :func:`to_interactions` rebuild the exact interaction
  columns (floats are written with ``repr`` and round-trip bit for bit), so metrics computed
  from a log equal those of the live run.
- **Checked when read.** Reading validates strictly (:class:`LogError`, naming the file, the
  line and the field): types without coercion (``"false"`` is not a boolean, ``1.0`` is not
  an integer), every interaction column present, values in range (agents are indices of
  ``run_start.agents``, ``v`` is ±1, ``p`` lies in [0, 1], effort and dressing in [0, 1],
  signals in [-1, 1], counts >= 0, money fields finite, a rejected interaction pays nothing),
  the step and epoch columns equal to their event's, steps strictly increasing, epochs
  consecutive and equal to ``step // steps_per_epoch``, nothing after ``run_end``; a chunk
  file must exist with the schema and row count its line gives.
- **Deterministic.** No wall-clock timestamps; compact separators; field order fixed by the
  event class. Two runs with one seed write byte-identical files. An edge list equal to the
  previous epoch's is not repeated (``edges_same``).
- **Crash-tolerant.** Each line is written with one ``write`` call and flushed (to the OS,
  not ``fsync``-ed). A truncated final line (a crash mid-write) is skipped with a warning
  when reading, and cut off when the log is reopened with ``mode="a"``.
- **Resumable.** :func:`truncate_to_epoch` cuts a log (and its chunk folder) back to the end
  of an epoch so a run can continue from its last complete epoch.
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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import to_jsonable_python

from envs.core.records import BATCH_DTYPES, InteractionBatch, InteractionType

__all__ = [
    "BaseEvent", "Event", "RunStart", "Interactions", "InteractionChunk", "EpochEnd",
    "Governance", "PolicyTurn", "StepState", "RunEnd", "EventLog", "LogError", "LOG_FORMATS",
    "Replay",
    "chunk_dir",
    "collect_versions", "event_types", "parse_event", "read_events", "replay",
    "to_interactions", "truncate_to_epoch",
]

LOG_FORMATS = ("jsonl", "arrow", "parquet")
_CHUNK_EXT = {"arrow": ".arrow", "parquet": ".parquet"}


class LogError(ValueError):
    """A log that is not what distsafe writes: ``<file>:<line>: <field>: <problem>``."""

    def __init__(self, where: str, problem: str, field: str | None = None) -> None:
        self.where, self.field, self.problem = where, field, problem
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")


def chunk_dir(path: str | os.PathLike[str]) -> Path:
    """The folder of a log's chunks: ``run/events.jsonl`` -> ``run/events.interactions``."""
    path = Path(path)
    return path.with_name(path.stem + ".interactions")

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
    identity: dict[str, Any] | None = Field(
        None, description="what makes the run this run (resolved scenario, seed, package "
        "version, log format, and their hash); `distsafe run --resume` checks it field by field")

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


class InteractionChunk(BaseEvent):
    """The interactions of steps ``first_step..last_step``, stored in a columnar chunk file.

    ``file`` is relative to the folder of the JSON-lines log.

    Example:
        >>> InteractionChunk(file="events.interactions/e0000-s000000000.arrow", epoch=0,
        ...                  first_step=0, last_step=9, rows=120).rows
        120
    """

    type: Literal["interaction_chunk"] = "interaction_chunk"
    file: str
    epoch: int
    first_step: int
    last_step: int
    rows: int = Field(ge=1)


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
    edges_same: bool = Field(
        False, description="the edge list equals the previous epoch's (not repeated)")
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
            if self.edges_same:
                raise ValueError("edges_same=True goes with edges=None")
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


class PolicyTurn(BaseEvent):
    """What a policy said for one agent at one step: an LLM policy's prompt, reply,
    reasoning, the action it came to and whether a fallback replaced it (``data`` is the
    policy's; written before the step's interactions).

    Example:
        >>> PolicyTurn(step=0, epoch=0, agent="agent_1", policy="llm",
        ...            data={"reasoning": "they cooperated"}).agent
        'agent_1'
    """

    type: Literal["turn"] = "turn"
    step: int
    epoch: int
    agent: str
    policy: str
    data: dict[str, Any] = Field(default_factory=dict)


class StepState(BaseEvent):
    """A variant's public state after one step, for dashboards, forks and its own metrics
    (the commons: stock, policy in force, extraction and reports, audits, accusations,
    messages). ``data`` is the variant's; written once per step by variants that keep one.

    Example:
        >>> StepState(step=3, epoch=3, data={"stock": 38.5}).data["stock"]
        38.5
    """

    type: Literal["step_state"] = "step_state"
    step: int
    epoch: int
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


def _edges_arrays(edges: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if edges is None:
        return None
    if hasattr(edges, "edge_list"):
        edges = edges.edge_list()
    if isinstance(edges, Mapping):
        if set(edges) != {"i", "j", "w"}:
            raise ValueError(f"edges must have exactly the keys i, j, w; received "
                             f"{sorted(edges)}")
        edges = (edges["i"], edges["j"], edges["w"])
    if isinstance(edges, tuple | list) and len(edges) == 3:
        i, j, w = edges
        return (np.asarray(i), np.asarray(j), np.asarray(w, dtype=np.float64))
    raise ValueError(
        f"edges must be None, a Network, an (i, j, w) tuple or a dict with keys i, j, w; "
        f"received {type(edges).__name__}"
    )


def _same_edges(a: tuple | None, b: tuple | None) -> bool:
    return a is not None and b is not None and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


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


def _arrow_table(batch: InteractionBatch) -> Any:
    import pyarrow as pa

    # from_arrays: pa.table(dict) would import pandas (0.2 s) to check for a DataFrame
    return pa.Table.from_arrays([pa.array(getattr(batch, k)) for k in InteractionBatch.FIELDS],
                                names=list(InteractionBatch.FIELDS))


def _write_chunk(batch: InteractionBatch, path: Path, fmt: str) -> None:
    """Write a chunk file beside under a dot-name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    table = _arrow_table(batch)
    try:
        if fmt == "arrow":
            import pyarrow as pa

            options = pa.ipc.IpcWriteOptions(compression="lz4")  # 40 % faster than zstd
            with pa.OSFile(str(tmp), "wb") as sink, \
                    pa.ipc.new_file(sink, table.schema, options=options) as writer:
                writer.write_table(table)
        else:
            import pyarrow.parquet as pq

            pq.write_table(table, str(tmp), compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_chunk(path: Path) -> Any:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(str(path))
    import pyarrow as pa

    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


def _typed_line(line: bytes, *types: str) -> dict | None:
    """The JSON object of a line when its ``type`` is one of ``types`` (in any JSON spelling:
    the name is searched first, so other lines cost no parsing)."""
    if not any(t.encode() in line for t in types):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and obj.get("type") in types else None


def _scan_tail_state(path: Path) -> tuple[int, tuple | None]:
    """Episode of the last ``run_start`` and the last logged edge list (for ``mode="a"``)."""
    episode, edges = 0, None
    if not path.exists():
        return episode, edges
    with open(path, "rb") as fh:
        for line in fh:
            obj = _typed_line(line, "run_start", "epoch_end")
            if obj is None:
                continue
            if obj.get("type") == "run_start":
                episode, edges = int(obj.get("episode", 0)), None
            elif obj.get("type") == "epoch_end" and isinstance(obj.get("edges"), dict):
                edges = _edges_arrays(obj["edges"])
    return episode, edges


class _Writer:
    """One background thread that writes lines and chunk files strictly in order.

    Chunk files are compressed and written by pyarrow with the GIL released, so on a machine
    with a spare core the log costs the simulation little. The first error stops the writer
    (nothing after it is written, so the files stay a valid prefix) and is re-raised in the
    caller's thread by the next ``put``, ``join`` or ``stop``.
    """

    def __init__(self, fh: Any, depth: int = 64) -> None:
        import queue
        import threading

        self._fh = fh
        self._queue: Any = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="distsafe-event-log",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is not None:
                    continue  # after a failure nothing more is written
                if item[0] == "line":
                    self._fh.write(item[1])
                    self._fh.flush()
                else:
                    _write_chunk(item[1], item[2], item[3])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            self._failed = True
            raise exc

    def put(self, item: tuple) -> None:
        self._raise()
        if not self._failed:
            self._queue.put(item)

    def join(self) -> None:
        self._queue.join()
        self._raise()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()


class EventLog:
    """Writer of an append-only event log (JSON lines, interactions optionally columnar).

    Args:
        path: the JSON-lines file; parent folders are created.
        mode: ``"w"`` truncates (and empties the chunk folder), ``"a"`` appends (a truncated
            final line is cut first).
        format: ``"jsonl"`` (interactions as JSON lines), ``"arrow"`` or ``"parquet"``
            (interactions in chunk files under :func:`chunk_dir`; see the module docstring).
        identity: the run's identity, written into every :class:`RunStart`.
        chunk_rows: a columnar chunk is written at each epoch end or when it reaches this
            many rows, whichever comes first.
        background: write from one background thread, in order (``distsafe run`` does);
            :meth:`sync` waits for it, :meth:`close` drains it, and a write error surfaces
            in the caller's thread at the next call.

    ``interactions`` writes only non-empty batches: a step without interactions leaves no
    trace (``EpochEnd.step`` and ``RunEnd.step`` carry the step counter).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
        >>> with EventLog(path, format="arrow") as log:
        ...     _ = log.run_start("sandbox", {"n": 2}, seed=1, agents=["a0", "a1"])
        ...     b = InteractionBatch.empty(3); b.counterparty[:] = 1
        ...     _ = log.interactions(0, 0, b)
        ...     _ = log.epoch_end(0, 0, edges=([0], [1], [0.5]))
        ...     _ = log.run_end(0, 0)
        >>> r = replay(path)
        >>> len(r.interactions()), r.last_complete_epoch, r.complete
        (3, 0, True)
        >>> sorted(os.listdir(chunk_dir(path)))
        ['e0000-s000000000.arrow']
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "w", *,
                 format: str = "jsonl", identity: Mapping[str, Any] | None = None,
                 chunk_rows: int = 1_000_000, background: bool = False) -> None:
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' (truncate) or 'a' (append); received {mode!r}")
        if format not in LOG_FORMATS:
            raise ValueError(f"format must be one of {', '.join(LOG_FORMATS)}; received "
                             f"{format!r}")
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be an integer >= 1; received {chunk_rows!r}")
        self.path = Path(path)
        self.mode, self.format, self.chunk_rows = mode, format, chunk_rows
        self.identity = dict(identity) if identity is not None else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._chunks = chunk_dir(self.path)
        self._episode, self._last_edges = 0, None
        if mode == "a":
            _repair_tail(self.path)
            self._episode, self._last_edges = _scan_tail_state(self.path)
        elif self._chunks.is_symlink():
            raise ValueError(f"{self._chunks}: is a symbolic link; the log's chunk folder "
                             "must be its own")
        elif self._chunks.is_dir():  # a fresh log: no chunk of an earlier log may linger
            for f in self._chunks.iterdir():
                if f.is_file():
                    f.unlink()
        self._buffer: list[InteractionBatch] = []
        self._buffered_rows = 0
        self._buffered_epoch = -1
        self._fh = open(self.path, mode, encoding="utf-8", newline="\n")  # noqa: SIM115
        self.n_written = 0
        self._writer = _Writer(self._fh) if background else None

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
        line = _event_line(event) + "\n"
        if self._writer is not None:
            self._writer.put(("line", line))
        else:
            self._fh.write(line)
            self._fh.flush()
        self.n_written += 1
        return event

    def sync(self) -> None:
        """Wait until everything written so far is in the files (``background=True``);
        re-raise a write error of the background writer."""
        if self._writer is not None:
            self._writer.join()

    def flush(self) -> None:
        """Write the buffered interactions (columnar formats) as a chunk now."""
        if not self._buffer:
            return
        batch = (self._buffer[0] if len(self._buffer) == 1
                 else InteractionBatch.concat(self._buffer))
        self._buffer, self._buffered_rows = [], 0
        first, last = int(batch.step[0]), int(batch.step[-1])
        name = f"e{self._episode:04d}-s{first:09d}{_CHUNK_EXT[self.format]}"
        self._chunks.mkdir(parents=True, exist_ok=True)
        if self._writer is not None:  # the writer renames the file in before the next line
            self._writer.put(("chunk", batch, self._chunks / name, self.format))
        else:
            _write_chunk(batch, self._chunks / name, self.format)
        self.write(InteractionChunk.model_construct(
            file=f"{self._chunks.name}/{name}", epoch=self._buffered_epoch, first_step=first,
            last_step=last, rows=len(batch)))

    def close(self) -> None:
        """Write what is buffered, wait for the background writer, close (idempotent)."""
        if not self._fh.closed:
            try:
                self.flush()
            finally:
                try:
                    if self._writer is not None:
                        self._writer.stop()
                finally:
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
        self.flush()
        event = RunStart(
            env=env, config=dict(config or {}), seed=None if seed is None else int(seed),
            episode=int(episode), agents=list(agents), groups=list(groups),
            versions=dict(versions) if versions is not None else collect_versions(),
            identity=self.identity,
        )
        self._episode, self._last_edges = int(episode), None
        self.write(event)
        return event

    def interactions(self, step: int, epoch: int, batch: InteractionBatch
                     ) -> Interactions | None:
        """Log the step's interactions; nothing is written for an empty batch.

        In a columnar format the batch is buffered (and must not be modified afterwards)
        until the epoch ends or ``chunk_rows`` rows are buffered.
        """
        if not isinstance(batch, InteractionBatch):
            raise ValueError(f"batch must be an InteractionBatch; received "
                             f"{type(batch).__name__}")
        if len(batch) == 0:
            return None
        if self.format != "jsonl":
            if self._buffer and int(epoch) != self._buffered_epoch:
                self.flush()
            self._buffer.append(batch)
            self._buffered_rows += len(batch)
            self._buffered_epoch = int(epoch)
            if self._buffered_rows >= self.chunk_rows:
                self.flush()
            return None
        event = Interactions.model_construct(step=int(step), epoch=int(epoch),
                                             columns=batch.to_json_columns())
        self.write(event)
        return event

    def epoch_end(self, epoch: int, step: int, edges: Any = None,
                  state: Mapping[str, Any] | None = None) -> EpochEnd:
        """Write :class:`EpochEnd`; ``edges`` may be a Network, an (i, j, w) tuple or a dict.

        An edge list equal to the last one logged in this episode is written as
        ``edges_same=True`` instead. ``state`` values may be numpy arrays or scalars.
        """
        self.flush()
        arrays = _edges_arrays(edges)
        same = _same_edges(arrays, self._last_edges)
        payload = None
        if arrays is not None and not same:
            payload = {"i": arrays[0].tolist(), "j": arrays[1].tolist(),
                       "w": arrays[2].tolist()}
            _check_one_length(payload, "edges i, j, w")
            self._last_edges = tuple(a.copy() for a in arrays)
        event = EpochEnd.model_construct(epoch=int(epoch), step=int(step), edges=payload,
                                         edges_same=same, state=dict(state or {}))
        self.write(event)
        return event

    def governance(self, step: int, epoch: int, lever: str,
                   data: Mapping[str, Any] | None = None) -> Governance:
        """Write :class:`Governance` (``data`` values may be numpy arrays or scalars)."""
        event = Governance(step=int(step), epoch=int(epoch), lever=lever, data=dict(data or {}))
        self.write(event)
        return event

    def turn(self, step: int, epoch: int, agent: str, policy: str,
             data: Mapping[str, Any] | None = None) -> PolicyTurn:
        """Write :class:`PolicyTurn` (a policy's prompt, reply and reasoning for an agent)."""
        event = PolicyTurn(step=int(step), epoch=int(epoch), agent=str(agent),
                           policy=str(policy), data=dict(data or {}))
        self.write(event)
        return event

    def step_state(self, step: int, epoch: int, data: Mapping[str, Any]) -> StepState:
        """Write :class:`StepState` (``data`` values may be numpy arrays or scalars)."""
        event = StepState.model_construct(step=int(step), epoch=int(epoch), data=dict(data))
        self.write(event)
        return event

    def run_end(self, step: int, epoch: int) -> RunEnd:
        """Write :class:`RunEnd`."""
        self.flush()
        event = RunEnd(step=int(step), epoch=int(epoch))
        self.write(event)
        return event

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.mode
        return (f"EventLog({str(self.path)!r}, {state}, format={self.format!r}, "
                f"{self.n_written} written)")


# ---------------------------------------------------------------------- reading
_COLUMN_TYPES = {k: (list[bool] if dt is np.bool_ else
                     list[int] if np.dtype(dt).kind in "iu" else list[float], ...)
                 for k, dt in BATCH_DTYPES.items()}
_COLUMNS_MODEL: list[Any] = []
_RANGES = {"effort": (0.0, 1.0), "dressing": (0.0, 1.0), "task_progress": (-1.0, 1.0),
           "engagement": (-1.0, 1.0), "v_hat": (-1.0, 1.0), "p": (0.0, 1.0),
           "kind": (0, len(InteractionType) - 1),
           "rework_count": (0, np.iinfo(np.int16).max),
           "verifier_rejections": (0, np.iinfo(np.int16).max),
           "tool_misuse": (0, np.iinfo(np.int16).max)}
_FINITE = ("tau", "c_a", "c_b", "r_a", "r_b", "payoff_a", "payoff_b", "weight")


def _columns_model() -> Any:
    if not _COLUMNS_MODEL:
        _COLUMNS_MODEL.append(create_model(
            "InteractionColumns", __config__=ConfigDict(extra="forbid", strict=True),
            **_COLUMN_TYPES))
    return _COLUMNS_MODEL[0]


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith("function-"))
    msg = err["msg"]
    if "input" in err and not isinstance(err["input"], dict | list):
        msg += f" (got {err['input']!r})"
    more = len(exc.errors()) - 1
    return loc, msg + (f" (+{more} more)" if more else "")


def _parse_line(line: bytes, where: str) -> BaseEvent:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise LogError(where, f"malformed event: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise LogError(where, f"malformed event: expected a JSON object, got "
                              f"{type(obj).__name__}")
    if obj.get("type") not in _REGISTRY:
        raise LogError(where, f"malformed event: unknown event type {obj.get('type')!r}; "
                              f"allowed: {sorted(_REGISTRY)}", "type")
    try:
        event = _adapter().validate_python(obj, strict=True)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        loc = loc.split(".", 1)[1] if "." in loc else loc  # drop the union tag
        raise LogError(where, f"malformed event: {msg}", loc) from None
    if isinstance(event, Interactions):
        try:
            _columns_model().model_validate(event.columns)
        except ValidationError as exc:
            loc, msg = _first_error(exc)
            raise LogError(where, msg, f"columns.{loc}") from None
    return event


def _lines(path: Path) -> Iterator[tuple[int, BaseEvent]]:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                event = _parse_line(line, f"{path}:{lineno}")
            except LogError:
                if not line.endswith(b"\n"):
                    warnings.warn(f"{path}:{lineno}: ignoring a truncated final line "
                                  f"({len(line)} bytes)", RuntimeWarning, stacklevel=3)
                    return
                raise
            yield lineno, event


def read_events(path: str | os.PathLike[str]) -> Iterator[BaseEvent]:
    """Yield the events of a log in order, each strictly typed (no coercion).

    Blank lines are skipped. A final line without a newline that does not parse (a crash
    mid-write) is skipped with a ``RuntimeWarning``. Values and order are checked by
    :func:`replay`, which knows the run's agents and epochs.

    Raises:
        LogError: ``"<path>:<line>: <field>: ..."`` for any other malformed line.
    """
    for _, event in _lines(Path(path)):
        yield event


def _as_array(values: Any, dtype: Any, name: str, where: str) -> np.ndarray:
    wide = np.bool_ if dtype is np.bool_ else (
        np.int64 if np.dtype(dtype).kind in "iu" else np.float64)
    try:
        return np.asarray(values, dtype=wide)
    except OverflowError:
        big = next((v for v in values if isinstance(v, int) and abs(v) >= 2**63), "?")
        raise LogError(where, f"integer {big} is out of range", name) from None


def _check_columns(cols: Mapping[str, np.ndarray], n_agents: int, where: str,
                   prefix: str = "") -> InteractionBatch:
    """Value checks shared by JSON columns and chunk files; returns the typed batch."""
    def bad(name: str, mask: np.ndarray, what: str) -> None:
        k = int(np.flatnonzero(mask)[0])
        raise LogError(where, f"{what}, got {cols[name][k].item()!r} (row {k})",
                       prefix + name)

    for name in ("initiator", "counterparty"):
        col = cols[name]
        out = (col < 0) | (col >= n_agents)
        if out.any():
            bad(name, out, f"must be an agent index in 0..{n_agents - 1}")
    v = cols["v"]
    if ((v != 1) & (v != -1)).any():
        bad("v", (v != 1) & (v != -1), "must be +1 or -1")
    for name, (lo, hi) in _RANGES.items():
        col = cols[name]
        out = ~((col >= lo) & (col <= hi))  # NaN fails both comparisons
        if out.any():
            bad(name, out, f"must lie in [{lo}, {hi}]")
    for name in _FINITE:
        out = ~np.isfinite(cols[name])
        if out.any():
            bad(name, out, "must be finite")
    negative = cols["weight"] < 0
    if negative.any():
        bad("weight", negative, "must be >= 0")
    rejected = ~cols["accepted"]
    for name in ("payoff_a", "payoff_b"):
        paid = rejected & (cols[name] != 0)
        if paid.any():
            bad(name, paid, "must be 0 for a rejected interaction")
    return InteractionBatch(**{k: np.asarray(cols[k]).astype(dt, copy=False)
                               for k, dt in BATCH_DTYPES.items()})


def _json_batch(ev: Interactions, n_agents: int, where: str) -> InteractionBatch:
    cols = {k: _as_array(ev.columns[k], dt, f"columns.{k}", where)
            for k, dt in BATCH_DTYPES.items()}
    _check_one_length(ev.columns, "columns")
    for name in ("step", "epoch"):
        want = getattr(ev, name)
        off = cols[name] != want
        if off.any():
            k = int(np.flatnonzero(off)[0])
            raise LogError(where, f"must equal the event's {name} {want}, got "
                                  f"{cols[name][k]} (row {k})", f"columns.{name}")
    return _check_columns(cols, n_agents, where, "columns.")


def _chunk_batch(ev: InteractionChunk, base: Path, n_agents: int, where: str
                 ) -> InteractionBatch:
    import pyarrow as pa

    file = (base / ev.file)
    if ".." in Path(ev.file).parts or Path(ev.file).is_absolute():
        raise LogError(where, f"must be a path inside the run folder, got {ev.file!r}", "file")
    try:
        table = _read_chunk(file)
    except FileNotFoundError:
        raise LogError(where, f"chunk file {file} is missing", "file") from None
    except (OSError, pa.ArrowException) as exc:
        raise LogError(where, f"chunk file {file} is not a readable "
                              f"{file.suffix.lstrip('.')} file ({exc})", "file") from None
    where = f"{where}: {file.name}"
    names = table.column_names
    if sorted(names) != sorted(BATCH_DTYPES):
        missing = sorted(set(BATCH_DTYPES) - set(names))
        extra = sorted(set(names) - set(BATCH_DTYPES))
        raise LogError(where, f"columns differ from the interaction schema (missing "
                              f"{missing}, unknown {extra})", "columns")
    cols = {}
    for k, dt in BATCH_DTYPES.items():
        col = table.column(k)
        want = pa.from_numpy_dtype(dt)
        if col.type != want:
            raise LogError(where, f"has type {col.type}, expected {want}", k)
        if col.null_count:
            raise LogError(where, f"has {col.null_count} null values", k)
        cols[k] = col.to_numpy(zero_copy_only=False)
    if table.num_rows != ev.rows:
        raise LogError(where, f"the chunk has {table.num_rows} rows, its line says {ev.rows}",
                       "rows")
    step = cols["step"]
    if (step[0] != ev.first_step or step[-1] != ev.last_step
            or (len(step) > 1 and (np.diff(step) < 0).any())):
        raise LogError(where, f"steps must be ascending from first_step {ev.first_step} to "
                              f"last_step {ev.last_step}", "step")
    if (cols["epoch"] != ev.epoch).any():
        raise LogError(where, f"every row must be in epoch {ev.epoch}", "epoch")
    return _check_columns(cols, n_agents, where)


class _Episode:
    """Checks the order of one episode's events and loads its interactions."""

    def __init__(self, start: RunStart, where: str) -> None:
        self.n_agents = len(start.agents)
        cfg = start.config
        import envs  # a registered env always logs its run length

        required = start.env in envs.registry
        for key in ("steps_per_epoch", "n_epochs"):
            value = cfg.get(key)
            if (value is not None or required) and (type(value) is not int or value < 1):
                raise LogError(where, f"must be an integer >= 1, got {value!r}",
                               f"config.{key}")
        self.spe, self.n_epochs = cfg.get("steps_per_epoch"), cfg.get("n_epochs")
        if "payoff" in cfg:  # the env's own payoff model (the sandbox's for an unknown env)
            from envs.core.payoff import PayoffConfig

            model = envs.payoff_model(start.env) if required else PayoffConfig
            try:
                if model is not None:
                    model.model_validate(cfg["payoff"])
            except ValidationError as exc:
                loc, msg = _first_error(exc)
                raise LogError(where, msg, f"config.payoff.{loc}".rstrip(".")) from None
        self.agent_names = set(start.agents)
        if self.n_agents != len(set(start.agents)):
            raise LogError(where, "agent names must be unique", "agents")
        self.last_step = -1       # last step that had interactions
        self.last_event_step = -1  # last step named by any event
        self.last_state_step = -1  # last step with a step_state (one a step at most)
        self.epochs_done = 0
        self.ended = False
        self.terminated = False  # an epoch_end with state.terminated: only run_end follows
        self.has_edges = False

    def _step(self, where: str, step: int, epoch: int, name: str = "step") -> None:
        if step < 0:
            raise LogError(where, f"must be >= 0, got {step}", name)
        if self.spe is not None and epoch != step // self.spe:
            raise LogError(where, f"epoch {epoch} does not contain step {step} "
                                  f"({self.spe} steps per epoch)", "epoch")
        if self.n_epochs is not None and self.spe is not None \
                and step >= self.n_epochs * self.spe:
            raise LogError(where, f"step {step} is past the run's last step "
                                  f"{self.n_epochs * self.spe - 1}", name)

    def _in_order(self, where: str, step: int, epoch: int) -> None:
        """A step-stamped event (a turn, a round's state, a lever's event) comes no earlier
        than the last event's step and lies in its epoch and the run."""
        if step < self.last_event_step:
            raise LogError(where, f"step {step} is before step {self.last_event_step}", "step")
        self._step(where, step, epoch)

    def check(self, ev: BaseEvent, where: str, base: Path | None) -> InteractionBatch | None:
        if self.ended:
            raise LogError(where, f"a {ev.type} event after run_end")
        if self.terminated and not isinstance(ev, RunEnd):
            raise LogError(where, f"a {ev.type} event after the episode terminated "
                                  "(an epoch_end with state.terminated)")
        if isinstance(ev, Interactions | InteractionChunk):
            first = ev.step if isinstance(ev, Interactions) else ev.first_step
            last = ev.step if isinstance(ev, Interactions) else ev.last_step
            name = "step" if isinstance(ev, Interactions) else "first_step"
            if first < 0:
                raise LogError(where, f"must be >= 0, got {first}", name)
            if first <= self.last_step:
                raise LogError(where, f"step {first} does not follow step {self.last_step}: "
                                      "a duplicated or out-of-order line", name)
            if last < first:
                raise LogError(where, f"last_step {last} < first_step {first}", "last_step")
            if ev.epoch != self.epochs_done:
                raise LogError(where, f"epoch {ev.epoch} where epoch {self.epochs_done} is "
                                      "open", "epoch")
            self._step(where, first, ev.epoch, name)
            self._step(where, last, ev.epoch, "last_step")
            self.last_step = self.last_event_step = last
            if isinstance(ev, Interactions):
                return _json_batch(ev, self.n_agents, where)
            if base is None:
                raise LogError(where, "a chunk event needs the log's folder to be read")
            return _chunk_batch(ev, base, self.n_agents, where)
        if isinstance(ev, EpochEnd):
            if ev.epoch != self.epochs_done:
                raise LogError(where, f"epoch_end of epoch {ev.epoch}; expected epoch "
                                      f"{self.epochs_done}", "epoch")
            terminal = ev.state.get("terminated", False)
            if type(terminal) is not bool:
                raise LogError(where, f"must be a boolean, got {terminal!r}", "state.terminated")
            if self.spe is not None and ev.step != (ev.epoch + 1) * self.spe - 1 and not (
                    terminal and ev.epoch * self.spe <= ev.step < (ev.epoch + 1) * self.spe):
                raise LogError(where, f"epoch {ev.epoch} ends at step "
                                      f"{(ev.epoch + 1) * self.spe - 1}, got {ev.step}", "step")
            if ev.step < self.last_event_step:
                raise LogError(where, f"step {ev.step} is before step {self.last_event_step}",
                               "step")
            if ev.edges_same and not self.has_edges:
                raise LogError(where, "edges_same without an earlier edge list", "edges_same")
            if ev.edges is not None:
                self._check_edges(ev.edges, where)
                self.has_edges = True
            frozen = ev.state.get("frozen")
            if frozen is not None and (
                    not isinstance(frozen, list) or len(frozen) != self.n_agents
                    or not all(type(x) is bool for x in frozen)):
                raise LogError(where, f"must be a list of {self.n_agents} booleans",
                               "state.frozen")
            invalid = ev.state.get("invalid")
            if invalid is not None and (
                    not isinstance(invalid, list) or len(invalid) != self.n_agents
                    or not all(type(x) is int and x >= 0 for x in invalid)):
                raise LogError(where, f"must be a list of {self.n_agents} non-negative "
                                      "integers (masked choices per agent)", "state.invalid")
            self.epochs_done += 1
            self.last_event_step = ev.step
            self.terminated = terminal
            return None
        if isinstance(ev, PolicyTurn):
            self._in_order(where, ev.step, ev.epoch)
            if ev.agent not in self.agent_names:
                raise LogError(where, f"unknown agent {ev.agent!r}", "agent")
            self.last_event_step = ev.step
            return None
        if isinstance(ev, StepState):
            self._in_order(where, ev.step, ev.epoch)
            if ev.step <= self.last_state_step:  # a duplicated round would count twice
                raise LogError(where, f"a second step_state for step {ev.step}: a duplicated "
                                      "line", "step")
            self.last_event_step = self.last_state_step = ev.step
            return None
        if isinstance(ev, Governance):
            summary = ev.data.get("summary", {})
            if not isinstance(summary, dict) or not all(
                    type(v) in (int, float) and np.isfinite(v) for v in summary.values()):
                raise LogError(where, "must map names to finite numbers", "data.summary")
            self._in_order(where, ev.step, ev.epoch)
            self.last_event_step = ev.step
            return None
        if isinstance(ev, RunEnd):
            if self.n_epochs is not None and self.epochs_done != self.n_epochs \
                    and not self.terminated:
                raise LogError(where, f"run_end after {self.epochs_done} of {self.n_epochs} "
                                      "epochs")
            if ev.step < self.last_event_step:
                raise LogError(where, f"step {ev.step} is before step {self.last_event_step}",
                               "step")
            self.ended = True
        return None

    def _check_edges(self, edges: Mapping[str, list], where: str) -> None:
        for key in ("i", "j"):
            col = _as_array(edges[key], np.int64, f"edges.{key}", where) \
                if all(type(x) is int for x in edges[key]) else None
            if col is None:
                raise LogError(where, "must be a list of integers", f"edges.{key}")
            if len(col) and (col.min() < 0 or col.max() >= self.n_agents):
                raise LogError(where, f"must be agent indices in 0..{self.n_agents - 1}",
                               f"edges.{key}")
        w = edges["w"]
        if not all(type(x) in (int, float) for x in w) or \
                not np.isfinite(np.asarray(w, dtype=np.float64)).all() or \
                (len(w) and min(w) < 0):
            raise LogError(where, "must be a list of finite numbers >= 0", "edges.w")
        i = np.asarray(edges["i"], dtype=np.int64)
        j = np.asarray(edges["j"], dtype=np.int64)
        if (i >= j).any():
            raise LogError(where, "each edge must have i < j (no self-loops)", "edges")
        if len(np.unique(i * self.n_agents + j)) != len(i):
            raise LogError(where, "an edge is listed twice", "edges")


@dataclass
class Replay:
    """A parsed, checked log of one episode. Build it with :func:`replay`.

    Attributes:
        path: the log file (None when built from events).
        run_start: the :class:`RunStart` event.
        events: every event in file order (``run_start`` included).
        batches: event index -> the interactions of that event (filled by :func:`replay`;
            built on demand from :class:`Interactions` events otherwise).

    Example:
        >>> r = Replay(None, RunStart(env="x", agents=[], versions={}),
        ...            [EpochEnd(epoch=0, step=4), EpochEnd(epoch=1, step=9)])
        >>> r.last_complete_epoch, r.complete, sorted(r.by_epoch())
        (1, False, [0, 1])
    """

    path: Path | None
    run_start: RunStart
    events: list[BaseEvent] = field(default_factory=list)
    batches: dict[int, InteractionBatch] = field(default_factory=dict)

    @property
    def epoch_ends(self) -> list[EpochEnd]:
        return [e for e in self.events if isinstance(e, EpochEnd)]

    @property
    def governance(self) -> list[Governance]:
        return [e for e in self.events if isinstance(e, Governance)]

    @property
    def turns(self) -> list[PolicyTurn]:
        """What policies said (LLM prompts, replies, reasoning), in order."""
        return [e for e in self.events if isinstance(e, PolicyTurn)]

    @property
    def step_states(self) -> list[StepState]:
        """A variant's per-step public state (see :class:`StepState`), in order."""
        return [e for e in self.events if isinstance(e, StepState)]

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

    def _batch(self, k: int) -> InteractionBatch | None:
        if k in self.batches:
            return self.batches[k]
        ev = self.events[k]
        if isinstance(ev, Interactions):
            return ev.batch()
        if isinstance(ev, InteractionChunk):
            base = self.path.parent if self.path is not None else Path(".")
            return InteractionBatch.from_columns(_table_columns(_read_chunk(base / ev.file)))
        return None

    def _epoch_batches(self) -> Iterator[tuple[int, InteractionBatch]]:
        for k, ev in enumerate(self.events):
            if isinstance(ev, Interactions | InteractionChunk):
                yield ev.epoch, self._batch(k)

    def interactions(self) -> InteractionBatch:
        """Every logged interaction, concatenated in file order."""
        return InteractionBatch.concat(b for _, b in self._epoch_batches())

    def by_epoch(self) -> dict[int, InteractionBatch]:
        """Interactions grouped by the epoch of their event, ascending.

        Epochs that have an :class:`EpochEnd` but no interactions map to an empty batch.
        """
        groups: dict[int, list[InteractionBatch]] = {e.epoch: [] for e in self.epoch_ends}
        for epoch, b in self._epoch_batches():
            groups.setdefault(epoch, []).append(b)
        return {k: InteractionBatch.concat(groups[k]) if groups[k]
                else InteractionBatch.empty(0) for k in sorted(groups)}

    def edge_lists(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """The network's edge list at each epoch end (``edges_same`` resolved)."""
        out: list[Any] = []
        last = None
        for end in self.epoch_ends:
            if end.edges is not None:
                last = (np.asarray(end.edges["i"], dtype=np.int64),
                        np.asarray(end.edges["j"], dtype=np.int64),
                        np.asarray(end.edges["w"], dtype=np.float64))
            out.append(last if (end.edges is not None or end.edges_same) else None)
        return out


def _table_columns(table: Any) -> dict[str, np.ndarray]:
    return {k: table.column(k).to_numpy(zero_copy_only=False) for k in table.column_names}


def _episodes(path: Path) -> list[Replay]:
    """Read and check every episode of a log."""
    episodes: list[Replay] = []
    checker: _Episode | None = None
    for lineno, ev in _lines(path):
        where = f"{path}:{lineno}"
        if isinstance(ev, RunStart):
            checker = _Episode(ev, where)
            episodes.append(Replay(path, ev, [ev]))
            continue
        if checker is None:
            raise LogError(where, f"a {ev.type} event before any run_start event")
        batch = checker.check(ev, where, path.parent)
        rep = episodes[-1]
        if batch is not None:
            rep.batches[len(rep.events)] = batch
        rep.events.append(ev)
    return episodes


def replay(path: str | os.PathLike[str], episode: int | None = None) -> Replay:
    """Read, check and return one episode of a log as a :class:`Replay`.

    A log holds one episode per ``run_start`` (an env reset again with the same log appends
    the next). ``episode`` picks one (``-1``: the last); it may be left out when the log
    holds a single episode. Every episode is checked (see the module docstring).

    Raises:
        LogError: a malformed or inconsistent line or chunk (file, line and field named),
            no ``run_start`` event, or several episodes and no (or an unknown) ``episode``.
    """
    path = Path(path)
    episodes = _episodes(path)
    if not episodes:
        raise LogError(str(path), "no run_start event in the log")
    if episode is None:
        if len(episodes) > 1:
            raise LogError(str(path), f"the log holds {len(episodes)} episodes; choose one "
                                      f"with episode=0..{len(episodes) - 1}")
        episode = 0
    if isinstance(episode, bool) or not -len(episodes) <= episode < len(episodes):
        raise LogError(str(path), f"no episode {episode}; the log holds {len(episodes)} "
                                  f"(0..{len(episodes) - 1})")
    return episodes[episode % len(episodes)]


def to_interactions(path_or_events: str | os.PathLike[str] | Replay
                    | Iterable[BaseEvent | Mapping[str, Any]]) -> InteractionBatch:
    """All interactions of a log file (every episode, checked), a :class:`Replay` or an
    iterable of :class:`Interactions` events."""
    if isinstance(path_or_events, str | os.PathLike):
        return InteractionBatch.concat(r.interactions() for r in _episodes(Path(path_or_events)))
    if isinstance(path_or_events, Replay):
        return path_or_events.interactions()
    events = [parse_event(e) for e in path_or_events]
    return InteractionBatch.concat(e.batch() for e in events if isinstance(e, Interactions))


def truncate_to_epoch(path: str | os.PathLike[str], epoch: int) -> int:
    """Cut a log back to the end of ``epoch`` so that a run can resume from there.

    Keeps every line up to and including the first :class:`EpochEnd` of ``epoch`` and drops
    the rest (a later epoch's events, a ``RunEnd``, a truncated tail), and deletes the chunk
    files that no kept line names. The new file is written beside the old one and swapped in
    with ``os.replace``, so a crash leaves either the old or the new log.

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
    kept_files: set[str] = set()
    kept = 0
    found = False
    with open(path, "rb") as src:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as dst:
                for line in src:
                    if not line.endswith(b"\n"):
                        break  # a truncated tail cannot precede the target line
                    dst.write(line)
                    kept += 1
                    obj = _typed_line(line, "interaction_chunk", "epoch_end")
                    if obj is None:
                        continue
                    if obj.get("type") == "interaction_chunk":
                        kept_files.add(Path(str(obj.get("file", ""))).name)
                    if obj.get("type") == "epoch_end":
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
    chunks = chunk_dir(path)
    if chunks.is_dir() and not chunks.is_symlink():
        for f in chunks.iterdir():
            if f.is_file() and f.name not in kept_files:
                f.unlink()
    return kept
