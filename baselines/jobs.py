"""Jobs: many runs, each a pure function of its inputs, on a local process pool or on Ray.

Suites (``distsafe bench``), sweeps (``distsafe sweep``) and comparisons are many runs of
scenarios over seeds. A :class:`Job` is one run: a resolved scenario (its JSON dump), a seed,
and the name of a **task** — a registered function ``task(scenario_json, seed, options) ->
JSON-able dict`` that runs it and returns its figures. Because a job is a function of those
inputs only, its result does not depend on where or in what order it ran: the same seeds give
the same numbers on one worker, many workers or a Ray cluster.

:func:`run_jobs` runs them:

- **backends**: ``"local"`` (default: a process pool sized to the machine; ``workers=1`` runs
  in this process) and ``"ray"`` (each job a Ray task; ``address`` names a cluster, else a
  local Ray is started with ``workers`` CPUs and shut down after). Ray is an optional extra.
- **failures**: a job that raises is retried (``retries`` more times); one that still fails is
  reported in :attr:`JobResults.failures` with its error, never silently dropped.
- **resume**: with a ``store`` (a JSON-lines file), each finished job's result is appended
  and flushed as it arrives; a later call with the same store skips the jobs whose result is
  there (matched by key *and* by a hash of the job's inputs, so a changed config or seed is
  run again). A line cut short by a kill is ignored and overwritten.

Example:
    >>> import baselines.jobs as jobs
    >>> from baselines.scenario import parse_scenario
    >>> s = parse_scenario({"name": "t", "agents": [{"type": "honest", "count": 3}],
    ...                     "simulation": {"n_epochs": 1, "steps_per_epoch": 3}})
    >>> work = [Job(f"t/{k}", s.model_dump(mode="json"), k) for k in range(2)]
    >>> done = run_jobs(work, workers=1)
    >>> sorted(done.results), done.failures
    (['t/0', 't/1'], [])
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TASKS", "Job", "JobResults", "json_default", "provenance", "register_task",
           "run_jobs"]

#: task name -> ``fn(scenario_json, seed, options) -> JSON-able dict``
TASKS: dict[str, Callable[[Mapping[str, Any], int, Mapping[str, Any]], dict]] = {}


def register_task(name: str) -> Callable:
    """Register a task function under ``name`` (a decorator)."""
    def deco(fn: Callable) -> Callable:
        TASKS[name] = fn
        return fn
    return deco


@register_task("compare")
def _compare_task(scenario_json: Mapping[str, Any], seed: int,
                  options: Mapping[str, Any]) -> dict:
    """The per-run figures of ``distsafe compare`` (:func:`baselines.compare.run_one`)."""
    from baselines.compare import run_one

    bad = options.get("bad_actors")  # absent: the scenario's variant's default
    return run_one(scenario_json, seed, None if bad is None else tuple(bad))


@dataclass(frozen=True)
class Job:
    """One run: ``key`` (unique in a batch, e.g. ``"baseline/seed=3"``), the resolved
    scenario's JSON, the seed, the task's name and its options."""

    key: str
    scenario: Mapping[str, Any]
    seed: int
    task: str = "compare"
    options: Mapping[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """A hash of the job's inputs: a stored result is reused only for the same inputs."""
        blob = json.dumps([self.scenario, self.seed, self.task, self.options],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class JobResults:
    """What :func:`run_jobs` found: results by key, failures, how many were reused."""

    results: dict[str, dict] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    reused: int = 0


def _run(task: str, scenario: Mapping[str, Any], seed: int,
         options: Mapping[str, Any]) -> dict:
    """Run one job's task (in a worker: the registry is this module's, re-imported)."""
    if task not in TASKS:  # a task registered by a module the worker has not imported
        import importlib

        importlib.import_module(options.get("_module", "baselines.jobs"))
    return TASKS[task](scenario, seed, options)


class _Store:
    """The JSON-lines result store: read what is there, append as results arrive."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.done: dict[str, tuple[str, dict]] = {}
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        good = 0  # bytes of complete lines: a line cut short by a kill is dropped
        if path.exists():
            data = path.read_bytes()
            for line in data.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break
                try:
                    rec = json.loads(line)
                    self.done[rec["key"]] = (rec["digest"], rec["result"])
                except (ValueError, KeyError, TypeError):
                    break
                good += len(line)
            if good < len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(good)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def get(self, job: Job) -> dict | None:
        hit = self.done.get(job.key)
        return hit[1] if hit is not None and hit[0] == job.digest() else None

    def add(self, job: Job, result: dict) -> None:
        if self.path is None:
            return
        self._fh.write(json.dumps({"key": job.key, "digest": job.digest(), "result": result},
                                  default=json_default) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self.path is not None:
            self._fh.close()


def provenance() -> dict[str, Any]:
    """What a result records so it can be repeated: package versions, the git commit of the
    source tree when it is a git checkout (``None`` otherwise), the Python version."""
    import platform
    import subprocess
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    commit = dirty = None
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        if commit:
            dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                        cwd=root, capture_output=True, text=True,
                                        timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"distsafe": version("distsafe"), "git_commit": commit, "git_dirty": dirty,
            "python": platform.python_version(), "numpy": version("numpy"),
            "gymnasium": version("gymnasium"), "pettingzoo": version("pettingzoo")}


def json_default(x: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars as Python ones."""
    import numpy as np

    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    raise TypeError(f"not JSON-able: {type(x).__name__}")


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split()) or 'no detail'}"


def run_jobs(jobs: Sequence[Job], *, backend: str = "local", workers: int | None = None,
             address: str | None = None, store: str | Path | None = None, retries: int = 1,
             on_progress: Callable[[int, int], None] | None = None) -> JobResults:
    """Run every job (see the module docstring); returns results by key.

    Args:
        jobs: The jobs; keys must be unique.
        backend: ``"local"`` or ``"ray"``.
        workers: Local worker processes (default: the machine's cores), or the CPUs of a
            local Ray this starts.
        address: A Ray cluster's address (``backend="ray"``); default: a local Ray.
        store: A JSON-lines file: finished results are appended there, and found there
            again by a later call (resume).
        retries: How many more times a failed job is tried.
        on_progress: Called with ``(jobs done, jobs)`` as jobs finish (reused ones first).

    Raises:
        ValueError: Duplicate keys, an unknown task or backend, bad counts.
        ImportError: ``backend="ray"`` without Ray installed (the message says how).
    """
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"run_jobs: job keys must be unique; repeated: {twice[:5]}")
    unknown = sorted({j.task for j in jobs} - set(TASKS))
    if unknown:
        raise ValueError(f"run_jobs: unknown task {unknown[0]!r}; registered: "
                         f"{', '.join(sorted(TASKS))}")
    if backend not in ("local", "ray"):
        raise ValueError(f"run_jobs: backend must be 'local' or 'ray', got {backend!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"run_jobs: retries must be an int >= 0, got {retries!r}")
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"run_jobs: workers must be an int >= 1, got {workers!r}")
    st = _Store(Path(store) if store is not None else None)
    out = JobResults()
    todo: list[Job] = []
    for job in jobs:
        hit = st.get(job)
        if hit is not None:
            out.results[job.key] = hit
            out.reused += 1
        else:
            todo.append(job)
    total = len(jobs)
    done = out.reused
    if on_progress is not None and done:
        on_progress(done, total)

    def finish(job: Job, result: dict) -> None:
        nonlocal done
        out.results[job.key] = result
        st.add(job, result)
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    def fail(job: Job, error: str, attempts: int) -> None:
        nonlocal done
        out.failures.append({"key": job.key, "seed": job.seed, "error": error,
                             "attempts": attempts})
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    try:
        if not todo:
            pass
        elif backend == "ray":
            _run_ray(todo, workers, address, retries, finish, fail)
        elif min(workers, len(todo)) == 1:
            for job in todo:
                for attempt in range(retries + 1):
                    try:
                        finish(job, _run(job.task, job.scenario, job.seed, job.options))
                        break
                    except Exception as e:  # noqa: BLE001 - reported as data, retried
                        if attempt == retries:
                            fail(job, _error(e), attempt + 1)
        else:
            _run_pool(todo, min(workers, len(todo)), retries, finish, fail)
    finally:
        st.close()
    order = {k: i for i, k in enumerate(keys)}
    out.failures.sort(key=lambda f: order[f["key"]])
    out.results = {k: out.results[k] for k in keys if k in out.results}
    return out


def _pool_context() -> Any:
    """``fork`` where it is safe (Linux): workers start at once and never re-run the
    caller's ``__main__`` (a script or a notebook needs no ``if __name__`` guard); ``spawn``
    elsewhere."""
    import multiprocessing
    import sys

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux")
                                       and "fork" in methods else "spawn")


def _worker_init() -> None:
    """Torch on one thread in each worker: a forked worker must not use the parent's torch
    threads (an RL policy's forward pass hangs on them), and the workers already fill the
    cores (the small networks of trained policies run fastest on one thread anyway)."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)
    else:  # read when the job first imports torch
        os.environ["OMP_NUM_THREADS"] = "1"


def _run_pool(todo: Sequence[Job], workers: int, retries: int,
              finish: Callable, fail: Callable) -> None:
    attempts = {j.key: 0 for j in todo}
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                  initializer=_worker_init)
    try:
        pending = {pool.submit(_run, j.task, j.scenario, j.seed, j.options): j for j in todo}
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                attempts[job.key] += 1
                try:
                    finish(job, fut.result())
                except Exception as e:  # noqa: BLE001 - a failed run, or a killed worker
                    if attempts[job.key] <= retries:
                        try:
                            pending[pool.submit(_run, job.task, job.scenario, job.seed,
                                                job.options)] = job
                            continue
                        except RuntimeError:  # the pool broke (a worker was killed)
                            pass
                    fail(job, _error(e), attempts[job.key])
    except BaseException:  # Ctrl-C, SIGTERM: stop now; finished jobs are in the store
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        raise
    pool.shutdown(wait=True)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a cluster address nothing answers at (Ray itself retries for minutes).

    ``host:port`` and ``ray://host:port`` are tried with one TCP connection; ``auto`` and
    other forms are left to Ray.

    Raises:
        ConnectionError: Nothing accepts a connection there within ``timeout`` seconds.
    """
    import re
    import socket

    m = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address.strip())
    if m is None:
        return
    host, port = m.group(1), int(m.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"--address {address}: no Ray cluster answers there "
                              f"({e.strerror or e}); start one with `ray start --head`, or "
                              "leave --address out for a local Ray") from None


def _run_ray(todo: Sequence[Job], workers: int, address: str | None, retries: int,
             finish: Callable, fail: Callable) -> None:
    try:
        import ray
    except ImportError:
        raise ImportError("backend 'ray' needs Ray: pip install 'distsafe[rllib]' (or "
                          "pip install ray)") from None
    started = not ray.is_initialized()
    if started:
        if address is not None:
            _check_reachable(address)
            ray.init(address=address, logging_level="warning", configure_logging=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="warning",
                     configure_logging=False,
                     runtime_env={"env_vars": {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}})
    try:
        remote = ray.remote(max_retries=0)(_run)
        attempts = {j.key: 0 for j in todo}
        pending = {remote.remote(j.task, j.scenario, j.seed, j.options): j for j in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                attempts[job.key] += 1
                try:
                    finish(job, ray.get(ref))
                except Exception as e:  # noqa: BLE001 - a failed task: retried, reported
                    cause = getattr(e, "cause", None) or e
                    if attempts[job.key] <= retries:
                        pending[remote.remote(job.task, job.scenario, job.seed,
                                              job.options)] = job
                        continue
                    fail(job, _error(cause), attempts[job.key])
    finally:
        if started:
            ray.shutdown()
