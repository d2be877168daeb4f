"""Compare scenarios over many seeds: one table of means with 95 % intervals.

:func:`compare` runs every scenario over ``seeds`` seeds — run ``k`` (``k = 0 .. seeds-1``)
of a scenario uses the seed ``scenario seed + k`` (``0 + k`` for a scenario without a seed) —
in a pool of worker processes, and summarises each metric by its mean over the seeds with a
Student-t 95 % interval. ``distsafe compare CONFIG... --seeds N`` is the same from the command
line (:mod:`baselines.cli`). Each run is a function of its scenario and seed only, so the
numbers do not depend on how many workers ran them.

Per run (one scenario, one seed), from its interactions and its per-epoch metrics rows
(:func:`baselines.runner.rollout`):

=====================  ======================================================================
``bad_actor_payoff``   per-capita total soft payoff over the run of the **bad actors**: the
                       agents whose group is in ``bad_actors`` (default, per variant,
                       :data:`VARIANT_GROUPS`: ``deceptive`` and ``adversarial`` in the
                       sandbox, the two scripted types that do harmful work on purpose;
                       ``saboteur`` and ``greedy`` in the commons); the sum over epochs of
                       their ``payoff_<group>`` columns,
                       weighted by group size. Interaction payoffs, so governance costs
                       charged on interactions (tax, audit fines) are in it; action costs and
                       staking slashes are not (``bad_actor_reward`` has them). nan when the
                       scenario has no bad actor
``honest_payoff``      the same for the honest agents (``honest``; ``sustainable`` in the
                       commons)
``toxicity``           ``E[1 - p | accepted]`` over all the run's interactions
``realized_harm_rate`` ``P(v = -1 | accepted)`` over the run: harm on the hidden truth
``quality_gap``        ``E[p | accepted] - E[p | rejected]`` over the run
``welfare_per_epoch``  the run's welfare (sum of paid payoffs) divided by its epochs
``frozen_agents``      agents frozen at an epoch's end, mean over epochs
``audits``             audits over the run (``gov_audits`` summed)
``tax_revenue``        tax collected over the run (``gov_tax_revenue`` summed)
=====================  ======================================================================

Also kept (CSV and JSON, not the table): ``bad_actor_reward``, the bad actors' per-capita
total reward (interaction payoffs minus effort and dressing costs, staking slashes and
collusion penalties, plus redistributions: what reached their resources), and the run totals
of the other ``gov_*`` columns (``gov_audit_hits``, ``gov_penalties``, ``gov_slashed``,
``gov_freezes``, ...), to see which lever did what; and a variant's own run figures where it
keeps them (:data:`VARIANT_FIGURES`: the commons' survival time, survival, honesty,
efficiency, equality, over-use, final stock, detection and false-flag rates), which the table
shows too when any compared scenario has them.

The interval: over the seeds where the metric is defined (finite; ``n`` of them), mean
``m``, sample standard deviation ``s`` (``ddof = 1``), ``m ± t(0.975, n - 1) · s / √n``.
With ``n = 1`` the interval is undefined (nan); with ``n = 0`` the mean is too.

Example:
    >>> result = compare(["configs/baseline.yaml"], seeds=2, jobs=1)
    >>> stats = result.summary()["baseline"]["toxicity"]
    >>> stats.n, stats.lo <= stats.mean <= stats.hi
    (2, True)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["BAD_ACTORS", "CONFIDENCE", "Comparison", "CompareConfigError", "METRICS",
           "VARIANT_FIGURES", "VARIANT_GROUPS", "groups_of", "variant_figures",
           "Metric", "Stats", "compare", "default_out", "interval", "load_configs"]

#: the group labels counted as bad actors by default (the sandbox's)
BAD_ACTORS: tuple[str, ...] = ("deceptive", "adversarial")
#: the group whose per-capita payoff is the ``honest_payoff`` column (the sandbox's)
HONEST = "honest"
#: per variant, the default bad-actor groups and the honest group (else the sandbox's)
VARIANT_GROUPS: dict[str, tuple[tuple[str, ...], str]] = {
    "sandbox": (BAD_ACTORS, HONEST),
    "commons": (("saboteur", "greedy"), "sustainable"),
}
#: the confidence level of the intervals
CONFIDENCE = 0.95


class Metric(NamedTuple):
    key: str
    title: str
    description: str


#: the table's columns, in order
METRICS: tuple[Metric, ...] = (
    Metric("bad_actor_payoff", "bad-actor payoff",
           "per-capita total soft payoff of the bad actors over the run"),
    Metric("honest_payoff", "honest payoff",
           "per-capita total soft payoff of the honest agents over the run"),
    Metric("toxicity", "toxicity", "E[1 - p | accepted] over the run"),
    Metric("realized_harm_rate", "true harm rate", "P(v = -1 | accepted) over the run"),
    Metric("quality_gap", "quality gap", "E[p | accepted] - E[p | rejected] over the run"),
    Metric("welfare_per_epoch", "welfare/epoch", "welfare of the run / its epochs"),
    Metric("frozen_agents", "frozen agents", "agents frozen at an epoch's end, mean"),
    Metric("audits", "audits", "audits over the run"),
    Metric("tax_revenue", "tax revenue", "tax collected over the run"),
)
_GOV_EXTRA = ("audit_hits", "audit_misses", "penalties", "slashed", "freezes", "releases",
              "flags", "edges_cut", "redistributed")
#: kept in the CSV and JSON beside the table's metrics
EXTRA: tuple[Metric, ...] = (
    Metric("bad_actor_reward", "bad-actor reward",
           "per-capita total reward of the bad actors (payoffs minus action costs, slashes "
           "and penalties, plus redistributions)"),
    *(Metric(f"gov_{k}", f"gov_{k}", f"gov_{k} summed over the run") for k in _GOV_EXTRA),
)
#: a variant's own whole-run figures (``env.summary()``), nan where it keeps none
VARIANT_FIGURES: tuple[Metric, ...] = (
    Metric("survival_time", "survival", "rounds until the commons collapsed or every agent "
           "was eliminated (the horizon when neither happened)"),
    Metric("survived", "survived", "1 when the commons stood to the end"),
    Metric("honesty", "honesty", "1 - sum|taken - reported| / sum taken"),
    Metric("efficiency", "efficiency", "units taken over what the horizon yields "
           "sustainably"),
    Metric("equality", "equality", "1 - Gini of the agents' gains"),
    Metric("over_use_rate", "over-use", "share of live agents' rounds over the fair share"),
    Metric("final_stock", "final stock", "the stock at the end"),
    Metric("detection_rate", "detection", "of the agents that lied, the share accused"),
    Metric("false_flag_rate", "false flags", "share of accusations against honest agents"),
)
EXTRA = (*EXTRA, *VARIANT_FIGURES)
#: per-epoch series kept for the plot
SERIES: tuple[str, ...] = ("toxicity", "welfare")


class CompareConfigError(ValueError):
    """Scenarios that cannot be compared: every problem of every file, one line each."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.problem_lines = list(lines)
        super().__init__("\n".join(self.problem_lines))


class Stats(NamedTuple):
    """Mean and 95 % interval of one metric over the seeds where it is defined."""

    mean: float
    lo: float
    hi: float
    n: int


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Stats:
    """Mean and Student-t interval over the finite values (nan and inf are left out).

    Example:
        >>> s = interval([1.0, 2.0, 3.0, float("nan")])
        >>> s.n, s.mean, round(s.lo, 4), round(s.hi, 4)
        (3, 2.0, -0.4841, 4.4841)
        >>> interval([5.0]).lo, interval([]).n
        (nan, 0)
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Stats(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Stats(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Stats(mean, min(mean - half, mean), max(mean + half, mean), n)


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class _Config:
    label: str
    source: str
    scenario_json: dict[str, Any]
    base_seed: int


def _label_of(item: Any) -> str:
    from baselines.scenario import Scenario

    return item.name if isinstance(item, Scenario) else Path(item).stem


def load_configs(configs: Sequence[Any], check: bool = True) -> list[_Config]:
    """Load and check every scenario (a path or a :class:`~baselines.scenario.Scenario`).

    Every file is loaded and, with ``check``, preflighted (built and stepped twice), before
    anything runs. Labels are the file stems (a ``Scenario``'s name); when two coincide the
    sources as given are used instead.

    Raises:
        CompareConfigError: Every problem of every scenario, one line each.
    """
    from baselines.scenario import ConfigError, Scenario, load_scenario, preflight

    if not configs:
        raise CompareConfigError(["compare: no configs given"])
    lines: list[str] = []
    loaded: list[tuple[str, Any]] = []
    seen: dict[Path, str] = {}
    for item in configs:
        if isinstance(item, Scenario):
            source, scenario = f"<scenario {item.name}>", item
        else:
            source = str(item)
            same = seen.setdefault(Path(item).resolve(), source)
            if same != source:  # one file under two spellings
                lines.append(f"compare: {source}: the same file as {same}, given more than "
                             "once")
                continue
            try:
                scenario = load_scenario(item)
            except ConfigError as e:
                lines += e.lines()
                continue
        if check:
            try:
                preflight(scenario, source)
            except ConfigError as e:
                lines += e.lines()
                continue
        loaded.append((source, scenario))
    if lines:
        raise CompareConfigError(lines)
    labels = [_label_of(s if src.startswith("<scenario ") else src) for src, s in loaded]
    if len(set(labels)) < len(labels):
        labels = [src for src, _ in loaded]
    if len(set(labels)) < len(labels):
        twice = sorted({x for x in labels if labels.count(x) > 1})
        raise CompareConfigError([f"compare: {x}: given more than once" for x in twice])
    return [_Config(label, src, s.model_dump(mode="json"), s.simulation.seed or 0)
            for label, (src, s) in zip(labels, loaded)]


def default_out(labels: Sequence[str]) -> Path:
    """``runs/compare-<labels joined by '-'>`` (shortened with a hash when long).

    Example:
        >>> str(default_out(["baseline", "strict_governance"]))
        'runs/compare-baseline-strict_governance'
    """
    name = "-".join(Path(x).stem if "/" in x or x.endswith(".yaml") else x for x in labels)
    name = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in name)
    if len(name) > 80:
        name = f"{name[:60]}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return Path("runs") / f"compare-{name}"


# --------------------------------------------------------------------------- one run
def variant_figures(base: Any) -> dict[str, float]:
    """An environment's own whole-run figures (:data:`VARIANT_FIGURES`, from its
    ``summary()``), nan where it keeps none."""
    figures = base.summary() if hasattr(base, "summary") else {}
    return {m.key: float(figures.get(m.key, math.nan)) for m in VARIANT_FIGURES}


def groups_of(env_id: str, bad_actors: Sequence[str] | None = None
              ) -> tuple[tuple[str, ...], str]:
    """The bad-actor groups (``bad_actors``, else the variant's default) and the honest
    group of a scenario's environment (:data:`VARIANT_GROUPS`)."""
    import envs

    default, honest = VARIANT_GROUPS.get(envs.variant(env_id), (BAD_ACTORS, HONEST))
    return (default if bad_actors is None else tuple(bad_actors)), honest


def run_one(scenario_json: Mapping[str, Any], seed: int,
            bad_actors: Sequence[str] | None = None) -> dict[str, Any]:
    """One run of a scenario at ``seed``: ``{"metrics": {key: value}, "series": {name:
    [per epoch]}}`` (the keys of :data:`METRICS` and :data:`EXTRA`, the names of
    :data:`SERIES`); ``bad_actors`` default: the variant's (:func:`groups_of`)."""
    from baselines.runner import rollout
    from baselines.scenario import build, parse_scenario
    from envs.core import metrics as M

    scenario = parse_scenario(dict(scenario_json), "<compare>")
    bad_actors, honest_group = groups_of(scenario.env, bad_actors)
    env, policies = build(scenario, seed=seed)
    parts: list[tuple[np.ndarray, ...]] = []

    def keep(batch: Any) -> None:
        parts.append((batch.p, batch.accepted, batch.v, batch.initiator, batch.counterparty,
                      batch.payoff_a, batch.payoff_b))

    try:
        rows = rollout(env, policies, seed=seed, on_batch=keep)
    finally:
        env.close()
    base = env.unwrapped
    if parts:
        p, acc, v, ini, cp, pay_a, pay_b = (np.concatenate(col) for col in zip(*parts))
    else:
        p, acc, v, ini, cp, pay_a, pay_b = (np.zeros(0),) * 7
    acc = acc.astype(bool)
    groups = np.asarray(scenario.agent_groups())
    n = len(groups)
    per_agent = (np.bincount(ini.astype(np.int64), weights=pay_a, minlength=n)
                 + np.bincount(cp.astype(np.int64), weights=pay_b, minlength=n))
    bad = np.isin(groups, list(bad_actors))
    honest = groups == honest_group
    soft = M.soft_metrics(p, acc, v=v) if len(p) else {}
    n_epochs = max(len(rows), 1)

    def col_sum(key: str) -> float:
        return float(sum(r.get(key, 0.0) for r in rows))

    cumulative = getattr(base, "cumulative_reward", None)
    out = {
        "bad_actor_payoff": float(per_agent[bad].mean()) if bad.any() else math.nan,
        "honest_payoff": float(per_agent[honest].mean()) if honest.any() else math.nan,
        "toxicity": soft.get("toxicity", math.nan),
        "realized_harm_rate": soft.get("realized_harm_rate", math.nan),
        "quality_gap": soft.get("quality_gap", math.nan),
        "welfare_per_epoch": float((pay_a[acc].sum() + pay_b[acc].sum()) / n_epochs),
        "frozen_agents": (float(np.mean([r["frozen_agents"] for r in rows]))
                          if rows and "frozen_agents" in rows[0] else math.nan),
        "audits": col_sum("gov_audits"),
        "tax_revenue": col_sum("gov_tax_revenue"),
        "bad_actor_reward": (float(np.asarray(cumulative)[bad].mean())
                             if cumulative is not None and bad.any() else math.nan),
    }
    for k in _GOV_EXTRA:
        out[f"gov_{k}"] = col_sum(f"gov_{k}")
    out.update(variant_figures(base))
    series = {name: [float(r.get(name, math.nan)) for r in rows] for name in SERIES}
    return {"metrics": out, "series": series}


# --------------------------------------------------------------------------- the result
@dataclass
class Comparison:
    """What :func:`compare` found: per-seed values, their summaries, failures."""

    labels: list[str]
    sources: list[str]
    scenarios: list[str]
    seeds: dict[str, list[int]]
    n_seeds: int
    bad_actors: dict[str, tuple[str, ...]]  # per config label
    values: dict[str, dict[str, list[float]]]
    series: dict[str, dict[str, list[list[float]]]]
    failures: list[dict[str, Any]] = field(default_factory=list)

    # -- summaries
    def summary(self) -> dict[str, dict[str, Stats]]:
        """``{label: {metric: Stats}}`` for the table's and the extra metrics."""
        return {label: {m.key: interval(self.values[label][m.key]) for m in (*METRICS, *EXTRA)}
                for label in self.labels}

    def series_summary(self, label: str, name: str) -> list[Stats]:
        """Per epoch, the mean and interval over the seeds of a per-epoch series."""
        runs = [s for s in self.series[label][name] if s]
        if not runs:
            return []
        width = max(len(s) for s in runs)
        return [interval([s[e] if e < len(s) else math.nan for s in runs])
                for e in range(width)]

    # -- text
    def table(self) -> str:
        """Rows = scenarios, columns = metrics, each ``mean [lo, hi]``; then a legend."""
        summ = self.summary()
        shown = [*METRICS, *(m for m in VARIANT_FIGURES  # a variant's own, where it has them
                             if any(summ[label][m.key].n for label in self.labels))]
        head = ["config", *(m.title for m in shown)]
        body = [[label, *(_cell(summ[label][m.key]) for m in shown)] for label in self.labels]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in [head, *body]]
        kinds = {groups for groups in self.bad_actors.values()}
        bad = (", ".join(next(iter(kinds))) if len(kinds) == 1 else "; ".join(
            f"{label}: {', '.join(g)}" for label, g in self.bad_actors.items()))
        lines.append(f"mean [95% interval] over {self.n_seeds} seeds (seed k = the scenario's "
                     f"seed + k); bad actors: {bad}; '-': undefined")
        for f in self.failures:
            lines.append(f"FAILED: {f['config']} seed {f['seed']}: {f['error']}")
        return "\n".join(lines)

    def csv_text(self) -> str:
        """One row per config x metric: ``config,metric,mean,lo,hi,n``."""
        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["config", "metric", "mean", "lo", "hi", "n"])
        for label, stats in self.summary().items():
            for key, s in stats.items():
                w.writerow([label, key, repr(s.mean), repr(s.lo), repr(s.hi), s.n])
        return buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        """Everything, per-seed values included (nan written as null)."""
        summ = self.summary()
        return _jsonable({
            "seeds": self.n_seeds,
            "seed_rule": "run k uses the scenario's seed + k (0 + k without one)",
            "confidence": CONFIDENCE,
            "interval": "Student t over the seeds where the metric is defined",
            "bad_actors": {lb: list(g) for lb, g in self.bad_actors.items()},
            "metrics": [m._asdict() for m in METRICS],
            "extra_metrics": [m._asdict() for m in EXTRA],
            "configs": [{"label": lb, "source": src, "scenario": name, "seeds": self.seeds[lb]}
                        for lb, src, name in zip(self.labels, self.sources, self.scenarios)],
            "results": {lb: {k: {**s._asdict(), "values": self.values[lb][k]}
                             for k, s in summ[lb].items()} for lb in self.labels},
            "series": {lb: {name: {"mean": [s.mean for s in st], "lo": [s.lo for s in st],
                                   "hi": [s.hi for s in st],
                                   "values": self.series[lb][name]}
                            for name in SERIES
                            for st in [self.series_summary(lb, name)]}
                       for lb in self.labels},
            "failures": self.failures,
        })

    # -- files
    def plot(self, path: str | Path) -> Path:
        """``compare.png``-style figure: toxicity and welfare per epoch, 95 % bands."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        fig = Figure(figsize=(11, 4.2))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        for ax, name, title in zip(axes, SERIES, ("toxicity E[1 - p | accepted]",
                                                  "welfare (sum of paid payoffs)")):
            for i, label in enumerate(self.labels):
                st = self.series_summary(label, name)
                if not st:
                    continue
                x = np.arange(len(st))
                mean = np.array([s.mean for s in st])
                lo, hi = np.array([s.lo for s in st]), np.array([s.hi for s in st])
                color = f"C{i % 10}"
                ax.plot(x, mean, color=color, label=label, lw=1.8)
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0,
                                where=np.isfinite(lo) & np.isfinite(hi))
            ax.set_title(f"{title} per epoch")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"mean and 95% interval over {self.n_seeds} seeds", fontsize=10)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=110)
        return path

    def save(self, out: str | Path, plot: bool = False) -> list[Path]:
        """Write ``compare.csv``, ``compare.json`` (and ``compare.png``) into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "compare.csv", out / "compare.json"]
        for path, text in zip(written, (self.csv_text(),
                                        json.dumps(self.to_json(), indent=1) + "\n")):
            tmp = path.with_name(f".{path.name}.tmp")  # beside, then renamed into place
            tmp.write_text(text, newline="")
            os.replace(tmp, path)
        if plot:
            written.append(self.plot(out / "compare.png"))
        return written


def _cell(s: Stats) -> str:
    if not math.isfinite(s.mean):
        return "-"
    if not (math.isfinite(s.lo) and math.isfinite(s.hi)):
        return _num(s.mean)
    return f"{_num(s.mean)} [{_num(s.lo)}, {_num(s.hi)}]"


def _num(x: float) -> str:
    a = abs(x)
    digits = 0 if a >= 1000 else 1 if a >= 100 else 2 if a >= 10 else 3
    text = f"{x:.{digits}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def _jsonable(x: Any) -> Any:
    """JSON data with nan and inf as null, numpy scalars as Python ones (compare, bench and
    sweep results alike)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    return x


# --------------------------------------------------------------------------- compare
def compare(configs: Sequence[Any], seeds: int, *, jobs: int | None = None,
            bad_actors: Sequence[str] | None = None, out: str | Path | None = None,
            plot: bool = False,
            on_progress: Callable[[int, int], None] | None = None) -> Comparison:
    """Run every scenario over ``seeds`` seeds and summarise (what ``distsafe compare`` does).

    Args:
        configs: Scenario files (paths) or :class:`~baselines.scenario.Scenario` objects.
        seeds: Runs per scenario; run ``k`` uses the scenario's seed + ``k``.
        jobs: Worker processes (default: the machine's cores); ``1`` runs everything in this
            process. The results do not depend on it.
        bad_actors: Group labels counted as bad actors (default: each scenario's variant's,
            :data:`VARIANT_GROUPS`).
        out: If given, write ``compare.csv`` and ``compare.json`` there (see
            :meth:`Comparison.save`).
        plot: With ``out``, also write ``compare.png``.
        on_progress: Called with ``(runs done, runs in all)`` as runs finish.

    Raises:
        CompareConfigError: A scenario that does not load or preflight (nothing has run).
        ValueError: ``seeds`` or ``jobs`` below 1, or no bad-actor group.

    A run that fails does not stop the others: it is listed in ``Comparison.failures`` (and
    its values are nan, so it is left out of ``n``).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"compare: seeds must be an int >= 1, got {seeds!r}")
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"compare: jobs must be an int >= 1, got {jobs!r}")
    if bad_actors is not None:
        bad_actors = tuple(bad_actors)
        if not bad_actors:
            raise ValueError("compare: bad_actors names no group")
    cfgs = (list(configs) if configs and all(isinstance(c, _Config) for c in configs)
            else load_configs(configs))  # already loaded: by distsafe compare
    from baselines.jobs import Job, run_jobs

    tasks = [(c, k) for c in cfgs for k in range(seeds)]
    options = {} if bad_actors is None else {"bad_actors": list(bad_actors)}
    work = [Job(f"{i}", c.scenario_json, c.base_seed + k, "compare", options)
            for i, (c, k) in enumerate(tasks)]
    # a failed run is not retried here: it is a property of its scenario and seed
    done = run_jobs(work, workers=min(jobs, len(tasks)), retries=0, on_progress=on_progress)
    errors = {f["key"]: f["error"] for f in done.failures}
    results: list[dict[str, Any]] = [
        done.results[j.key] if j.key not in errors else {"error": errors[j.key]}
        for j in work]
    keys = [m.key for m in (*METRICS, *EXTRA)]
    values = {c.label: {k: [] for k in keys} for c in cfgs}
    series = {c.label: {name: [] for name in SERIES} for c in cfgs}
    failures = []
    for (c, k), res in zip(tasks, results):
        assert res is not None
        if "error" in res:
            failures.append({"config": c.label, "source": c.source, "seed": c.base_seed + k,
                             "error": res["error"]})
            for key in keys:
                values[c.label][key].append(math.nan)
            for name in SERIES:
                series[c.label][name].append([])
            continue
        for key in keys:
            values[c.label][key].append(res["metrics"][key])
        for name in SERIES:
            series[c.label][name].append(res["series"][name])
    result = Comparison(
        labels=[c.label for c in cfgs], sources=[c.source for c in cfgs],
        scenarios=[c.scenario_json["name"] for c in cfgs],
        seeds={c.label: [c.base_seed + k for k in range(seeds)] for c in cfgs},
        n_seeds=seeds, values=values, series=series,
        bad_actors={c.label: groups_of(c.scenario_json["env"], bad_actors)[0] for c in cfgs},
        failures=failures)
    if out is not None:
        result.save(out, plot=plot)
    return result
