"""The ``distsafe`` command line: run scenarios, replay event logs, validate configs.

Commands::

    distsafe run CONFIG [--seed N] [--out DIR] [--quiet]
    distsafe replay EVENTS [--out CSV]
    distsafe validate CONFIG [CONFIG ...]
    distsafe list

``run`` writes a run folder (default ``runs/<scenario>-seed<seed>``) holding ``config.yaml``
(the resolved scenario, seed included), ``events.jsonl`` (the event log) and ``metrics.csv``
(one row per epoch), and prints one table row per epoch as it goes. ``replay`` recomputes the
same rows from an event log: ``distsafe replay RUN/events.jsonl --out x.csv`` reproduces
``RUN/metrics.csv`` byte for byte.

Every configuration problem is one line on stderr, ``distsafe: error: <file>: <field>: <what>``,
with exit status 2 (as for argparse usage errors).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

PROG = "distsafe"
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
_TABLE = (("epoch", "epoch", 5), ("n_interactions", "interactions", 12),
          ("n_accepted", "accepted", 8), ("toxicity", "toxicity", 8),
          ("quality_gap", "quality_gap", 11), ("welfare", "welfare", 9))


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

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.active = bool(getattr(stream, "isatty", lambda: False)())
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.active:
            return
        filled = self.width * done // max(total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} steps")
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


def _warn_governance(scenario: Any) -> None:
    if scenario.governance:
        print(f"{PROG}: warning: the 'governance' block is stored but not applied yet",
              file=sys.stderr)


def _build(scenario: Any, source: str, **kwargs: Any):
    from baselines.scenario import ConfigError, Scenario, build

    try:
        return build(scenario, **kwargs)
    except ValidationError as e:
        raise ConfigError.from_validation_error(e, source, Scenario) from None
    except ValueError as e:
        raise _Failure(f"{source}: {' '.join(str(e).split())}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from baselines.runner import rollout, write_metrics_csv

    scenario = _load(args.config)
    _warn_governance(scenario)
    seed = args.seed if args.seed is not None else scenario.simulation.seed
    if seed is None:
        seed = secrets.randbelow(2**31)  # recorded in config.yaml, so the run can be redone
    scenario = scenario.model_copy(
        update={"simulation": scenario.simulation.model_copy(update={"seed": seed})})
    out = Path(args.out) if args.out else Path("runs") / f"{scenario.name}-seed{seed}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _Failure(f"{out}: cannot create the run folder ({e.strerror or e})") from None
    events = out / "events.jsonl"
    resume_after = _resume_point(events) if args.resume else -1
    if resume_after < 0:
        events.unlink(missing_ok=True)  # a rerun replaces the run, it does not append to it
    (out / "config.yaml").write_text(
        yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    env, policies = _build(scenario, args.config, seed=seed,
                           event_log=None if resume_after >= 0 else events)
    table = None if args.quiet else MetricsTable(sys.stdout)
    bar = ProgressBar(sys.stderr) if not args.quiet else None
    on_epoch = table
    if resume_after >= 0:
        on_epoch = _Resumer(env, events, resume_after, table, args.config)
    try:
        rows = rollout(env, policies, seed=seed, on_epoch=on_epoch, on_step=bar)
    except ValueError as e:  # e.g. a network the topology cannot generate at reset
        raise _Failure(f"{args.config}: {' '.join(str(e).split())}") from None
    finally:
        if bar is not None:
            bar.close()
        env.close()
    write_metrics_csv(rows, out / "metrics.csv")
    if not args.quiet:
        _print_run_report(events)
    print(out)
    return 0


def _resume_point(events: Path) -> int:
    """The last complete epoch of an interrupted run's log (-1: start afresh)."""
    from envs.core.events import replay, truncate_to_epoch

    if not events.is_file():
        return -1
    try:
        rep = replay(events)
    except ValueError as e:
        raise _Failure(f"{events}: cannot resume: {e}") from None
    if rep.last_complete_epoch < 0:
        return -1
    if not rep.complete:
        truncate_to_epoch(events, rep.last_complete_epoch)
    return rep.last_complete_epoch


class _Resumer:
    """Re-runs the completed epochs silently (the run is deterministic), checks them
    against the log, then appends the rest of the run to the same log."""

    def __init__(self, env: Any, events: Path, last_epoch: int, table: Any,
                 source: str) -> None:
        from baselines.runner import metrics_from_events

        self.env, self.events, self.last, self.table = env.unwrapped, events, last_epoch, table
        self.source = source
        self.logged = metrics_from_events(events)

    def __call__(self, row: dict) -> None:
        from envs.core.events import EventLog

        epoch = row["epoch"]
        if epoch <= self.last:
            if _fmt_row(row) != _fmt_row(self.logged[epoch]):
                raise _Failure(f"{self.events}: cannot resume: epoch {epoch} of the log differs "
                               f"from a re-run of {self.source} (config or code changed?)")
            if epoch == self.last:
                self.env.event_log = EventLog(self.events, mode="a")
        if self.table is not None:
            self.table(row)


def _fmt_row(row: dict) -> list[str]:
    return [repr(v) for v in row.values()]


def cmd_replay(args: argparse.Namespace) -> int:
    from baselines.runner import metrics_from_events, write_metrics_csv

    path = Path(args.events)
    if not path.is_file():
        raise _Failure(f"{path}: no such file")
    try:
        rows = metrics_from_events(path, args.episode)
    except (ValueError, KeyError) as e:
        raise _Failure(f"{path}: not a readable event log ({' '.join(str(e).split())})") \
            from None
    table = MetricsTable(sys.stdout)
    for row in rows:
        table(row)
    _print_run_report(path, args.episode)
    if args.out:
        write_metrics_csv(rows, args.out)
    return 0


def _print_run_report(events: Path, episode: int | None = None) -> None:
    """The whole run's soft metrics beside their hard-label twins."""
    from baselines.runner import interaction_metrics
    from envs.core.events import replay
    from envs.core.metrics import MetricsReporter
    from envs.core.payoff import PayoffConfig

    rep = replay(events, episode)
    b = rep.interactions()
    payoff = PayoffConfig(**rep.run_start.config.get("payoff", {}))
    print(f"\nwhole run ({len(b)} interactions): soft labels vs. hard labels at p >= 0.5")
    print(MetricsReporter.format_metrics(interaction_metrics(b, payoff)))


def cmd_validate(args: argparse.Namespace) -> int:
    from baselines.scenario import ConfigError

    status = 0
    for path in args.configs:
        try:
            scenario = _load(path)
            env, _ = _build(scenario, path, seed=0)
            try:
                env.reset(seed=0)  # network generation happens here
            except ValueError as e:
                raise _Failure(f"{path}: {' '.join(str(e).split())}") from None
            finally:
                env.close()
        except (ConfigError, _Failure) as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            status = 2
            continue
        _warn_governance(scenario)
        print(f"ok {path}")
    return status


def cmd_list(args: argparse.Namespace) -> int:
    import envs
    from baselines.scripted import POLICIES

    print("environments:")
    for env_id in sorted(envs.registry):
        print(f"  {env_id}")
    print("policies:")
    for name, cls in sorted(POLICIES.items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"  {name:<14}{doc[0] if doc else ''}")
    print(f"configs ({CONFIGS_DIR}):")
    files = sorted(CONFIGS_DIR.glob("*.yaml")) if CONFIGS_DIR.is_dir() else []
    for f in files:
        print(f"  {f.name}")
    if not files:
        print("  (none)")
    return 0


# --------------------------------------------------------------------------- parser
def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="distsafe: distributional safety in multi-agent systems.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a scenario YAML file and write a run folder")
    p.add_argument("config", help="scenario YAML file (see configs/)")
    p.add_argument("--seed", type=_seed, help="run seed (default: the scenario's seed)")
    p.add_argument("--out", metavar="DIR",
                   help="run folder (default: runs/<scenario name>-seed<seed>); "
                        "its events.jsonl, metrics.csv and config.yaml are replaced")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its last complete epoch")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no table; print only the run folder")
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
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (`distsafe replay ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
