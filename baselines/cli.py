"""The ``distsafe`` command line: run scenarios, replay event logs, validate configs, compare
scenarios, play prisoner's-dilemma tournaments and evolutionary dynamics.

Commands::

    distsafe run CONFIG [--seed N] [--out DIR] [--overwrite | --resume]
                        [--log-format arrow|parquet|jsonl] [--quiet]
    distsafe replay EVENTS [--out CSV] [--episode K]
    distsafe validate CONFIG [CONFIG ...]
    distsafe compare CONFIG [CONFIG ...] --seeds N [--jobs J] [--out DIR] [--plot]
    distsafe tournament [--strategies NAME ...] [--turns T] [--repetitions R] [--noise E]
                        [--seed N] [--payoffs P] [--out DIR] [--plot]
    distsafe evolve (--moran | --imitation) [--strategies NAME ...] [--counts N ...] ...
    distsafe conversations RUN_DIR [--out HTML]
    distsafe judge RUN_DIR --model M [--model M2] [--api-base URL]
    distsafe fork RUN_DIR --at-round R [--set KEY=VALUE ...] [--out DIR] [--overwrite]
    distsafe plot RUN_DIR [--out PNG]
    distsafe list
    distsafe --version

``run`` writes a run folder (default ``runs/<scenario>-seed<seed>``; see
:mod:`baselines.runfolder`) holding ``config.yaml`` (the resolved scenario, seed included),
``events.jsonl`` (the event log; its ``run_start`` carries the run's identity),
``events.interactions/`` (the interactions, one columnar chunk per epoch) and ``metrics.csv``
(one row per complete epoch), and prints one table row per epoch as it goes, then the whole
run's report, computed from what the run holds in memory. ``replay`` recomputes the same rows
from an event log: ``distsafe replay RUN/events.jsonl --out x.csv`` reproduces
``RUN/metrics.csv`` byte for byte.

A folder that already holds a run is refused unless ``--overwrite`` (replace it whole) or
``--resume`` (continue it from its last complete epoch, after checking that the folder's run
is this one: same resolved scenario, seed, version and log format; a difference is named and
nothing is changed). A second concurrent writer fails at once. Ctrl-C or SIGTERM stop the run
after writing ``metrics.csv`` of its complete epochs and print the command that resumes it
(exit 130); an OS error (disk full, permission denied) does the same with one line and exit 1.

Every configuration problem is a line on stderr, ``distsafe: error: <file>: <field>: <what>``
(all problems of a file, one line each), with exit status 2 (as for argparse usage errors);
so is an event log that fails its checks (``<file>:<line>: <field>: <what>``).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml
from pydantic import ValidationError

PROG = "distsafe"
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
_TABLE = (("epoch", "epoch", 5), ("n_interactions", "interactions", 12),
          ("n_accepted", "accepted", 8), ("toxicity", "toxicity", 8),
          ("quality_gap", "quality_gap", 11), ("welfare", "welfare", 9),
          # the commons' own columns (rows of other variants do not have them)
          ("stock", "stock", 7), ("live_agents", "live", 4), ("honesty", "honesty", 7))


class _Failure(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- output
def _cell(value: Any, width: int) -> str:
    if isinstance(value, float):
        text = "-" if math.isnan(value) else f"{value:.3f}"
    else:
        text = str(value)
    return f"{text:>{width}}"


class MetricsTable:
    """Fixed-width table of epoch rows: the header comes with the first row."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.columns: list[tuple[str, str, int]] | None = None

    def _columns(self, row: Mapping[str, Any]) -> list[tuple[str, str, int]]:
        cols = [c for c in _TABLE if c[0] in row]
        for key in row:
            if key.startswith("payoff_") and key != "payoff_gini":
                cols.append((key, key, max(len(key), 9)))
        return cols

    def __call__(self, row: Mapping[str, Any]) -> None:
        if self.columns is None:
            self.columns = self._columns(row)
            print("  ".join(f"{title:>{w}}" for _, title, w in self.columns), file=self.stream)
        cells = []
        for key, _, w in self.columns:
            v = row.get(key, math.nan)
            if key in ("epoch", "n_interactions", "n_accepted") and isinstance(v, float) \
                    and v.is_integer():
                v = int(v)
            cells.append(_cell(v, w))
        print("  ".join(cells), file=self.stream, flush=True)


class ProgressBar:
    """``\\r[####......] 37/100 steps`` on a terminal; silent when the stream is not one."""

    def __init__(self, stream: TextIO, width: int = 30, unit: str = "steps") -> None:
        self.stream, self.width, self.unit = stream, width, unit
        self.active = bool(getattr(stream, "isatty", lambda: False)())
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.active:
            return
        filled = self.width * done // max(total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} {self.unit}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


# --------------------------------------------------------------------------- commands
def _load(path: str):
    from baselines.scenario import load_scenario

    return load_scenario(path)


def _build(scenario: Any, source: str, **kwargs: Any):
    from baselines.scenario import ConfigError, Scenario, build

    try:
        return build(scenario, **kwargs)
    except ValidationError as e:
        raise ConfigError.from_validation_error(e, source, Scenario) from None
    except ValueError as e:
        raise _Failure(f"{source}: {' '.join(str(e).split())}") from None


class _Stop(Exception):
    """A run that stopped early (interrupt, OS error): exit status and what to print."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _preflight(scenario: Any, source: str) -> None:
    """Everything a run would trip over, before any file is touched."""
    from baselines import scenario as scenario_module

    check = getattr(scenario_module, "preflight", None)
    if check is not None:
        check(scenario, source)
        return
    env, _ = _build(scenario, source, seed=0)
    try:
        env.reset(seed=0)  # network generation happens here
    except ValueError as e:
        raise _Failure(f"{source}: {' '.join(str(e).split())}") from None
    finally:
        env.close()


class _SlimRun:
    """What the whole-run report needs, kept from each epoch (no re-reading of the log)."""

    FIELDS = ("accepted", "v", "p", "tau", "c_a", "c_b", "payoff_a", "payoff_b")

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def __call__(self, batch: Any) -> None:
        self.parts.append({k: getattr(batch, k) for k in self.FIELDS})

    def batch(self) -> Any:
        from envs.core.records import InteractionBatch

        cols = {k: np.concatenate([p[k] for p in self.parts]) if self.parts else
                np.zeros(0) for k in self.FIELDS}
        return InteractionBatch.from_columns(cols, n=len(cols["p"]))


def cmd_run(args: argparse.Namespace) -> int:
    from baselines.runfolder import RunFolder, RunFolderError, run_identity
    from baselines.runner import metrics_csv_text, rollout
    from envs.core.events import EventLog

    scenario = _load(args.config)
    seed = args.seed if args.seed is not None else scenario.simulation.seed
    if seed is None:
        seed = secrets.randbelow(2**31)  # recorded in config.yaml, so the run can be redone
    scenario = scenario.model_copy(
        update={"simulation": scenario.simulation.model_copy(update={"seed": seed})})
    if args.overwrite and args.resume:
        raise _Failure("--overwrite and --resume exclude each other")
    _preflight(scenario, args.config)  # a bad config fails here, before any file is touched
    out = Path(args.out) if args.out else Path("runs") / f"{scenario.name}-seed{seed}"
    resume_hint = f"{PROG} run {args.config} --out {out} --resume --seed {seed}"
    scenario_dump = scenario.model_dump(mode="json")
    folder = RunFolder(out)
    try:
        if args.resume:
            resume_after, fmt, identity = _open_for_resume(folder, scenario_dump, seed,
                                                           args.log_format, resume_hint)
        else:
            fmt = args.log_format or "arrow"
            identity = run_identity(scenario_dump, seed, fmt)
            resume_after = -1
            folder.open_new(args.overwrite)
    except RunFolderError as e:
        raise _Failure(str(e)) from None
    except OSError as e:  # an OS error, not a usage error: exit 1
        raise _Stop(1, f"{e.filename or out}: cannot use the run folder "
                       f"({e.strerror or e})") from None
    try:
        return _run_in(folder, scenario, seed, args, identity, fmt, resume_after,
                       resume_hint, rollout, metrics_csv_text, EventLog)
    finally:
        folder.release()


def _open_for_resume(folder: Any, scenario_dump: dict, seed: int, fmt: str | None,
                     hint: str) -> tuple[int, str, dict]:
    """Lock, read and check an interrupted run; returns (last complete epoch, format,
    identity). Refusals change nothing. A run that logged nothing yet starts over."""
    from baselines.runfolder import identity_differences, identity_hash, run_identity
    from envs.core.events import LOG_FORMATS, LogError, replay

    out = folder.path
    if not out.is_dir():
        raise _Failure(f"{out}: no run folder to resume; start the run without --resume")
    folder.check_is_run_folder()
    folder.lock()
    events = out / "events.jsonl"
    if not _has_run_start(events):  # killed before its first line: nothing to keep
        print(f"{events}: nothing logged yet; starting from epoch 0", file=sys.stderr)
        folder.clear()
        fmt = fmt or "arrow"
        return -1, fmt, run_identity(scenario_dump, seed, fmt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a torn last line is expected
            rep = replay(events, episode=0)
    except LogError as e:
        raise _Failure(f"cannot resume: {e}") from None
    recorded = rep.run_start.identity
    if not recorded:
        raise _Failure(f"{events}: cannot resume: the log records no run identity (written "
                       "by an older distsafe); start it again with --overwrite")
    if recorded.get("log_format") not in LOG_FORMATS:
        raise _Failure(f"{events}:1: identity.log_format: must be one of "
                       f"{', '.join(LOG_FORMATS)}, got {recorded.get('log_format')!r}")
    if identity_hash(recorded) != recorded.get("hash"):
        raise _Failure(f"{events}:1: identity.hash: does not match the identity's fields "
                       "(the log was edited?); cannot resume")
    fmt = fmt or recorded["log_format"]
    identity = run_identity(scenario_dump, seed, fmt)
    diffs = identity_differences(recorded, identity)
    if diffs:
        raise _Failure(f"{events}: cannot resume: this command describes another run; "
                       f"{'; '.join(diffs[:5])}" + (f" (+{len(diffs) - 5} more)"
                                                     if len(diffs) > 5 else ""))
    return rep.last_complete_epoch, fmt, identity


def _has_run_start(events: Path) -> bool:
    """Whether the log's first complete line is a ``run_start`` event."""
    import json

    if not events.is_file():
        return False
    with open(events, "rb") as fh:
        first = fh.readline()
    if not first.endswith(b"\n"):
        return False
    try:
        obj = json.loads(first)
    except ValueError:
        return True  # a malformed first line: replay names it
    return not isinstance(obj, dict) or obj.get("type") == "run_start"


def _run_in(folder: Any, scenario: Any, seed: int, args: argparse.Namespace,
            identity: dict, fmt: str, resume_after: int, hint: str, rollout: Any,
            metrics_csv_text: Any, EventLog: Any) -> int:
    from baselines.runner import PolicyError
    from envs.core.events import truncate_to_epoch

    out = folder.path
    events = out / "events.jsonl"
    try:
        if resume_after >= 0:
            truncate_to_epoch(events, resume_after)
            print(f"resuming from epoch {resume_after + 1}", file=sys.stderr)
        folder.write_text("config.yaml", yaml.safe_dump(scenario.model_dump(mode="json"),
                                                        sort_keys=False))
        log = None if resume_after >= 0 else EventLog(events, format=fmt, identity=identity,
                                                      background=True)
    except OSError as e:
        raise _Stop(1, f"{e.filename or out}: {e.strerror or e}; nothing was run") from None
    env, policies = _build(scenario, args.config, seed=seed, event_log=log)
    unique = list({id(p): p for p in policies.values()}.values())
    for policy in unique:  # an LLM policy keeps its response cache in the run folder
        policy.bind_run(out, dry_run=args.dry_run)
    table = None if args.quiet else MetricsTable(sys.stdout)
    bar = ProgressBar(sys.stderr) if not args.quiet else None
    on_epoch: Any = table
    if resume_after >= 0:
        on_epoch = _Resumer(env, events, resume_after, table, args.config, fmt, identity)
    slim = _SlimRun()
    rows: list[dict] = on_epoch.rows if isinstance(on_epoch, _Resumer) else []
    if not isinstance(on_epoch, _Resumer):
        rows_sink = rows

        def on_epoch_plain(row: dict) -> None:
            rows_sink.append(row)
            if table is not None:
                table(row)
        on_epoch = on_epoch_plain
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        rollout(env, policies, seed=seed, on_epoch=on_epoch, on_step=bar, on_batch=slim)
        _finish_log(env, events)
    except KeyboardInterrupt:
        _close_quietly(env)
        _save_rows(folder, rows, metrics_csv_text)
        _save_usage(folder, scenario, policies)
        done = f"after epoch {rows[-1]['epoch']}" if rows else "before its first epoch ended"
        raise _Stop(130, f"interrupted {done}; {len(rows)} complete epochs are in "
                         f"{out / 'metrics.csv'}; resume with: {hint}") from None
    except PolicyError as e:
        _close_quietly(env)
        _save_rows(folder, rows, metrics_csv_text)
        _save_usage(folder, scenario, policies)
        again = (f"; once it answers again, resume with: {hint}"
                 if getattr(e.__cause__, "resumable", False) else "")
        raise _Stop(1, f"{' '.join(str(e).split())}; the run stopped after {len(rows)} "
                       f"complete epochs{again}") from None
    except OSError as e:
        _close_quietly(env)
        _save_rows(folder, rows, metrics_csv_text)
        raise _Stop(1, f"{e.filename or out}: {e.strerror or e}; the run stopped with "
                       f"{len(rows)} complete epochs; free the space or fix the "
                       f"permissions, then resume with: {hint}") from None
    except ValueError as e:  # e.g. a network the topology cannot generate at reset
        _close_quietly(env)
        raise _Failure(f"{args.config}: {' '.join(str(e).split())}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    env.close()
    folder.write_text("metrics.csv", metrics_csv_text(rows))
    usage = _save_usage(folder, scenario, policies)
    if usage and not args.quiet:
        _print_usage(usage)
    if not args.quiet:
        _print_report(slim.batch(), env.unwrapped.config.payoff)
        _print_summary(env.unwrapped)
    print(out)
    return 0


def _print_summary(base: Any) -> None:
    """A variant's whole-run figures, when it keeps them (the commons: survival, efficiency,
    equality, honesty, audits ...)."""
    summary = getattr(base, "summary", None)
    if summary is None:
        return
    figures = summary()
    print(f"\n{base}: " + ", ".join(f"{k} {_cell(v, 0).strip()}" for k, v in figures.items()))


def _save_usage(folder: Any, scenario: Any, policies: dict) -> dict:
    """``usage.json``: each scenario entry's policy usage (LLM requests, tokens, cost,
    fallbacks, latency, cache hits), for policies that report one; ``{}`` (no file) when
    none does."""
    import json

    usage: dict[str, Any] = {}
    first = 0
    for index, spec in enumerate(scenario.agents):
        policy = policies[f"agent_{first}"]
        first += spec.count
        report = policy.usage() if hasattr(policy, "usage") else None
        if report is not None:
            usage[f"agents[{index}] {spec.label}"] = report
    if usage:
        try:
            folder.write_text("usage.json", json.dumps(usage, indent=2, sort_keys=True) + "\n")
        except OSError:
            pass
    return usage


def _print_usage(usage: dict) -> None:
    print("\npolicy usage (usage.json):")
    for entry, report in usage.items():
        total = report.get("total", report) if isinstance(report, dict) else report
        fields = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in total.items() if not isinstance(v, (dict, list)))
        print(f"  {entry}: {fields}")


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # stop like Ctrl-C: complete epochs kept, resumable


def _close_quietly(env: Any) -> None:
    try:
        env.close()
    except Exception:  # noqa: BLE001 - the first error is the one to report
        pass


def _save_rows(folder: Any, rows: list[dict], metrics_csv_text: Any) -> None:
    try:
        folder.write_text("metrics.csv", metrics_csv_text(rows))
    except OSError:
        pass  # a full disk may refuse this too; --resume rebuilds it from the log


def _finish_log(env: Any, events: Path) -> None:
    """A resumed run whose log had every epoch but no run_end: write it now."""
    base = env.unwrapped
    log = base.event_log
    if log is not None and not log.closed:
        log.sync()
        from envs.core.events import _typed_line

        if _typed_line(_last_line(events), "run_end") is None:
            last = base.t - 1  # max_steps - 1, or the step that terminated the episode
            log.run_end(step=last, epoch=last // base.config.steps_per_epoch)


def _last_line(path: Path) -> bytes:
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - 4096))
        lines = fh.read().splitlines()
    return lines[-1] if lines else b""


class _Resumer:
    """Re-runs the completed epochs silently (the run is deterministic), checks them
    against the log, then appends the rest of the run to the same log."""

    def __init__(self, env: Any, events: Path, last_epoch: int, table: Any,
                 source: str, fmt: str, identity: dict) -> None:
        from baselines.runner import metrics_from_events

        self.env, self.events, self.last, self.table = env.unwrapped, events, last_epoch, table
        from envs.core.events import LogError

        self.source, self.fmt, self.identity = source, fmt, identity
        try:
            self.logged = metrics_from_events(events, episode=0)
        except LogError as e:
            raise _Failure(f"cannot resume: {e}") from None
        self.rows: list[dict] = []

    def __call__(self, row: dict) -> None:
        from envs.core.events import EventLog

        epoch = row["epoch"]
        if epoch <= self.last:
            if _fmt_row(row) != _fmt_row(self.logged[epoch]):
                raise _Failure(f"{self.events}: cannot resume: epoch {epoch} of the log differs "
                               f"from a re-run of {self.source} (config or code changed?)")
            if epoch == self.last:
                self.env.event_log = EventLog(self.events, mode="a", format=self.fmt,
                                              identity=self.identity, background=True)
        self.rows.append(row)
        if self.table is not None:
            self.table(row)


def _fmt_row(row: dict) -> list[str]:
    return [repr(v) for v in row.values()]


def cmd_replay(args: argparse.Namespace) -> int:
    from baselines.runner import metrics_from_events, write_metrics_csv
    from envs.core.events import LogError, replay

    path = Path(args.events)
    if not path.is_file():
        raise _Failure(f"{path}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            rows = metrics_from_events(path, args.episode)
            rep = replay(path, args.episode)
    except LogError as e:
        raise _Failure(str(e)) from None
    for w in {str(w.message) for w in caught}:  # e.g. a torn last line: one line, not a trace
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    table = MetricsTable(sys.stdout)
    for row in rows:
        table(row)
    from baselines.runner import payoff_from_config

    _print_report(rep.interactions(),
                  payoff_from_config(rep.run_start.env, rep.run_start.config))
    if args.out:
        write_metrics_csv(rows, args.out)
    return 0


LEGEND = ("'-' (nan): undefined for this set, e.g. a quality gap with no rejected "
          "interactions, or a metric of an empty epoch")


def _print_report(batch: Any, payoff: Any) -> None:
    """The whole run's soft metrics beside their hard-label twins."""
    from baselines.runner import interaction_metrics
    from envs.core.metrics import MetricsReporter

    print(f"\nwhole run ({len(batch)} interactions): soft labels vs. hard labels at p >= 0.5")
    print(MetricsReporter.format_metrics(interaction_metrics(batch, payoff)))
    print(LEGEND)


def cmd_validate(args: argparse.Namespace) -> int:
    from baselines.scenario import ConfigError

    status = 0
    for path in args.configs:
        try:
            scenario = _load(path)
            _preflight(scenario, path)
        except (ConfigError, _Failure) as e:
            _print_error(e)
            status = 2
            continue
        print(f"ok {path}")
    return status


def cmd_conversations(args: argparse.Namespace) -> int:
    from envs.core.events import LogError
    from llm_policies.conversations import write_conversations

    try:
        path = write_conversations(args.run_dir, args.out)
    except FileNotFoundError as e:
        raise _Failure(str(e)) from None
    except LogError as e:
        raise _Failure(f"cannot read the run: {e}") from None
    except OSError as e:
        raise _Stop(1, f"{e.filename or args.out}: {e.strerror or e}") from None
    print(path)
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    import math

    from envs.core.events import LogError, replay
    from llm_policies.client import LLMClient, ProviderUnavailable
    from llm_policies.judge import judge_turns, write_judgement

    events = Path(args.run_dir) / "events.jsonl"
    if not events.is_file():
        raise _Failure(f"{events}: no event log (is {args.run_dir} a run folder?)")
    if len(args.model) > 2:
        raise _Failure(f"--model: one or two judges, got {len(args.model)}")
    try:
        turns = replay(events, episode=0).turns
    except LogError as e:
        raise _Failure(f"cannot read the run: {e}") from None
    if not turns:
        raise _Failure(f"{events}: no policy turns to judge (no LLM agents in this run?)")
    verdicts = {}
    for model in args.model:
        client = LLMClient(model, api_base=args.api_base, api_key_env=args.api_key_env,
                           concurrency=args.concurrency, max_tokens=200)
        try:
            verdicts[model] = judge_turns(turns, client.complete_texts)
        except ProviderUnavailable as e:
            raise _Stop(1, f"--model {model}: the provider failed every request: "
                           f"{e.last_error}") from None
    path, summary = write_judgement(args.run_dir, verdicts, turns)
    for model, per in summary["judges"].items():
        print(f"judge {model}:")
        for agent, row in per.items():
            rate = "-" if math.isnan(row["rate"]) else f"{row['rate']:.3f}"
            print(f"  {agent:<12} deceptive {row['deceptive']}/{row['judged']} ({rate}), "
                  f"unlabelled {row['unlabelled']}")
    if "kappa" in summary:
        k = summary["kappa"]
        value = "-" if math.isnan(k["value"]) else f"{k['value']:.3f}"
        print(f"Cohen's kappa between the judges: {value} over {k['n']} replies both labelled")
    print(path)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import envs
    from baselines import scripted

    policies = getattr(scripted, "available_policies", lambda: scripted.POLICIES)()
    print("environments:")
    for env_id in sorted(envs.registry):
        print(f"  {env_id}")
    print("policies (or any `package.module:Class` Policy subclass), by the variant they "
          "play:")
    for name, cls in sorted(policies.items(), key=lambda kv: (kv[1].variants or ("",), kv[0])):
        doc = (cls.__doc__ or "").strip().splitlines()
        plays = ", ".join(cls.variants) if cls.variants else "any"
        print(f"  {name:<24}{plays:<9}{doc[0] if doc else ''}")
    # the two that need an extra, resolved on demand (their modules import nothing heavy)
    print(f"  {'llm':<24}{'any':<9}An LLM through litellm (llm: block; docs/llm.md).")
    print(f"  {'rl':<24}{'any':<9}A trained model (model: PATH, or learn: true in a training "
          "config; docs/rl.md).")
    print(f"configs ({CONFIGS_DIR}):")
    files = sorted(CONFIGS_DIR.glob("*.yaml")) if CONFIGS_DIR.is_dir() else []
    for f in files:
        print(f"  {f.name}")
    if not files:
        print("  (none)")
    return 0


def _show_and_save(result: Any, out: Path, plot: bool) -> None:
    """Print a result's table, write its files into ``out`` (an OS error: exit 1), print
    ``out`` (``compare`` and ``tournament`` results alike)."""
    print(result.table())
    try:
        result.save(out, plot=plot)
    except OSError as e:
        raise _Stop(1, f"{e.filename or out}: cannot write the results "
                       f"({e.strerror or e})") from None
    print(out)


def cmd_compare(args: argparse.Namespace) -> int:
    """Every config over ``--seeds`` seeds; one table of means with 95 % intervals."""
    import importlib.util

    from baselines.compare import CompareConfigError, compare, default_out

    bad_actors = None  # each scenario's variant's default (baselines.compare.VARIANT_GROUPS)
    if args.bad_actors is not None:
        bad_actors = tuple(x.strip() for x in args.bad_actors.split(",") if x.strip())
        if not bad_actors:
            raise _Failure("--bad-actors names no group")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise _Failure("--plot needs matplotlib: pip install 'distsafe[analysis]'")
    from baselines.compare import load_configs

    try:  # every config is loaded and preflighted before anything runs or is written
        configs = load_configs(args.configs)
    except CompareConfigError as e:
        raise _Failure(str(e)) from None
    out = Path(args.out) if args.out else default_out([c.label for c in configs])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # an OS error, not a usage error: exit 1
        raise _Stop(1, f"{e.filename or out}: cannot create the output folder "
                       f"({e.strerror or e})") from None
    names = ["compare.csv", "compare.json"] + (["compare.png"] if args.plot else [])
    blocked = [out / n for n in names if (out / n).exists() and not (out / n).is_file()]
    if blocked:  # found before any run, not after all of them
        raise _Failure(f"{blocked[0]}: is not a file; the results cannot be written there")
    bar = ProgressBar(sys.stderr)
    try:
        result = compare(configs, args.seeds, jobs=args.jobs, bad_actors=bad_actors,
                         on_progress=lambda done, total: bar(done, total))
    except CompareConfigError as e:
        raise _Failure(str(e)) from None
    finally:
        bar.close()
    _show_and_save(result, out, args.plot)
    for f in result.failures:
        print(f"{PROG}: error: {f['source']}: seed {f['seed']}: run failed: {f['error']}",
              file=sys.stderr)
    return 1 if result.failures else 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a config's learning entry, save the model and its curve, evaluate it."""
    import importlib.util

    from baselines.runfolder import TRAIN_FILES, RunFolder, RunFolderError

    for module, extra in (("stable_baselines3", "rl"), ("sb3_contrib", "rl"),
                          ("matplotlib", "analysis")):
        if importlib.util.find_spec(module) is None:
            raise _Failure(f"train needs {module}: pip install 'distsafe[{extra}]'")
    scenario = _load(args.config)
    if scenario.train is None:
        raise _Failure(f"{args.config}: train: is missing: a training config is a scenario "
                       "with a train: block and one agents entry with learn: true (see "
                       "configs/train_adversary_sandbox.yaml)")
    updates: dict[str, Any] = {}
    if args.timesteps is not None:
        updates["total_timesteps"] = args.timesteps
    if args.seed is not None:
        updates["seed"] = args.seed
    if args.copies is not None:
        updates["copies"] = args.copies
    if args.harm_bonus is not None:
        if not (math.isfinite(args.harm_bonus) and 0 <= args.harm_bonus <= 1e6):
            raise _Failure(f"--harm-bonus must be a number in [0, 1e6], got {args.harm_bonus}")
        updates["harm_bonus"] = args.harm_bonus
    if args.eval_seeds is not None:
        updates["eval"] = scenario.train.eval.model_copy(update={"seeds": args.eval_seeds})
    if updates:
        scenario = scenario.model_copy(update={"train": scenario.train.model_copy(
            update=updates)})
    if args.backend == "rllib":
        from baselines.scenario import ConfigError
        from baselines.train import rllib_problems

        if importlib.util.find_spec("ray") is None:
            raise _Failure("--backend rllib needs Ray RLlib: pip install 'distsafe[rllib]'")
        problems = rllib_problems(scenario)
        if problems:  # before any file is touched
            raise ConfigError(args.config, problems=problems)
    _preflight(scenario, args.config)
    out = Path(args.out) if args.out else Path("runs") / f"train-{scenario.name}"
    folder = RunFolder(out, files=TRAIN_FILES, what="training")
    if args.eval_only:
        return _evaluate_again(folder, scenario, args)
    try:
        folder.open_new(args.overwrite)
    except RunFolderError as e:
        raise _Failure(str(e)) from None
    except OSError as e:
        raise _Stop(1, f"{e.filename or out}: cannot use the training folder "
                       f"({e.strerror or e})") from None
    try:
        return _train_in(folder, scenario, args)
    finally:
        folder.release()


def _evaluate_again(folder: Any, scenario: Any, args: argparse.Namespace) -> int:
    """``--eval-only``: evaluate the model a training folder holds (eval.json, eval.csv,
    eval/ replaced), with the config's (or the overridden) evaluation settings."""
    import json

    from baselines.runfolder import RunFolderError
    from baselines.train import eval_csv, eval_table, evaluate

    model = folder.path / "model.zip"
    if not model.is_file():
        raise _Failure(f"{folder.path}: holds no model.zip to evaluate; train first (without "
                       "--eval-only)")
    try:
        folder.check_is_run_folder()
        folder.lock()
    except RunFolderError as e:
        raise _Failure(str(e)) from None
    bar = ProgressBar(sys.stderr, unit="evaluation runs")
    try:
        import shutil

        shutil.rmtree(folder.path / "eval", ignore_errors=True)
        result = evaluate(scenario, model, folder.path / "eval",
                          on_progress=None if args.quiet else bar)
        bar.close()
        folder.write_text("eval.json", json.dumps(result, indent=2) + "\n")
        folder.write_text("eval.csv", eval_csv(result))
    finally:
        bar.close()
        folder.release()
    print(folder.path if args.quiet else eval_table(result))
    return 0


def _train_in(folder: Any, scenario: Any, args: argparse.Namespace) -> int:
    import json

    import torch
    import yaml

    from baselines.train import eval_table, train

    torch.set_num_threads(args.threads)
    folder.write_text("config.yaml", yaml.safe_dump(scenario.model_dump(mode="json"),
                                                    sort_keys=False))
    spec = scenario.train
    quiet = args.quiet
    if not quiet:
        print(f"training {spec.algorithm} on {scenario.name} for {spec.total_timesteps} "
              f"learner steps ({spec.copies} copies, seed {spec.seed}) -> {folder.path}",
              file=sys.stderr)
    bar = ProgressBar(sys.stderr, unit="learner steps")
    ebar = ProgressBar(sys.stderr, unit="evaluation runs")
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        if args.backend == "rllib":
            from baselines.train import train_with_rllib

            result = train_with_rllib(scenario, args.config, folder,
                                      on_progress=None if quiet else bar)
            bar.close()
            folder.write_text("train.json", json.dumps(result, indent=2, default=str) + "\n")
            print(folder.path if quiet else (
                f"rllib: trained {result['timesteps']} learner steps in "
                f"{result['seconds']:.1f} s; wrote {folder.path / 'rllib'} (checkpoint, "
                "curve.csv) and train.json"))
            return 0
        result = train(scenario, args.config, folder, on_progress=None if quiet else bar,
                       on_eval_progress=None if quiet else ebar,
                       evaluate_after=not args.no_eval)
    except KeyboardInterrupt:
        raise _Stop(130, f"interrupted; {folder.path} holds what was written so far") \
            from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
        ebar.close()
    summary = result["train"]
    if summary.get("interrupted"):
        raise _Stop(130, f"interrupted after {summary['timesteps']} learner steps; the model "
                         f"as learned so far, its curve and train.json are in {folder.path} "
                         "(not evaluated)")
    if quiet:
        print(folder.path)
        return 0
    print(f"trained {summary['timesteps']} learner steps in {summary['seconds']:.1f} s "
          f"({summary['fps']} steps/s, {100 * (summary['env_share'] or 0):.0f}% in the "
          f"environment); masked choices per learner step: {summary['invalid_per_step']}")
    if result["eval"] is not None:
        print(eval_table(result["eval"]))
    print(f"wrote {folder.path}/model.zip, curve.csv, curve.png, eval.json")
    return 0


def _strategies_and_payoffs(names: Sequence[str], payoffs: str
                            ) -> tuple[list[str], tuple[float, float, float, float]]:
    """``--strategies`` and ``--payoffs`` checked: an unknown name or a bad payoff is one
    line naming the flag."""
    from baselines.strategies import strategy_class
    from baselines.tournament import parse_payoffs

    for name in names:
        try:
            strategy_class(name)
        except ValueError as e:
            raise _Failure(f"--strategies: {e}") from None
    try:
        return list(names), parse_payoffs(payoffs)
    except ValueError as e:
        raise _Failure(f"--payoffs: {e}") from None


def cmd_tournament(args: argparse.Namespace) -> int:
    """A round robin of prisoner's-dilemma strategies: the ranked table, its CSV files (and
    a heatmap of the payoff matrix)."""
    import importlib.util

    from baselines.strategies import CLASSIC
    from baselines.tournament import round_robin

    strategies, payoffs = _strategies_and_payoffs(args.strategies or CLASSIC, args.payoffs)
    if not 0.0 <= args.noise <= 1.0:
        raise _Failure(f"--noise: expected a probability in [0, 1], got {args.noise}")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise _Failure("--plot needs matplotlib: pip install 'distsafe[analysis]'")
    out = Path(args.out)
    names = ["tournament.csv", "payoff_matrix.csv"] + (["payoff_matrix.png"] if args.plot
                                                       else [])
    blocked = [out / n for n in names if (out / n).exists() and not (out / n).is_file()]
    if blocked or (out.exists() and not out.is_dir()):
        where = blocked[0] if blocked else out
        raise _Failure(f"{where}: is not a {'file' if blocked else 'folder'}; the results "
                       "cannot be written there")
    result = round_robin(strategies, turns=args.turns, repetitions=args.repetitions,
                         noise=args.noise, seed=args.seed, payoffs=payoffs)
    r, s, t, p = payoffs
    print(f"round robin of {len(result.names)} strategies: {args.turns} turns x "
          f"{args.repetitions} repetitions, noise {args.noise:g}, (R, S, T, P) = "
          f"({r:g}, {s:g}, {t:g}, {p:g}), seed {args.seed}")
    _show_and_save(result, out, args.plot)
    return 0


def cmd_evolve(args: argparse.Namespace) -> int:
    """Evolutionary dynamics of strategies: the Moran process (one run, or fixation
    probabilities over ``--runs``) or imitation dynamics on a network; prints the outcome and
    writes a CSV (``evolution.csv``: shares per step or generation; ``fixation.csv``)."""
    from baselines import evolution

    flags = {"counts": "--counts", "initial": "--counts", "n_agents": "--n-agents",
             "max_steps": "--max-steps", "network": "--network", "beta": "--beta",
             "mutation": "--mutation", "selection": "--selection", "runs": "--runs",
             "generations": "--generations", "noise": "--noise"}

    def failure(e: ValueError) -> _Failure:
        text = " ".join(str(e).split())
        head = text.split(" ", 1)[0].split("[", 1)[0].rstrip(":")
        if head not in flags:
            return _Failure(text)
        if text.startswith(f"{head}:"):  # "network: topology: ..." -> "--network: topology: ..."
            return _Failure(f"{flags[head]}{text[len(head):]}")
        return _Failure(f"{flags[head]}: {text}")

    strategies, payoffs = _strategies_and_payoffs(args.strategies, args.payoffs)
    if args.counts is not None and len(args.counts) != len(strategies):
        raise _Failure(f"--counts: expected one count per strategy ({len(strategies)}), got "
                       f"{len(args.counts)}")
    game = dict(turns=args.turns, repetitions=args.repetitions, noise=args.noise,
                payoffs=payoffs, seed=args.seed)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise _Failure(f"{out}: is not a folder; the results cannot be written there")
    try:
        if args.moran:
            counts = args.counts or [10] * len(strategies)
            if args.runs > 1 and args.mutation != 0.0:
                raise _Failure("--mutation: only for one run (--runs 1); with mutation no "
                               "strategy fixates for good")
            if args.runs > 1:
                fix = evolution.moran_fixation(strategies, counts, runs=args.runs,
                                               max_steps=args.max_steps,
                                               selection=args.selection, **game)
                rows = [["strategy", "initial", "fixation_probability", "stderr", "neutral"]]
                rows += [[n, str(int(c)), repr(float(p)), repr(float(se)), repr(float(q))]
                         for n, c, p, se, q in zip(fix.names, fix.counts, fix.probabilities,
                                                   fix.stderr, fix.neutral)]
                print(f"Moran process, {args.runs} runs from {fix.counts.tolist()} "
                      f"(N = {fix.population}); {fix.unfixed} did not fix")
                print(fix.table())
                name, text = "fixation.csv", "\n".join(map(",".join, rows)) + "\n"
            else:
                run = evolution.moran_process(strategies, counts, max_steps=args.max_steps,
                                              mutation=args.mutation,
                                              selection=args.selection, **game)
                print(f"Moran process from {run.counts.tolist()} (N = {run.population}): "
                      f"{run.summary()}")
                name, text = "evolution.csv", None
                shares, index, names = run.shares, "step", run.names
        else:
            network = yaml.safe_load(args.network)
            if isinstance(network, str):
                network = {"topology": network}
            if not isinstance(network, dict):
                raise _Failure(f"--network: expected a topology name or a mapping such as "
                               f"'{{topology: small_world, k: 6}}', got {args.network!r}")
            n_agents = args.n_agents if args.n_agents is not None else \
                (sum(args.counts) if args.counts else 100)
            result = evolution.imitation_dynamics(
                strategies, network=network, n_agents=n_agents, initial=args.counts,
                generations=args.generations, rule=args.rule, beta=args.beta, **game)
            print(f"imitation ({args.rule}) on {result.network!r}: {result.summary()}")
            name, text = "evolution.csv", None
            shares, index, names = result.shares, "generation", result.names
    except ValueError as e:
        raise failure(e) from None
    if text is None:
        rows = [[index, *names]]
        rows += [[str(t), *(repr(float(v)) for v in row)] for t, row in enumerate(shares)]
        text = "\n".join(map(",".join, rows)) + "\n"
        picks = np.unique(np.linspace(0, len(shares) - 1, 11).round().astype(int))
        print(f"{index:>10}  " + "  ".join(f"{n:>8}" for n in names))
        for t in picks:
            print(f"{t:>10}  " + "  ".join(f"{v:>8.3f}" for v in shares[t]))
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, newline="")
    except OSError as e:
        raise _Stop(1, f"{e.filename or out}: cannot write the results "
                       f"({e.strerror or e})") from None
    print(out / name)
    return 0


def _print_error(e: Exception) -> None:
    """One ``distsafe: error:`` line per problem (a config may have several)."""
    for line in str(e).splitlines() or [type(e).__name__]:
        print(f"{PROG}: error: {line}", file=sys.stderr)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("distsafe")
    except metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- parser
def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, with a clear message otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_seed = _int_at_least(0, "a non-negative integer")
_positive = _int_at_least(1, "a positive integer")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="distsafe: distributional safety in multi-agent systems.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a scenario YAML file and write a run folder")
    p.add_argument("config", help="scenario YAML file (see configs/)")
    p.add_argument("--seed", type=_seed, help="run seed (default: the scenario's seed)")
    p.add_argument("--out", metavar="DIR",
                   help="run folder (default: runs/<scenario name>-seed<seed>); it must not "
                        "hold another run (see --overwrite, --resume)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run folder whole if it already holds a run")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its last complete epoch "
                        "(refused, changing nothing, if the folder holds another run)")
    p.add_argument("--log-format", choices=("arrow", "parquet", "jsonl"), default=None,
                   help="how interactions are logged: columnar chunks in "
                        "events.interactions/ (arrow: Arrow IPC, the default; parquet) or "
                        "JSON lines inside events.jsonl (jsonl, for small runs)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no table; print only the run folder")
    p.add_argument("--dry-run", action="store_true",
                   help="call no LLM provider: llm agents take their documented fallback "
                        "action (the run checks prompts, parsing and the run path for free)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="recompute the metrics of a run from its event log")
    p.add_argument("events", metavar="EVENTS", help="a run's events.jsonl")
    p.add_argument("--out", metavar="CSV", help="also write the metrics to this CSV file")
    p.add_argument("--episode", type=int, default=None,
                   help="which episode of a multi-episode log (0-based; -1: the last)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("validate", help="check scenario YAML files (load and build)")
    p.add_argument("configs", metavar="CONFIG", nargs="+", help="scenario YAML files")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("compare", help="run configs over many seeds; one table of means "
                                       "with 95%% intervals, compare.csv and compare.json")
    p.add_argument("configs", metavar="CONFIG", nargs="+", help="scenario YAML files")
    p.add_argument("--seeds", type=_positive, required=True, metavar="N",
                   help="runs per config; run k uses the config's seed + k")
    p.add_argument("--jobs", type=_positive, default=None, metavar="J",
                   help="worker processes (default: the machine's cores); the numbers do "
                        "not depend on it")
    p.add_argument("--out", metavar="DIR",
                   help="where compare.csv, compare.json (and compare.png) go (default: "
                        "runs/compare-<config names joined by '-'>); files there are replaced")
    p.add_argument("--plot", action="store_true",
                   help="also write compare.png: toxicity and welfare per epoch, 95%% bands")
    p.add_argument("--bad-actors", metavar="GROUPS", default=None,
                   help="comma-separated group labels counted as bad actors (default, per "
                        "variant: deceptive,adversarial in the sandbox; saboteur,greedy in "
                        "the commons)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("tournament", help="round robin of iterated prisoner's-dilemma "
                                          "strategies; ranked table, tournament.csv and "
                                          "payoff_matrix.csv")
    p.add_argument("--strategies", nargs="+", metavar="NAME", default=None,
                   help="strategy names or short names (default: the classic seven, AC AD "
                        "TFT STFT GRIM WSLS RND)")
    p.add_argument("--turns", type=_positive, default=200, help="turns per match (200)")
    p.add_argument("--repetitions", type=_positive, default=10,
                   help="repetitions of every match (10)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="probability that a played move is flipped (0)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of all randomness (0)")
    p.add_argument("--payoffs", default="classic", metavar="PAYOFFS",
                   help="classic (3,0,5,1), llm_study (2,-1,3,0), prison_years "
                        "(-1,-10,0,-5) or four numbers 'R,S,T,P'")
    p.add_argument("--out", metavar="DIR", default=str(Path("runs") / "tournament"),
                   help="where tournament.csv and payoff_matrix.csv (and payoff_matrix.png) "
                        "go (default: runs/tournament); files there are replaced")
    p.add_argument("--plot", action="store_true",
                   help="also write payoff_matrix.png, a heatmap of the payoff matrix")
    p.set_defaults(func=cmd_tournament)

    p = sub.add_parser("evolve", help="evolutionary dynamics of prisoner's-dilemma "
                                      "strategies: the Moran process or imitation on a "
                                      "network; shares over time or fixation probabilities")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--moran", action="store_true",
                      help="Moran birth-death process in a well-mixed population")
    mode.add_argument("--imitation", action="store_true",
                      help="imitation of better-paid neighbours on a network")
    p.add_argument("--strategies", nargs="+", metavar="NAME", default=["TFT", "AD"],
                   help="strategy names or short names (default: TFT AD)")
    p.add_argument("--counts", nargs="+", type=_seed, metavar="N", default=None,
                   help="initial individuals of each strategy (default: moran 10 each; "
                        "imitation: equal shares of --n-agents)")
    p.add_argument("--turns", type=_positive, default=200, help="turns per match (200)")
    p.add_argument("--repetitions", type=_positive, default=10,
                   help="repetitions of every match of the round robin (10)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="probability that a played move is flipped (0)")
    p.add_argument("--payoffs", default="classic", metavar="PAYOFFS",
                   help="classic (3,0,5,1), llm_study (2,-1,3,0), prison_years "
                        "(-1,-10,0,-5) or four numbers 'R,S,T,P'")
    p.add_argument("--seed", type=_seed, default=0, help="seed of all randomness (0)")
    p.add_argument("--runs", type=_positive, default=1,
                   help="moran: independent runs; above 1, print and write fixation "
                        "probabilities (fixation.csv) instead of one run's shares (1)")
    p.add_argument("--max-steps", type=_seed, default=None,
                   help="moran: the most steps of a run (default 100 N^2)")
    p.add_argument("--mutation", type=float, default=0.0,
                   help="moran, one run: probability that an offspring mutates (0)")
    p.add_argument("--selection", type=float, default=1.0,
                   help="moran: intensity of selection w in [0, 1] (1: fitness = payoff)")
    p.add_argument("--network", default="small_world", metavar="NETWORK",
                   help="imitation: a topology (complete, ring, star, random, small_world, "
                        "scale_free) or a mapping of network fields, e.g. "
                        "'{topology: small_world, k: 6}' (default small_world)")
    p.add_argument("--n-agents", type=_positive, default=None,
                   help="imitation: agents (default: the sum of --counts, else 100)")
    p.add_argument("--generations", type=_seed, default=100,
                   help="imitation: the most generations (100)")
    p.add_argument("--rule", choices=("fermi", "best"), default="fermi",
                   help="imitation: copy a random neighbour with Fermi probability, or the "
                        "best-paid neighbour if better (fermi)")
    p.add_argument("--beta", type=float, default=1.0,
                   help="imitation, fermi: intensity of selection (1)")
    p.add_argument("--out", metavar="DIR", default=str(Path("runs") / "evolve"),
                   help="where evolution.csv or fixation.csv goes (default: runs/evolve)")
    p.set_defaults(func=cmd_evolve)

    p = sub.add_parser("train", help="train a config's learning agents (SB3, or RLlib), "
                                     "save the model and its learning curve, evaluate it "
                                     "against the best scripted adversary")
    p.add_argument("config", metavar="CONFIG", help="a training config (a scenario with a "
                                                     "train: block)")
    p.add_argument("--out", metavar="DIR", help="training folder (default: "
                                               "runs/train-<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing training "
                                                              "folder")
    p.add_argument("--timesteps", type=_positive, default=None, metavar="N",
                   help="override train.total_timesteps")
    p.add_argument("--seed", type=_seed, default=None, help="override train.seed")
    p.add_argument("--copies", type=_positive, default=None, metavar="C",
                   help="override train.copies")
    p.add_argument("--eval-seeds", type=_int_at_least(2, "--eval-seeds"), default=None,
                   metavar="N", help="override train.eval.seeds")
    p.add_argument("--harm-bonus", type=float, default=None, metavar="B",
                   help="override train.harm_bonus: reward per accepted harmful interaction "
                        "the learner initiated (a harm-seeking adversary)")
    p.add_argument("--no-eval", action="store_true", help="train and save only")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate the model already in the training folder again (eval.json "
                        "replaced), e.g. with other --eval-seeds")
    p.add_argument("--threads", type=_positive, default=1, metavar="T",
                   help="torch threads (1: fastest for small networks)")
    p.add_argument("--backend", choices=("sb3", "rllib"), default="sb3",
                   help="sb3 (Stable-Baselines3, the default) or rllib (Ray RLlib, an "
                        "optional extra)")
    p.add_argument("--quiet", action="store_true", help="print only the training folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("conversations", help="write one HTML page of what a run's LLM agents "
                                             "said (prompts, replies, reasoning, per step)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    p.add_argument("--out", metavar="HTML",
                   help="where the page goes (default: RUN_DIR/conversations.html)")
    p.set_defaults(func=cmd_conversations)

    p = sub.add_parser("judge", help="label each LLM reply of a run for deception with one or "
                                     "two judge models; per-agent rates, Cohen's kappa")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    p.add_argument("--model", action="append", required=True, metavar="M",
                   help="litellm model of a judge (give two for their agreement)")
    p.add_argument("--api-base", metavar="URL", help="an OpenAI-compatible server")
    p.add_argument("--api-key-env", metavar="VAR",
                   help="environment variable holding the judge's API key")
    p.add_argument("--concurrency", type=_positive, default=16, metavar="N",
                   help="requests in flight at once (16)")
    p.set_defaults(func=cmd_judge)

    from baselines import suite, sweep  # their commands live beside their code

    suite.register(sub)
    sweep.register(sub)
    from baselines import fork, plot

    fork.register(sub)
    plot.register(sub)

    p = sub.add_parser("list", help="list environments, policies and bundled configs")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``distsafe`` console script; returns the exit status."""
    from baselines.scenario import ConfigError

    args = make_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, _Failure) as e:
        _print_error(e)
        return 2
    except _Stop as e:
        print(f"{PROG}: {'error: ' if e.status != 130 else ''}{e}", file=sys.stderr)
        return e.status
    except BrokenPipeError:  # stdout closed early (`distsafe replay ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # run as `python -m baselines.cli`: this module is __main__, but the commands that live
    # elsewhere (bench, sweep) raise baselines.cli's errors; run that module's main
    from baselines.cli import main as _main

    sys.exit(_main())
