"""Parameter sweeps: a scenario over a grid of settings × seeds, summarised and tested.

``distsafe sweep CONFIG --param PATH=V1,V2,... [--param ...] --seeds N`` (and :func:`sweep`,
its Python twin) runs the scenario at every combination of the parameters' values — the
Cartesian product, the first ``--param`` varying slowest — over ``N`` seeds each:

- **paths** are dotted paths into the scenario's schema, with list indices:
  ``governance.random_audit.probability``, ``simulation.n_epochs``, ``agents[2].count``,
  ``agents[0].params.propose_prob``, ``payoff.h``, ``env_params.max_neighbors``. A key the
  schema does not have is refused naming the path where it went wrong and the keys allowed
  there (``governance.random_audt: unknown key; allowed: circuit_breaker, ...``); an optional
  block the config leaves out is created (``governance.random_audit.probability`` turns the
  audit on, its other fields at their defaults).
- **values** are YAML, one per comma (``0,0.05,0.1``; ``true,false``; ``[1,2],[3,4]``: commas
  inside brackets or quotes do not split). Every setting's scenario is validated like a
  config file (:func:`~baselines.scenario.parse_scenario`, then
  :func:`~baselines.scenario.preflight`), so a bad value is refused with its path before
  anything runs (exit status 2).
- **seeds**: run ``k`` of every setting uses the setting's scenario seed + ``k`` (``0 + k``
  without one): the same seeds for every setting, so settings can be compared seed by seed.

Each run is a :class:`~baselines.jobs.Job` of task ``"compare"`` (the per-run metrics of
``distsafe compare``: :func:`baselines.compare.run_one`), run by :func:`~baselines.jobs.
run_jobs` on a local process pool (default, sized to the machine) or on Ray (``--backend
ray [--address ...]``). A run is a function of its scenario and seed only, so the numbers do
not depend on the backend or the number of workers. A failed run is retried (``--retries``)
and then reported — a row with ``status`` ``failed`` and its error — never dropped. With an
output folder, finished runs are appended to ``OUT/jobs.jsonl`` as they finish, so an
interrupted sweep started again with the same ``--out`` runs only what is missing.

Written into the output folder (:meth:`SweepResult.save`):

==================  ======================================================================
``runs.csv``        one row per run: ``setting``, ``label``, one column per parameter path,
                    ``seed``, ``status``, ``error``, then the per-run metrics
``runs.parquet``    the same table (pyarrow)
``summary.csv``     one row per setting × metric: ``mean``, ``lo``, ``hi`` (Student-t 95 %
                    interval over the seeds where the metric is defined), ``n``
``tests.csv``       one row per metric × pair of settings: means, Welch's t (``welch_t``,
                    ``welch_p``) and Mann-Whitney U (``mw_u``, ``mw_p``), each p-value also
                    Holm-corrected over the pairs of that metric (``*_p_holm``)
``sweep.json``      everything needed to re-run it: provenance (package versions, git commit),
                    the command, the parameters, the resolved base scenario, every setting's
                    resolved scenario and seeds; then the summaries, every run's metrics and
                    the failures. ``distsafe sweep --rerun sweep.json`` runs it again.
``heatmap_*.png``   with exactly two parameters: one heatmap of means per table metric
``report.html``     one self-contained page (:mod:`baselines.report`), when that module is
                    there and matplotlib is installed
``jobs.jsonl``      the job store (resume)
==================  ======================================================================

Example:
    >>> from baselines.scenario import parse_scenario
    >>> tiny = parse_scenario({"name": "tiny", "agents": [{"type": "honest", "count": 2},
    ...                                                    {"type": "deceptive", "count": 1}],
    ...                        "simulation": {"n_epochs": 1, "steps_per_epoch": 4, "seed": 3}})
    >>> result = sweep(tiny, ["governance.transaction_tax.rate=0,0.2"], seeds=2, workers=1)
    >>> [s.label for s in result.settings], [s.seeds for s in result.settings]
    (['governance.transaction_tax.rate=0', 'governance.transaction_tax.rate=0.2'], [[3, 4], [3, 4]])
    >>> summary = result.summary()
    >>> summary[result.settings[1].label]["tax_revenue"].mean > 0.0
    True
    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import itertools
import json
import math
import os
import re
import sys
import types
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["MAIN_METRICS", "Setting", "SweepConfigError", "SweepResult", "apply", "cmd_sweep",
           "differences", "holm", "parse_param", "plan", "register", "rerun", "sweep"]

#: the metrics of the printed table, the heatmaps and the pairwise tests (besides
#: ``bad_actor_reward``, tested too); every metric is in the CSVs
MAIN_METRICS: tuple[str, ...] = ("bad_actor_payoff", "honest_payoff", "toxicity",
                                 "realized_harm_rate", "quality_gap", "welfare_per_epoch",
                                 "frozen_agents", "audits", "tax_revenue")
_TESTED = (*MAIN_METRICS, "bad_actor_reward")
_KIND = "distsafe sweep"
_FORMAT = 1


class SweepConfigError(ValueError):
    """A sweep that cannot run as asked: every problem, one line each (nothing has run)."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.problem_lines = [str(x) for x in lines]
        super().__init__("\n".join(self.problem_lines))


# --------------------------------------------------------------------------- parameters
_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def split_path(path: str) -> list[str | int]:
    """``"agents[2].params.p"`` -> ``["agents", 2, "params", "p"]``.

    Raises:
        SweepConfigError: Not a dotted path of names with optional ``[index]`` suffixes.
    """
    tokens: list[str | int] = []
    for part in str(path).split("."):
        m = _PART.fullmatch(part)
        if m is None:
            raise SweepConfigError([f"{path}: not a parameter path (expected dotted names "
                                    "with optional [index], e.g. "
                                    "governance.random_audit.probability or agents[0].count)"])
        tokens.append(m.group(1))
        tokens += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return tokens


def _split_values(text: str) -> list[str]:
    """Split at the commas outside brackets, braces and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def fmt_value(value: Any) -> str:
    """A value as written in labels: a plain string as is, anything else as JSON.

    Example:
        >>> fmt_value(0.1), fmt_value(True), fmt_value("truth"), fmt_value([1, 2])
        ('0.1', 'true', 'truth', '[1, 2]')
    """
    if isinstance(value, str) and value and value.strip() == value:
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, sort_keys=True)


#: a number in exponent notation without a dot (``1e13``), which YAML 1.1 leaves a string
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def parse_param(text: str) -> tuple[str, list[Any]]:
    """``"PATH=V1,V2,..."`` -> ``(PATH, [values])``, each value read as YAML.

    Example:
        >>> parse_param("governance.random_audit.probability=0,0.1,0.25")
        ('governance.random_audit.probability', [0, 0.1, 0.25])
        >>> parse_param("network.topology=complete,small_world")
        ('network.topology', ['complete', 'small_world'])
        >>> parse_param("payoff.h=1e1,2.5E-1")
        ('payoff.h', [10.0, 0.25])

    Raises:
        SweepConfigError: No ``=``, a bad path, an empty or unreadable value, a value given
            twice.
    """
    where = f"--param {text}"
    path, eq, rest = str(text).partition("=")
    path = path.strip()
    if not eq or not path:
        raise SweepConfigError([f"{where}: expected PATH=V1,V2,... (e.g. "
                                "governance.random_audit.probability=0,0.1,0.25)"])
    try:
        split_path(path)
    except SweepConfigError as e:
        raise SweepConfigError([f"--param {e}"]) from None
    values, seen, problems = [], {}, []
    for i, piece in enumerate(_split_values(rest)):
        if not piece.strip():
            problems.append(f"{where}: value {i + 1} is empty")
            continue
        try:
            value = yaml.safe_load(piece)
        except yaml.YAMLError as e:
            problems.append(f"{where}: value {piece.strip()!r} is not YAML "
                            f"({' '.join(str(e).split())})")
            continue
        if isinstance(value, str) and _EXPONENT.match(piece.strip()):  # unquoted only
            value = float(value)  # YAML 1.1 reads 1e13 (no dot) as a string; a number meant
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where}: value {piece.strip()!r} is not finite")
            continue
        same = float(value) if isinstance(value, int) and not isinstance(value, bool) \
            else value  # 1 and 1.0 are one setting of a float field
        key = json.dumps(same, sort_keys=True, default=str)
        if key in seen:
            problems.append(f"{where}: value {fmt_value(value)} is given twice")
            continue
        seen[key] = True
        values.append(value)
    if problems:
        raise SweepConfigError(problems)
    return path, values


def _model_of(annotation: Any) -> type | None:
    """The pydantic model an annotation holds (``X``, ``X | None``, ``list[X]``), if any."""
    from pydantic import BaseModel

    from baselines.scenario import _unwrap

    inner = _unwrap(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _keyed(annotation: Any) -> bool:
    """Whether a field of this annotation holds keys (a model, a dict, Any)."""
    if annotation is Any:
        return True
    if _model_of(annotation) is not None:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_keyed(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (dict, Mapping) or annotation in (dict, Mapping)


def _indexed(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_indexed(a) for a in typing.get_args(annotation) if a is not type(None))
    return annotation is Any or origin in (list, tuple) or annotation in (list, tuple)


def _kind(x: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a bool", int: "an int",
            float: "a number", type(None): "null"}.get(type(x), type(x).__name__)


def apply(scenario: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of a scenario's dump (``model_dump(mode="json")`` or loaded YAML) with
    ``path`` set to ``value``, the path checked against the schema as it goes.

    An absent or null block on the way is created when the schema has one there (an
    optional lever, a ``payoff`` mapping); the values themselves are checked later, by
    :func:`~baselines.scenario.parse_scenario`.

    Example:
        >>> base = {"name": "x", "agents": [{"type": "honest", "count": 2}],
        ...         "simulation": {"n_epochs": 1, "steps_per_epoch": 1}, "governance": None}
        >>> apply(base, "governance.random_audit.probability", 0.2)["governance"]
        {'random_audit': {'probability': 0.2}}
        >>> apply(base, "agents[0].count", 5)["agents"]
        [{'type': 'honest', 'count': 5}]
        >>> try:
        ...     apply(base, "simulation.n_epoch", 3)
        ... except SweepConfigError as e:
        ...     print(e)
        simulation.n_epoch: unknown key; allowed: n_epochs, seed, steps_per_epoch

    Raises:
        SweepConfigError: A key the schema does not have there (naming the allowed keys), an
            index out of range, a key into a value that has none.
    """
    from baselines.scenario import Scenario, _join

    tokens = split_path(path)
    out = copy.deepcopy(dict(scenario))
    node: Any = out
    model: type | None = Scenario  # the schema of ``node`` (None: free-form)
    free = False                    # inside a free-form mapping (payoff, params, ...)
    annotation: Any = None          # the annotation of ``node``'s field
    done = ""

    def fail(where: str, problem: str) -> typing.NoReturn:
        raise SweepConfigError([f"{where}: {problem}"])

    for i, tok in enumerate(tokens):
        last = i == len(tokens) - 1
        here = _join(done, f"[{tok}]" if isinstance(tok, int) else tok)
        if isinstance(tok, int):
            if not isinstance(node, list):
                if node is None and not free and annotation is not None \
                        and _indexed(annotation):
                    fail(here, f"index out of range: {done} is empty")
                fail(done, f"is {_kind(node)}, not a list; it has no [{tok}]")
            if tok >= len(node):
                fail(here, f"index out of range: {done} has {len(node)} "
                           f"entr{'y' if len(node) == 1 else 'ies'} (0 .. {len(node) - 1})")
            if last:
                node[tok] = value
                return out
            child = node[tok]
            # the item of a list of models keeps ``model``; ``annotation`` is the item's
            annotation = model if model is not None else (None if free else Any)
        else:
            if not isinstance(node, dict):
                if isinstance(node, list):
                    fail(done, f"is a list of {len(node)}; give an index, e.g. {done}[0]")
                fail(done, f"is {_kind(node)}; it has no key {tok!r}")
            next_annotation: Any = None
            if model is not None:
                fields = model.model_fields
                if tok not in fields:
                    fail(here, f"unknown key; allowed: {', '.join(sorted(fields))}")
                next_annotation = fields[tok].annotation
            if last:
                node[tok] = value
                return out
            child = node.get(tok)
            nxt = tokens[i + 1]
            if model is not None and not (_indexed(next_annotation) if isinstance(nxt, int)
                                          else _keyed(next_annotation)):
                what = "a list" if isinstance(nxt, int) else "keys"
                fail(here, f"is a value, it has no {what} (got the path {path})")
            if child is None and isinstance(nxt, str):
                child = node[tok] = {}
            if model is not None:
                free = _model_of(next_annotation) is None
                model = _model_of(next_annotation)
            annotation = next_annotation
        node = child
        done = here
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Setting:
    """One point of the grid: its parameter values, its resolved scenario, its seeds."""

    index: int
    values: tuple[Any, ...]
    label: str
    scenario: dict[str, Any]
    seeds: list[int]


@dataclass
class _Plan:
    config: str
    params: list[tuple[str, list[Any]]]
    base: dict[str, Any]
    settings: list[Setting]
    n_seeds: int
    bad_actors: tuple[str, ...]

    @property
    def name(self) -> str:
        return str(self.base.get("name", "sweep"))


def _label(paths: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{p}={fmt_value(v)}" for p, v in zip(paths, values)) or "base"


def _as_params(params: Sequence[str | tuple[str, Sequence[Any]]]) -> list[tuple[str, list]]:
    out: list[tuple[str, list]] = []
    problems: list[str] = []
    for p in params:
        try:
            if isinstance(p, str):
                out.append(parse_param(p))
            else:
                path, values = p
                split_path(path)
                values = list(values)
                if not values:
                    raise SweepConfigError([f"--param {path}: no values"])
                out.append((str(path), values))
        except SweepConfigError as e:
            problems += e.problem_lines
    paths = [p for p, _ in out]
    for path in sorted({p for p in paths if paths.count(p) > 1}):
        problems.append(f"--param {path}: given more than once; give its values in one "
                        "--param")
    if problems:
        raise SweepConfigError(problems)
    return out


def plan(config: Any, params: Sequence[str | tuple[str, Sequence[Any]]], seeds: int, *,
         bad_actors: Sequence[str] | None = None, check: bool = True) -> _Plan:
    """Load the config, apply every parameter value, validate every setting (and preflight
    it, with ``check``); nothing runs. :func:`sweep` is ``plan`` then the runs.

    Raises:
        ConfigError: The config itself does not load or preflight.
        SweepConfigError: A bad parameter, path or value (every problem, one line each).
    """
    from baselines.compare import groups_of
    from baselines.scenario import (
        ConfigError,
        Scenario,
        load_scenario,
        parse_scenario,
        preflight,
    )

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SweepConfigError([f"--seeds: must be an int >= 1, got {seeds!r}"])
    plist = _as_params(params)
    if isinstance(config, Scenario):
        source, base = f"<scenario {config.name}>", config
    else:
        source, base = str(config), load_scenario(config)
    if check:
        preflight(base, source)
    base_dump = base.model_dump(mode="json")
    problems: list[str] = []
    for path, values in plist:  # each value alone: errors named by their --param
        for v in values:
            try:
                d = apply(base_dump, path, v)
            except SweepConfigError as e:
                problems += [f"--param {path}: {line}" for line in e.problem_lines]
                break
            try:
                parse_scenario(d, f"--param {path}={fmt_value(v)}")
            except ConfigError as e:
                problems += e.lines()
    if problems:
        raise SweepConfigError(problems)
    paths = [p for p, _ in plist]
    settings: list[Setting] = []
    for index, combo in enumerate(itertools.product(*(vals for _, vals in plist))):
        label = _label(paths, combo)
        d = base_dump
        for path, v in zip(paths, combo):
            d = apply(d, path, v)
        src = f"setting {label}"
        try:
            scenario = parse_scenario(d, src)
            if check:
                preflight(scenario, src)
        except ConfigError as e:
            problems += e.lines()
            continue
        first = scenario.simulation.seed or 0
        settings.append(Setting(index, tuple(combo), label, scenario.model_dump(mode="json"),
                                [first + k for k in range(seeds)]))
    if problems:
        raise SweepConfigError(problems)
    return _Plan(source, plist, base_dump, settings, seeds,
                 groups_of(str(base_dump.get("env", "sandbox-v0")), bad_actors)[0])


# --------------------------------------------------------------------------- statistics
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values (nan ones are left out and stay nan).

    The ``i``-th smallest of ``m`` p-values becomes ``max over j <= i of min(1, (m - j) *
    p_(j))`` (``j`` from 0): it controls the family-wise error rate, like Bonferroni, and
    rejects at least as much.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        out[i] = running
    return [round(float(x), 15) if math.isfinite(x) else math.nan for x in out]


def _pair_tests(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """``(welch_t, welch_p, mw_u, mw_p)``; nan where a test is undefined."""
    from scipy import stats

    t = pt = u = pu = math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if len(a) >= 2 and len(b) >= 2:
            r = stats.ttest_ind(a, b, equal_var=False)
            t, pt = float(r.statistic), float(r.pvalue)
        if len(a) >= 1 and len(b) >= 1:
            r = stats.mannwhitneyu(a, b, alternative="two-sided")
            u, pu = float(r.statistic), float(r.pvalue)
    return t, pt, u, pu


def _all_pairs(samples: Sequence[np.ndarray]) -> list[tuple[float, float, float, float]]:
    """:func:`_pair_tests` for every pair ``i < j`` of samples (in
    ``itertools.combinations`` order). When every sample has the same size the pairs go
    through scipy in batches (one call per Mann-Whitney method, the method chosen per pair as
    scipy's ``"auto"`` chooses it for that pair alone), else one pair at a time."""
    from scipy import stats

    pairs = list(itertools.combinations(range(len(samples)), 2))
    sizes = {len(x) for x in samples}
    if not pairs or len(sizes) != 1 or min(sizes) < 1:
        return [_pair_tests(samples[i], samples[j]) for i, j in pairs]
    n = sizes.pop()
    stacked = np.stack(samples)
    a = stacked[[i for i, _ in pairs]]
    b = stacked[[j for _, j in pairs]]
    t = pt = np.full(len(pairs), math.nan)
    u, pu = np.full(len(pairs), math.nan), np.full(len(pairs), math.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if n >= 2:
            r = stats.ttest_ind(a, b, axis=1, equal_var=False)
            t, pt = np.asarray(r.statistic, float), np.asarray(r.pvalue, float)
        both = np.sort(np.concatenate([a, b], axis=1), axis=1)
        ties = (np.diff(both, axis=1) == 0).any(axis=1)
        asymptotic = ties | (n > 8)  # scipy's "auto", pair by pair
        for method, rows in (("asymptotic", asymptotic), ("exact", ~asymptotic)):
            if rows.any():
                r = stats.mannwhitneyu(a[rows], b[rows], axis=1, alternative="two-sided",
                                       method=method)
                u[rows], pu[rows] = r.statistic, r.pvalue
    return [(float(t[k]), float(pt[k]), float(u[k]), float(pu[k])) for k in range(len(pairs))]


# --------------------------------------------------------------------------- the result
@dataclass
class SweepResult(_Plan):
    """What :func:`sweep` found: the plan's settings, one row per run, failures,
    provenance."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    reused: int = 0
    backend: str = "local"
    workers: int | None = None
    address: str | None = None
    retries: int = 1
    provenance: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    rerun_of: str | None = None

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.params]

    @property
    def metric_keys(self) -> list[str]:
        from baselines.compare import EXTRA, METRICS

        return [m.key for m in (*METRICS, *EXTRA)]

    def _by_setting(self) -> dict[int, list[dict[str, Any]]]:
        key = (id(self.rows), len(self.rows))
        if getattr(self, "_index_key", None) != key:  # rows are indexed once, not per call
            index: dict[int, list[dict[str, Any]]] = {s.index: [] for s in self.settings}
            for r in self.rows:
                index.setdefault(r["setting"], []).append(r)
            self._index, self._index_key, self._summary = index, key, None
        return self._index

    def values(self, setting: Setting | int, metric: str) -> list[float]:
        """The metric's per-seed values of a setting (nan for a failed run)."""
        index = setting.index if isinstance(setting, Setting) else setting
        return [r[metric] for r in self._by_setting().get(index, [])]

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{setting label: {metric: Stats}}`` (mean, 95 % interval, n)."""
        from baselines.compare import interval

        self._by_setting()
        if getattr(self, "_summary", None) is None:
            self._summary = {s.label: {k: interval(self.values(s, k))
                                       for k in self.metric_keys} for s in self.settings}
        return {label: dict(stats) for label, stats in self._summary.items()}

    def tests(self, metrics: Sequence[str] = _TESTED) -> list[dict[str, Any]]:
        """Welch's t and Mann-Whitney U for every pair of settings and every metric, with
        Holm's correction over the pairs of a metric; values that are not finite are left
        out of a test (its ``n_a``, ``n_b``)."""
        out: list[dict[str, Any]] = []
        for metric in metrics:
            rows = []
            samples = []
            for s in self.settings:
                x = np.asarray(self.values(s, metric), dtype=np.float64)
                samples.append(x[np.isfinite(x)])
            found = _all_pairs(samples)
            for (ia, ib), (t, pt, u, pu) in zip(
                    itertools.combinations(range(len(self.settings)), 2), found):
                sa, sb = self.settings[ia], self.settings[ib]
                a, b = samples[ia], samples[ib]
                rows.append({
                    "metric": metric, "a": sa.label, "b": sb.label,
                    "mean_a": float(a.mean()) if len(a) else math.nan,
                    "mean_b": float(b.mean()) if len(b) else math.nan,
                    "n_a": len(a), "n_b": len(b), "welch_t": t, "welch_p": pt,
                    "mw_u": u, "mw_p": pu})
            for key in ("welch_p", "mw_p"):
                for row, adj in zip(rows, holm([r[key] for r in rows])):
                    row[f"{key}_holm"] = adj
            out += rows
        return out

    # -- text
    def table(self) -> str:
        """Rows = settings (one column per parameter), then ``mean [lo, hi]`` per metric."""
        from baselines.compare import METRICS, _cell

        titles = {m.key: m.title for m in METRICS}
        summ = self.summary()
        head = [*self.paths, *(titles[k] for k in MAIN_METRICS)]
        body = [[*(fmt_value(v) for v in s.values),
                 *(_cell(summ[s.label][k]) for k in MAIN_METRICS)] for s in self.settings]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        npar = len(self.paths)
        lines = ["  ".join(c.ljust(w) if i < npar else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in [head, *body]]
        lines.append(f"mean [95% interval] over {self.n_seeds} seeds (seed k = the "
                     f"scenario's seed + k, the same for every setting); bad actors: "
                     f"{', '.join(self.bad_actors)}; '-': undefined")
        for f in self.failures:
            lines.append(f"FAILED: {f['label']} seed {f['seed']}: {f['error']} "
                         f"({f['attempts']} attempt{'s' if f['attempts'] != 1 else ''})")
        return "\n".join(lines)

    # -- tables as text
    def _run_columns(self) -> list[str]:
        return ["setting", "label", *self.paths, "seed", "status", "error", *self.metric_keys]

    def _column_values(self) -> dict[str, list[Any]]:
        """Parameter columns typed for Parquet: numbers, bools, strings, else JSON text."""
        cols: dict[str, list[Any]] = {}
        for path in self.paths:
            vals = [r[path] for r in self.rows]
            if all(isinstance(v, bool) for v in vals):
                cols[path] = vals
            elif all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                cols[path] = vals
            elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                cols[path] = [float(v) for v in vals]
            elif all(isinstance(v, str) for v in vals):
                cols[path] = vals
            else:
                cols[path] = [json.dumps(v, sort_keys=True) for v in vals]
        return cols

    def runs_csv(self) -> str:
        cols = self._column_values()
        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\n")
        names = self._run_columns()
        w.writerow(names)
        for i, r in enumerate(self.rows):
            w.writerow([_csv_cell(cols[n][i] if n in cols else r[n]) for n in names])
        return buf.getvalue()

    def summary_csv(self) -> str:
        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["setting", "label", *self.paths, "metric", "mean", "lo", "hi", "n"])
        summ = self.summary()
        for s in self.settings:
            for k, st in summ[s.label].items():
                w.writerow([s.index, s.label, *(_csv_cell(_plain(v)) for v in s.values), k,
                            repr(st.mean), repr(st.lo), repr(st.hi), st.n])
        return buf.getvalue()

    def tests_csv(self) -> str:
        cols = ["metric", "a", "b", "mean_a", "mean_b", "n_a", "n_b", "welch_t", "welch_p",
                "welch_p_holm", "mw_u", "mw_p", "mw_p_holm"]
        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for row in self.tests():
            w.writerow([_csv_cell(row[c]) for c in cols])
        return buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        """Everything (``sweep.json``): enough to re-run it, and what it found."""
        from baselines.compare import CONFIDENCE, _jsonable

        summ = self.summary()
        return _jsonable({
            "kind": _KIND, "format": _FORMAT,
            "provenance": self.provenance,
            "command": self.command,
            "rerun_of": self.rerun_of,
            "config": self.config,
            "params": [{"path": p, "values": v} for p, v in self.params],
            "seeds": self.n_seeds,
            "seed_rule": "run k of every setting uses its scenario's seed + k (0 + k without "
                         "one)",
            "backend": self.backend, "workers": self.workers, "address": self.address,
            "retries": self.retries,
            "bad_actors": list(self.bad_actors),
            "confidence": CONFIDENCE,
            "interval": "Student t over the seeds where the metric is defined",
            "tests": "Welch's t (scipy.stats.ttest_ind, equal_var=False) and Mann-Whitney U "
                     "(two-sided), Holm-corrected over the pairs of settings of a metric",
            "base": self.base,
            "settings": [{"index": s.index, "label": s.label,
                          "values": dict(zip(self.paths, s.values)), "seeds": s.seeds,
                          "scenario": s.scenario} for s in self.settings],
            "summary": {s.label: {k: st._asdict() for k, st in summ[s.label].items()}
                        for s in self.settings},
            "runs": self.rows,
            "failures": self.failures,
            "reused": self.reused,
        })

    # -- files
    def heatmaps(self, out: str | Path) -> list[Path]:
        """With exactly two parameters: ``heatmap_<metric>.png`` per table metric (rows: the
        first parameter's values, columns: the second's; cells: mean and interval)."""
        if len(self.params) != 2:
            return []
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from baselines.compare import METRICS, _cell

        titles = {m.key: m.title for m in METRICS}
        (p0, v0), (p1, v1) = self.params
        by_values = {tuple(fmt_value(x) for x in s.values): s for s in self.settings}
        summ = self.summary()
        written = []
        for metric in MAIN_METRICS:
            grid = np.full((len(v0), len(v1)), math.nan)
            text = [["-"] * len(v1) for _ in v0]
            for i, a in enumerate(v0):
                for j, b in enumerate(v1):
                    s = by_values.get((fmt_value(a), fmt_value(b)))
                    if s is None:
                        continue
                    st = summ[s.label][metric]
                    grid[i, j] = st.mean
                    text[i][j] = _cell(st).replace(" [", "\n[")
            fig = Figure(figsize=(max(4.8, 2.2 + 1.5 * len(v1)),
                                  max(3.4, 1.4 + 0.75 * len(v0))))
            FigureCanvasAgg(fig)
            ax = fig.subplots()
            finite = grid[np.isfinite(grid)]
            masked = np.ma.masked_invalid(grid)
            im = ax.imshow(masked, cmap="viridis", aspect="auto",
                           vmin=finite.min() if finite.size else 0.0,
                           vmax=finite.max() if finite.size else 1.0)
            ax.set_facecolor("#cccccc")
            mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
            for i in range(len(v0)):
                for j in range(len(v1)):
                    dark = math.isfinite(grid[i, j]) and grid[i, j] < mid
                    ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
            ax.set_xticks(range(len(v1)), [fmt_value(x) for x in v1])
            ax.set_yticks(range(len(v0)), [fmt_value(x) for x in v0])
            ax.set_xlabel(p1.replace("$", r"\$"))
            ax.set_ylabel(p0.replace("$", r"\$"))
            ax.set_title(f"{titles[metric]}: mean [95% interval], {self.n_seeds} seeds",
                         fontsize=9)
            fig.colorbar(im, ax=ax)
            fig.tight_layout()
            path = Path(out) / f"heatmap_{metric}.png"
            tmp = path.with_name(f".{path.name}.tmp")
            fig.savefig(tmp, dpi=100, format="png")
            os.replace(tmp, path)
            written.append(path)
        return written

    def report(self, out: str | Path, heatmaps: Sequence[Path] = ()) -> Path | None:
        """``report.html`` (:mod:`baselines.report`); None when that module or matplotlib is
        missing."""
        try:
            import matplotlib  # noqa: F401

            from baselines.report import Report
        except ImportError:
            return None
        from baselines.compare import METRICS

        titles = {m.key: m.title for m in METRICS}
        meta = {"distsafe": self.provenance.get("distsafe"),
                "git commit": self.provenance.get("git_commit"),
                "command": self.command, "config": self.config,
                "seeds": f"{self.n_seeds} per setting (seed k = the scenario's seed + k)",
                "runs": f"{len(self.rows)} ({len(self.failures)} failed)"}
        rep = Report(f"sweep: {self.base.get('name', '')}", meta=meta,
                     subtitle=", ".join(f"{p} in {{{', '.join(map(fmt_value, v))}}}"
                                        for p, v in self.params))
        summ = self.summary()
        sec = rep.section("Settings", "Mean and Student-t 95 % interval over the seeds, per "
                          "setting (every metric is in summary.csv).")
        sec.table([*self.paths, *(titles[k] for k in MAIN_METRICS)],
                  [[*(fmt_value(v) for v in s.values),
                    *(summ[s.label][k] for k in MAIN_METRICS)] for s in self.settings],
                  id="settings")
        if self.failures:
            rep.section("Failures").table(
                ["setting", "seed", "attempts", "error"],
                [[f["label"], f["seed"], f["attempts"], f["error"]] for f in self.failures],
                id="failures")
        plots = rep.section("Intervals", "One chart per metric: each setting's mean and 95 % "
                            "interval.")
        for k in MAIN_METRICS:
            plots.interval_plot(titles[k], [s.label for s in self.settings],
                                [summ[s.label][k] for s in self.settings])
        if heatmaps:
            hm = rep.section("Heatmaps")
            for path in heatmaps:
                hm.figure(Path(path).read_bytes(), caption=path.name)
        tests = [t for t in self.tests(MAIN_METRICS)]
        shown = [t for t in tests if min(t["welch_p_holm"], t["mw_p_holm"]) < 0.05
                 or len(tests) <= 200]
        rep.section("Pairwise tests", "Welch's t and Mann-Whitney U between every pair of "
                    "settings, p-values Holm-corrected over the pairs of a metric"
                    + ("" if len(shown) == len(tests) else
                       f"; only the {len(shown)} pairs with a corrected p below 0.05 of "
                       f"{len(tests)} are shown (all are in tests.csv)") + ".").table(
            ["metric", "a", "b", "mean a", "mean b", "Welch p (Holm)", "Mann-Whitney p (Holm)"],
            [[titles[t["metric"]], t["a"], t["b"], t["mean_a"], t["mean_b"],
              t["welch_p_holm"], t["mw_p_holm"]] for t in shown], id="tests")
        return rep.write(Path(out) / "report.html")

    def save(self, out: str | Path) -> list[Path]:
        """Write the files of the module docstring into ``out``; returns their paths."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        texts = {"runs.csv": self.runs_csv(), "summary.csv": self.summary_csv(),
                 "tests.csv": self.tests_csv(),
                 "sweep.json": json.dumps(self.to_json(), indent=1) + "\n"}
        for name, text in texts.items():
            path = out / name
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text(text, newline="", encoding="utf-8")
            os.replace(tmp, path)
            written.append(path)
        cols = self._column_values()
        table = pa.table({n: cols[n] if n in cols else
                          [None if _nan(r[n]) else r[n] for r in self.rows]
                          for n in self._run_columns()})
        path = out / "runs.parquet"
        tmp = out / ".runs.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        written.insert(1, path)
        maps: list[Path] = []
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            pass
        else:
            maps = self.heatmaps(out)
        written += maps
        page = self.report(out, maps)
        if page is not None:
            written.append(page)
        return written


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _plain(v: Any) -> Any:
    return v if isinstance(v, (bool, int, float, str)) else json.dumps(v, sort_keys=True)


def _csv_cell(x: Any) -> Any:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        return repr(x)
    return "" if x is None else x


# --------------------------------------------------------------------------- running
def _command(p: _Plan, backend: str, workers: int | None, address: str | None) -> str:
    import shlex

    parts = ["distsafe", "sweep", p.config]
    for path, values in p.params:
        parts += ["--param", f"{path}={','.join(fmt_value(v) for v in values)}"]
    parts += ["--seeds", str(p.n_seeds), "--backend", backend]
    if workers is not None:
        parts += ["--workers", str(workers)]
    if address:
        parts += ["--address", address]
    return " ".join(shlex.quote(x) for x in parts)


def _execute(p: _Plan, *, backend: str, workers: int | None, address: str | None,
             out: str | Path | None, retries: int,
             on_progress: Callable[[int, int], None] | None, command: str | None,
             rerun_of: str | None = None, save: bool = True) -> SweepResult:
    import baselines.compare  # noqa: F401 - loaded before a pool forks: warm workers
    import baselines.runner  # noqa: F401
    from baselines.compare import groups_of
    from baselines.jobs import Job, provenance, run_jobs

    default = groups_of(str(p.base.get("env", "sandbox-v0")))[0]
    options = {} if tuple(p.bad_actors) == default else {"bad_actors": list(p.bad_actors)}
    jobs = []
    where: dict[str, tuple[Setting, int]] = {}
    for s in p.settings:
        for seed in s.seeds:
            key = f"{s.label} | seed={seed}"
            jobs.append(Job(key, s.scenario, seed, "compare", options))
            where[key] = (s, seed)
    store = Path(out) / "jobs.jsonl" if out is not None else None
    done = run_jobs(jobs, backend=backend, workers=workers, address=address, store=store,
                    retries=retries, on_progress=on_progress)
    result = SweepResult(
        config=p.config, params=p.params, base=p.base, settings=p.settings,
        n_seeds=p.n_seeds, bad_actors=tuple(p.bad_actors), rows=[], reused=done.reused,
        backend=backend, workers=workers if workers is not None else (os.cpu_count() or 1),
        address=address, retries=retries, provenance=provenance(),
        command=command or _command(p, backend, workers, address), rerun_of=rerun_of)
    errors = {f["key"]: f for f in done.failures}
    keys = result.metric_keys
    paths = [path for path, _ in p.params]
    for job in jobs:
        s, seed = where[job.key]
        row = {"setting": s.index, "label": s.label, **dict(zip(paths, s.values)),
               "seed": seed}
        if job.key in done.results:
            metrics = done.results[job.key]["metrics"]
            row.update(status="ok", error="")
            row.update({k: _float(metrics.get(k)) for k in keys})
        else:
            f = errors[job.key]
            row.update(status="failed", error=f["error"])
            row.update({k: math.nan for k in keys})
            result.failures.append({"setting": s.index, "label": s.label, "seed": seed,
                                    "error": f["error"], "attempts": f["attempts"]})
        result.rows.append(row)
    if out is not None and save:
        result.save(out)
    return result


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def sweep(config: Any, params: Sequence[str | tuple[str, Sequence[Any]]], seeds: int, *,
          backend: str = "local", workers: int | None = None, address: str | None = None,
          out: str | Path | None = None, retries: int = 1,
          bad_actors: Sequence[str] | None = None,
          on_progress: Callable[[int, int], None] | None = None,
          command: str | None = None) -> SweepResult:
    """Run a sweep (what ``distsafe sweep`` does; see the module docstring).

    Args:
        config: A scenario file or a :class:`~baselines.scenario.Scenario`.
        params: ``"PATH=V1,V2,..."`` strings or ``(PATH, [values])`` pairs.
        seeds: Runs per setting; run ``k`` uses the setting's scenario seed + ``k``.
        backend: ``"local"`` (a process pool) or ``"ray"``.
        workers: Local worker processes (default: the machine's cores; 1 runs in this
            process), or the CPUs of the local Ray started. The numbers do not depend on it.
        address: A Ray cluster's address (``backend="ray"``).
        out: Write the result files there; runs are stored in ``out/jobs.jsonl`` as they
            finish, and a later call with the same ``out`` reuses them (resume).
        retries: How many more times a failed run is tried before it is reported.
        bad_actors: Group labels counted as bad actors (default: the variant's,
            :data:`baselines.compare.VARIANT_GROUPS`).
        on_progress: Called with ``(runs done, runs)`` as runs finish.
        command: Recorded in ``sweep.json`` (default: the equivalent ``distsafe sweep``).

    Raises:
        ConfigError: The config does not load or preflight.
        SweepConfigError: A bad parameter, path or value (nothing has run).
        ValueError: A bad backend or worker count; ImportError: Ray missing.
    """
    p = plan(config, params, seeds, bad_actors=bad_actors)
    return _execute(p, backend=backend, workers=workers, address=address, out=out,
                    retries=retries, on_progress=on_progress, command=command)


def load_plan(result_json: str | Path) -> tuple[_Plan, dict[str, Any]]:
    """The sweep recorded in a ``sweep.json``: its plan (the recorded resolved scenarios and
    seeds, validated again) and the recorded data.

    Raises:
        SweepConfigError: Not a readable sweep record, or a recorded scenario that no longer
            validates.
    """
    from baselines.scenario import ConfigError, parse_scenario

    src = str(result_json)
    try:
        data = json.loads(Path(result_json).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepConfigError([f"{src}: no such file"]) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SweepConfigError([f"{src}: cannot read it as JSON ({e})"]) from None
    if not isinstance(data, dict) or data.get("kind") != _KIND:
        raise SweepConfigError([f"{src}: not a sweep record (a sweep.json written by "
                                "distsafe sweep)"])
    problems: list[str] = []
    settings = []
    try:
        params = [(str(x["path"]), list(x["values"])) for x in data["params"]]
        for i, s in enumerate(data["settings"]):
            try:
                parse_scenario(s["scenario"], f"{src}: settings[{i}].scenario")
            except ConfigError as e:
                problems += e.lines()
                continue
            settings.append(Setting(int(s["index"]), tuple(s["values"][p] for p, _ in params),
                                    str(s["label"]), s["scenario"],
                                    [int(x) for x in s["seeds"]]))
        p = _Plan(str(data["config"]), params, data["base"], settings, int(data["seeds"]),
                  tuple(data["bad_actors"]))
    except (KeyError, TypeError, ValueError) as e:
        raise SweepConfigError([f"{src}: a malformed sweep record ({type(e).__name__}: "
                                f"{e})"]) from None
    if problems:
        raise SweepConfigError(problems)
    return p, data


def rerun(result_json: str | Path, out: str | Path | None = None, *, backend: str = "local",
          workers: int | None = None, address: str | None = None, retries: int = 1,
          on_progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run a recorded sweep again from its ``sweep.json``: the recorded resolved scenarios
    and seeds (not the config file, which may have changed since). Compare the runs with
    :func:`differences`.

    Raises:
        SweepConfigError: See :func:`load_plan`; ``out`` is the recorded sweep's own folder
            (its job store would serve the old results instead of running them).
    """
    p, _ = load_plan(result_json)
    if out is not None and Path(out).resolve() == Path(result_json).resolve().parent:
        raise SweepConfigError([f"{out}: the folder of the sweep being re-run; its jobs.jsonl "
                                "would serve the recorded results instead of running them "
                                "again: give another --out"])
    cmd = f"distsafe sweep --rerun {result_json} --backend {backend}"
    return _execute(p, backend=backend, workers=workers, address=address, out=out,
                    retries=retries, on_progress=on_progress, command=cmd,
                    rerun_of=str(result_json))


def differences(recorded: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                metrics: Sequence[str] | None = None) -> list[str]:
    """Where two lists of run rows (``sweep.json``'s ``runs``, :attr:`SweepResult.rows`)
    differ: one line per run whose status or any metric differs, or that one of them lacks
    (null and nan are the same)."""
    def key(r: Mapping[str, Any]) -> tuple[str, int]:
        return str(r["label"]), int(r["seed"])

    def same(x: Any, y: Any) -> bool:
        nx = x is None or (isinstance(x, float) and math.isnan(x))
        ny = y is None or (isinstance(y, float) and math.isnan(y))
        return nx and ny or (not nx and not ny and x == y)

    a = {key(r): r for r in recorded}
    b = {key(r): r for r in rows}
    out = []
    for k in [*a, *(k for k in b if k not in a)]:
        if k not in a or k not in b:
            out.append(f"{k[0]} seed {k[1]}: only in the "
                       f"{'new' if k not in a else 'recorded'} runs")
            continue
        names = metrics if metrics is not None else [
            n for n in a[k] if n not in ("setting", "label", "seed", "error")
            and not isinstance(a[k][n], (dict, list))]
        bad = [n for n in names if not same(a[k].get(n), b[k].get(n))]
        if bad:
            n = bad[0]
            out.append(f"{k[0]} seed {k[1]}: {', '.join(bad)} differ (e.g. {n}: "
                       f"{a[k].get(n)!r} recorded, {b[k].get(n)!r} now)")
    return out


# --------------------------------------------------------------------------- the CLI
def default_out(name: str) -> Path:
    """``runs/sweep-<scenario name>``."""
    safe = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in name)
    return Path("runs") / f"sweep-{safe}"


def _cli() -> Any:
    """The command-line module (imported on demand: it imports this one)."""
    import baselines.cli

    return baselines.cli


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` command to ``distsafe``'s subparsers; returns its parser."""
    _int_at_least = _cli()._int_at_least
    positive = _int_at_least(1, "a positive integer")
    p = subparsers.add_parser(
        "sweep", help="run a config over a grid of parameter values x seeds; summaries with "
                      "95%% intervals, pairwise tests, runs.csv/.parquet, heatmaps",
        description="Run CONFIG at every combination of the --param values, --seeds runs "
                    "each (run k of every setting: the scenario's seed + k). Writes runs.csv, "
                    "runs.parquet, summary.csv, tests.csv, sweep.json (and heatmaps with two "
                    "parameters) into --out; an interrupted sweep resumes there.")
    p.add_argument("config", metavar="CONFIG", nargs="?", help="scenario YAML file")
    p.add_argument("--param", action="append", default=[], metavar="PATH=V1,V2,...",
                   help="a dotted path into the scenario (e.g. "
                        "governance.random_audit.probability, agents[2].count) and its values "
                        "(YAML, comma-separated); repeat for a grid")
    p.add_argument("--seeds", type=positive, metavar="N", help="runs per setting")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: a process pool (default); ray: one Ray task per run")
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="a Ray cluster's address (with --backend ray; default: start a local "
                        "Ray)")
    p.add_argument("--workers", type=positive, default=None, metavar="W",
                   help="local worker processes, or the CPUs of a local Ray (default: the "
                        "machine's cores); the numbers do not depend on it")
    p.add_argument("--retries", type=_int_at_least(0, "an integer >= 0"), default=1,
                   metavar="R", help="how many more times a failed run is tried (default 1)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where the files go (default: runs/sweep-<scenario name>, or "
                        "<recorded folder>-rerun with --rerun); a sweep there resumes")
    p.add_argument("--rerun", metavar="RESULT.json", default=None,
                   help="run a recorded sweep (its sweep.json) again: the same resolved "
                        "scenarios and seeds; reports whether every run's metrics match")
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    """``distsafe sweep``: plan (every problem before anything runs), run, print, save."""
    cli = _cli()
    PROG, ProgressBar, _Failure, _Stop = cli.PROG, cli.ProgressBar, cli._Failure, cli._Stop

    if args.address is not None and args.backend != "ray":
        raise _Failure("--address names a Ray cluster: use it with --backend ray")
    recorded: dict[str, Any] | None = None
    if args.rerun is not None:
        given = [f for f, v in (("CONFIG", args.config), ("--param", args.param),
                                ("--seeds", args.seeds)) if v]
        if given:
            raise _Failure(f"--rerun runs the recorded sweep as it was: give no "
                           f"{', '.join(given)} with it")
        try:
            p, recorded = load_plan(args.rerun)
        except SweepConfigError as e:
            raise _Failure(str(e)) from None
        out = Path(args.out) if args.out else \
            Path(f"{Path(args.rerun).resolve().parent}-rerun")
        if out.resolve() == Path(args.rerun).resolve().parent:
            raise _Failure(f"{out}: the folder of the sweep being re-run; its jobs.jsonl would "
                           "serve the recorded results: give another --out")
    else:
        problems = [] if args.config else ["give a CONFIG (or --rerun RESULT.json)"]
        if not args.param:
            problems.append("give at least one --param PATH=V1,V2,...")
        if args.seeds is None:
            problems.append("--seeds N is required")
        if problems:
            raise _Failure("\n".join(problems))
        try:
            p = plan(args.config, args.param, args.seeds)
        except SweepConfigError as e:
            raise _Failure(str(e)) from None
        out = Path(args.out) if args.out else default_out(p.name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _Stop(1, f"{e.filename or out}: cannot create the output folder "
                       f"({e.strerror or e})") from None
    bar = ProgressBar(sys.stderr, unit="runs")
    try:
        result = _execute(p, backend=args.backend, workers=args.workers, address=args.address,
                          out=out, retries=args.retries, on_progress=bar,
                          command=None if recorded is None else
                          f"distsafe sweep --rerun {args.rerun}",
                          rerun_of=args.rerun, save=False)
    except ImportError as e:
        raise _Failure(str(e)) from None
    except ConnectionError as e:  # --address where no Ray cluster answers
        raise _Failure(str(e)) from None
    except KeyboardInterrupt:
        bar.close()
        again = "the same command" if recorded is None else f"--rerun {args.rerun} --out {out}"
        raise _Stop(130, f"interrupted; the finished runs are in {out / 'jobs.jsonl'}: "
                         f"{again} resumes without running them again") from None
    finally:
        bar.close()
    print(result.table())
    try:
        written = result.save(out)
    except OSError as e:
        raise _Stop(1, f"{e.filename or out}: cannot write the results "
                       f"({e.strerror or e})") from None
    if result.reused:
        print(f"resumed: {result.reused} of {len(result.rows)} runs were already in "
              f"{out / 'jobs.jsonl'}")
    print(f"{out}: {', '.join(w.name for w in written)}")
    status = 0
    for f in result.failures:
        print(f"{PROG}: error: {f['label']}: seed {f['seed']}: run failed after "
              f"{f['attempts']} attempt(s): {f['error']}", file=sys.stderr)
        status = 1
    if recorded is not None:
        diff = differences(recorded.get("runs", []), result.rows)
        n = len(result.rows)
        if diff:
            print(f"re-run of {args.rerun}: {len(diff)} of {n} runs differ from the recorded "
                  f"ones (recorded at commit {recorded.get('provenance', {}).get('git_commit')}"
                  f", now {result.provenance.get('git_commit')}):")
            for line in diff[:20]:
                print(f"  {line}")
            status = 1
        else:
            print(f"re-run of {args.rerun}: all {n} runs identical to the recorded ones")
    return status
