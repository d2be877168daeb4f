"""Run folders: one folder belongs to one run.

A run folder holds ``config.yaml`` (the resolved scenario, seed included), ``events.jsonl``
(the event log, whose ``run_start`` carries the run's :func:`run_identity`), its columnar
interaction chunks in ``events.interactions/``, and ``metrics.csv`` (one row per complete
epoch). The rules that keep it honest:

- **One writer.** :meth:`RunFolder.lock` takes an exclusive ``flock`` on ``.lock`` inside
  the folder; a second writer fails at once, naming the holder's pid. The lock dies with
  its process, so a killed run never leaves a stale lock.
- **One run.** An existing, non-empty folder is refused unless the caller replaces it
  (``--overwrite``, which empties it under the lock first) or continues it (``--resume``,
  which first checks that the identity recorded in its log equals this run's, field by
  field, and changes nothing when it does not).
- **Only runs.** A folder holding anything a run does not write (:data:`RUN_FILES`) is
  never written into, locked or cleared, ``--overwrite`` or not: ``--out ~`` cannot wipe
  a home folder.
- **Write beside, then rename.** ``config.yaml`` and ``metrics.csv`` are written under a
  dot-name and renamed into place (:meth:`RunFolder.write_text`), so a reader never sees half
  a file and a crash never leaves a file of one run beside another's.

Example:
    >>> import tempfile, pathlib
    >>> folder = RunFolder(pathlib.Path(tempfile.mkdtemp()) / "run")
    >>> folder.create()
    >>> _ = folder.write_text("config.yaml", "name: x\\n")
    >>> sorted(p.name for p in folder.path.iterdir())
    ['.lock', 'config.yaml']
    >>> folder.release()
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["RunFolder", "RunFolderError", "identity_differences", "identity_hash",
           "run_identity"]

LOCK = ".lock"
#: what a run folder may hold; anything else means the folder is not (only) a run's
RUN_FILES = frozenset({LOCK, "config.yaml", "events.jsonl", "events.interactions",
                       "metrics.csv", "usage.json", "llm_cache", "conversations.html",
                       "judgement.json", "dashboard.png"})
#: what a training folder (``distsafe train``) may hold
TRAIN_FILES = frozenset({LOCK, "config.yaml", "model.zip", "curve.csv", "curve.png",
                         "invalid_actions.csv", "train.json", "eval", "eval.json", "eval.csv",
                         "rllib"})


class RunFolderError(Exception):
    """The folder cannot be used as asked (held by another run, not a run, ...)."""


def _version() -> str:
    try:
        return metadata.version("distsafe")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def run_identity(scenario: Mapping[str, Any], seed: int, log_format: str) -> dict[str, Any]:
    """What makes a run this run: the resolved scenario, the seed, the package version and
    the log format, with a short hash of them (``hash``).

    Example:
        >>> a = run_identity({"name": "x"}, 1, "arrow")
        >>> b = run_identity({"name": "x"}, 2, "arrow")
        >>> a["hash"] != b["hash"], identity_differences(a, b)
        (True, ['seed: the run has 1, this command has 2'])
    """
    ident: dict[str, Any] = {"scenario": json.loads(json.dumps(scenario)), "seed": int(seed),
                             "distsafe": _version(), "log_format": log_format}
    ident["hash"] = identity_hash(ident)
    return ident


def identity_hash(identity: Mapping[str, Any]) -> str | None:
    """The short hash of an identity's fields (its own ``hash`` left out); ``None`` when the
    fields are not JSON (a tampered log)."""
    try:
        text = json.dumps({k: v for k, v in identity.items() if k != "hash"},
                          sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: obj}


def identity_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The fields (dotted paths) in which two identities differ, each with both values;
    top-level fields (seed, version, log format) first."""
    old = _flatten({k: v for k, v in recorded.items() if k != "hash"})
    new = _flatten({k: v for k, v in current.items() if k != "hash"})
    out = []
    for key in sorted(old.keys() | new.keys(), key=lambda k: ("." in k or "[" in k, k)):
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if a != b or type(a) is not type(b):
            out.append(f"{key}: the run has {a!r}, this command has {b!r}")
    return out


def _run_temporary(name: str, files: frozenset[str] = RUN_FILES) -> bool:
    """A temporary a run writes beside its files: ``.config.yaml.tmp``, ``.events.jsonl.*``."""
    return name.startswith(".") and (name.endswith(".tmp") or name.endswith(".tmp.zip")) \
        and any(name.startswith(f".{Path(f).stem}") for f in files)


class RunFolder:
    """A run folder and the lock that makes it one writer's (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], files: frozenset[str] = RUN_FILES,
                 what: str = "run") -> None:
        self.path = Path(path)
        self.files = files  # what the folder may hold (TRAIN_FILES: a training folder)
        self.what = what
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ state
    def holds_a_run(self) -> bool:
        """Whether the folder exists with anything in it besides a lock file."""
        return self.path.is_dir() and any(p.name != LOCK for p in self.path.iterdir())

    def foreign_entries(self) -> list[str]:
        """Entries that no run writes (a run's own dot-named temporaries excepted)."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir()
                      if p.name not in self.files and not _run_temporary(p.name, self.files))

    def check_is_run_folder(self) -> None:
        """Refuse a folder that holds anything a run does not write (never delete it)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path}: is a file, not a run folder; choose another "
                                 "--out")
        foreign = self.foreign_entries()
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)"
                                              if len(foreign) > 5 else "")
            raise RunFolderError(
                f"{self.path}: is not a {self.what} folder (it holds {shown}); distsafe never "
                "writes into or clears such a folder: choose another --out")
        chunks = self.path / "events.interactions"
        if chunks.is_symlink():
            raise RunFolderError(f"{chunks}: is a symbolic link; a run folder's chunk folder "
                                 "must be its own")

    def _holder(self) -> str:
        try:
            pid = (self.path / LOCK).read_text().strip()
        except OSError:
            pid = ""
        return f" (pid {pid})" if pid else ""

    # ------------------------------------------------------------------ lock
    def lock(self) -> None:
        """Take the folder's lock or fail at once if another process holds it."""
        import fcntl

        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunFolderError(
                    f"{self.path}: another distsafe run{self._holder()} is writing to this "
                    "folder; wait for it or choose another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        """Release the lock (the lock file stays; an unlocked file means no writer)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def create(self) -> None:
        """Create the folder (parents included) and lock it; an existing empty folder is
        fine, one that holds a run is refused, one that holds anything else is not touched."""
        self.check_is_run_folder()
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        if self.holds_a_run():
            self.release()
            raise RunFolderError(
                f"{self.path}: already holds a {self.what}; pass --overwrite to replace it"
                + (" or --resume to continue it" if self.what == "run" else ""))

    def open_new(self, overwrite: bool) -> None:
        """Lock the folder for a new run: emptied first with ``overwrite`` (never a folder
        that is not a run's), else created (:meth:`create`: refused if it holds a run)."""
        if overwrite and self.path.is_dir():
            self.check_is_run_folder()  # never clear a folder that is not a run's
            self.lock()
            self.clear()
        else:
            self.create()

    def clear(self) -> None:
        """Empty the (locked) run folder for a new run (``--overwrite``): only the names a
        run writes are deleted (:meth:`check_is_run_folder` refused anything else)."""
        if self._lock_fd is None:
            raise RuntimeError("RunFolder.clear() needs the lock")
        self.check_is_run_folder()
        for p in self.path.iterdir():
            if p.name == LOCK:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    # ------------------------------------------------------------------ files
    def write_text(self, name: str, text: str) -> Path:
        """Write ``name`` beside (a dot-name), fsync, then rename it into place."""
        final = self.path / name
        tmp = self.path / f".{name}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
