"""``distsafe plot``: a dashboard PNG of one run, read from its folder.

``distsafe plot RUN_DIR [--out PNG]`` reads ``RUN_DIR/events.jsonl`` (checked as
:func:`envs.core.events.replay` checks it) and the per-epoch metrics (``RUN_DIR/metrics.csv``
when it holds one row per logged epoch, else recomputed from the log) and writes one PNG
(default ``RUN_DIR/dashboard.png``; written beside under a dot-name, then renamed).

Panels of a commons run (its ``step_state`` records, one per round):

- the stock per round (before the harvest, after it, after regrowth) with the collapse
  threshold, and where the commons collapsed;
- credits per agent per round;
- true vs reported extraction per round (totals, with the public observation and the fair
  share of all live agents), and per agent the amount withheld (taken - reported) per round;
- the policy in force per round (threshold, quota, audit probability, fine multiplier, base
  fine);
- messages, accusations, audits, catches and monitoring flags (governance events of the
  lever ``monitoring``, when a run has one) per round;
- toxicity and quality gap per epoch.

Other variants get the panels that apply: toxicity, quality gap, welfare and interactions
per epoch. :func:`dashboard` returns the figure (its axes' titles name the panels).
"""

from __future__ import annotations

import argparse
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COMMONS_PANELS", "EPOCH_PANELS", "dashboard", "register", "write_dashboard"]

COMMONS_PANELS = ("stock", "credits per agent", "extraction: true vs reported",
                  "withheld per agent (taken - reported)", "policy in force",
                  "messages, accusations, audits, monitoring", "toxicity and quality gap",
                  "welfare")
EPOCH_PANELS = ("toxicity", "quality gap", "welfare", "interactions")
_POLICY = ("threshold", "quota", "audit_probability", "fine_multiplier", "base_fine")


class PlotError(Exception):
    """The run cannot be plotted (a missing or corrupt file): one line naming it."""


def _load(run_dir: Path) -> tuple[Any, list[dict]]:
    """The run's replay (episode 0) and its per-epoch metric rows."""
    from baselines.runner import metrics_from_events, read_metrics_csv
    from envs.core.events import LogError, replay

    if not run_dir.is_dir():
        raise PlotError(f"{run_dir}: no such run folder")
    events = run_dir / "events.jsonl"
    if not events.is_file():
        raise PlotError(f"{events}: no such file (the run logged nothing)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a torn last line: plot the rest
            rep = replay(events, episode=0)
    except LogError as e:
        raise PlotError(f"cannot read the run: {e}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PlotError(f"{events}: cannot read: {' '.join(str(e).split())}") from None
    rows: list[dict] | None = None
    csv = run_dir / "metrics.csv"
    if csv.is_file():
        try:
            rows = read_metrics_csv(csv)
        except (OSError, ValueError, KeyError, TypeError):
            rows = None  # a broken metrics.csv: the log has everything
        if rows is not None and ([int(r.get("epoch", -1)) for r in rows]
                                 != [e.epoch for e in rep.epoch_ends]):
            rows = None
    if rows is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                rows = metrics_from_events(events, episode=0)
        except LogError as e:
            raise PlotError(f"cannot read the run: {e}") from None
        except (OSError, ValueError) as e:
            raise PlotError(f"{events}: cannot recompute the metrics: "
                            f"{' '.join(str(e).split())}") from None
    return rep, rows


def _col(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r.get(key, math.nan)) for r in rows], dtype=np.float64)


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            fontsize=9, color="0.4")


def _epoch_panels(axes: Sequence[Any], rows: Sequence[Mapping[str, Any]]) -> None:
    epochs = _col(rows, "epoch")
    specs = (("toxicity", "toxicity", "C3"), ("quality gap", "quality_gap", "C0"),
             ("welfare", "welfare", "C2"), ("interactions", "n_interactions", "C1"))
    for ax, (title, key, color) in zip(axes, specs):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        y = _col(rows, key)
        if not len(rows) or np.isnan(y).all():
            _note(ax, "no values")
            continue
        ax.plot(epochs, y, marker="o", ms=3, color=color)
        if key == "n_interactions" and "n_accepted" in rows[0]:
            ax.plot(epochs, _col(rows, "n_accepted"), marker="o", ms=3, color="C7",
                    label="accepted")
            ax.legend(fontsize=7)


def _fork_threshold(run_dir: Path, rep: Any) -> tuple[int, float] | None:
    """A fork's new collapse threshold and its round (``config.yaml``'s fork record), when
    the fork changed it."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        record = data.get("fork")
        value = (data.get("env_params") or {}).get("collapse_threshold")
        at = record.get("at_round")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    base = rep.run_start.config.get("collapse_threshold")
    if isinstance(value, (int, float)) and isinstance(at, int) and value != base:
        return at, float(value)
    return None


def _axis_share(rounds: np.ndarray, at: int) -> float:
    lo, hi = rounds[0] - 0.5, rounds[-1] + 0.5
    return float(np.clip((at - 0.5 - lo) / max(hi - lo, 1e-9), 0.0, 1.0))


def _commons_panels(axes: Sequence[Any], rep: Any, rows: Sequence[Mapping[str, Any]],
                    forked: tuple[int, float] | None = None) -> None:
    states = [s.data for s in rep.step_states]
    cfg = rep.run_start.config
    rounds = np.array([s.get("round", s_i) for s_i, s in enumerate(states)], dtype=float)
    for k, ax in enumerate(axes):  # six panels by round, then two by epoch
        ax.set_title(COMMONS_PANELS[k])
        ax.set_xlabel("round" if k < 6 else "epoch")
    if states:
        _round_panels(axes, rep, states, rounds)
    else:
        for ax in axes[:6]:
            _note(ax, "no rounds logged")
    ax = axes[0]
    threshold = cfg.get("collapse_threshold")
    if isinstance(threshold, (int, float)):
        ax.axhline(float(threshold), color="C3", lw=1, label=f"collapse threshold "
                                                             f"{float(threshold):g}",
                   xmax=1.0 if forked is None or not states else
                   _axis_share(rounds, forked[0]))
    if forked is not None and states:  # a fork that changed the threshold at a round
        at, value = forked
        ax.hlines(value, at - 0.5, rounds[-1] + 0.5, color="C3", lw=1.5, ls="-.",
                  label=f"collapse threshold {value:g} from round {at} (fork)")
    ax.legend(fontsize=7)

    if rows:
        ax = axes[6]
        epochs = _col(rows, "epoch")
        ax.plot(epochs, _col(rows, "toxicity"), marker="o", ms=3, color="C3",
                label="toxicity")
        gap = _col(rows, "quality_gap")
        ax.plot(epochs, gap, marker="o", ms=3, color="C0", label="quality gap")
        if np.isnan(gap).all():
            _note(ax, "quality gap undefined (no rejected extraction)")
        ax.set_xlim(epochs.min() - 0.5, epochs.max() + 0.5)
        ax.legend(fontsize=7)
        axes[7].plot(epochs, _col(rows, "welfare"), marker="o", ms=3, color="C2")
    else:
        for ax in axes[6:]:
            _note(ax, "no complete epoch")


def _round_panels(axes: Sequence[Any], rep: Any, states: Sequence[Mapping[str, Any]],
                  rounds: np.ndarray) -> None:
    """The six panels drawn round by round (there is at least one round)."""
    names = rep.run_start.agents
    n = len(names)

    def series(key: str) -> np.ndarray:
        return np.array([float(s.get(key, math.nan)) for s in states], dtype=float)

    def matrix(key: str) -> np.ndarray:
        out = np.full((len(states), n), math.nan)
        for k, s in enumerate(states):
            v = s.get(key)
            if isinstance(v, list) and len(v) == n:
                out[k] = np.asarray(v, dtype=float)
        return out

    ax = axes[0]
    ax.set_xlim(rounds[0] - 0.5, rounds[-1] + 0.5)
    ax.plot(rounds, series("stock_before"), color="C0", label="before harvest")
    ax.plot(rounds, series("stock_after_harvest"), color="C1", ls="--",
            label="after harvest")
    ax.plot(rounds, series("stock"), color="C2", label="after regrowth")
    for r in [r for r, s in zip(rounds, states) if s.get("collapsed")]:
        ax.axvline(r, color="C3", ls=":", label="collapse")

    ax = axes[1]
    credits = matrix("credits")
    for i in range(n):
        ax.plot(rounds, credits[:, i], lw=1, label=names[i] if n <= 10 else None)
    if n <= 10:
        ax.legend(fontsize=6, ncol=2)

    ax = axes[2]
    taken, reported, observed = matrix("taken"), matrix("reported"), matrix("observed")
    ax.plot(rounds, np.nansum(taken, 1), color="C3", label="taken (true)")
    ax.plot(rounds, np.nansum(reported, 1), color="C0", ls="--", label="reported")
    ax.plot(rounds, np.nansum(observed, 1), color="C7", ls=":", label="observed")
    live = np.array([sum(bool(x) for x in s.get("live", [])) for s in states], dtype=float)
    ax.plot(rounds, series("fair_share") * live, color="C2", lw=1, label="fair share x live")
    ax.legend(fontsize=7)

    ax = axes[3]
    withheld = np.nan_to_num(taken - reported)
    im = ax.imshow(withheld.T, aspect="auto", cmap="Reds", interpolation="nearest",
                   origin="lower", vmin=0.0,
                   extent=(rounds[0] - 0.5, rounds[-1] + 0.5, -0.5, n - 0.5))
    ax.set_ylabel("agent")
    if n <= 12:
        ax.set_yticks(range(n))
        ax.set_yticklabels(names, fontsize=6)
    ax.figure.colorbar(im, ax=ax, fraction=0.04)

    ax = axes[4]
    for k, key in enumerate(_POLICY):
        y = np.array([float((s.get("policy") or {}).get(key, math.nan)) for s in states])
        ax.step(rounds, y, where="mid", color=f"C{k}", label=key)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.legend(fontsize=6)

    ax = axes[5]
    counts = {
        "messages": [len(s.get("messages", [])) for s in states],
        "accusations": [len(s.get("accusations", [])) for s in states],
        "audits": [len(s.get("audited", [])) for s in states],
        "caught": [len(s.get("caught", [])) for s in states],
    }
    flags: dict[int, int] = {}
    seen = False
    for ev in rep.governance:  # one event a round holds all that round's flags
        if ev.lever == "monitoring":
            seen = True
            flags[ev.step] = flags.get(ev.step, 0) + len(ev.data.get("flags", []))
    if seen:
        counts["monitoring flags"] = [flags.get(int(r), 0) for r in rounds]
    width = 0.8 / len(counts)
    for k, (label, ys) in enumerate(counts.items()):
        ax.bar(rounds - 0.4 + width * (k + 0.5), ys, width=width, color=f"C{k}",
               label=label)
    ax.legend(fontsize=7)


def dashboard(run_dir: str | os.PathLike[str]) -> Any:
    """The dashboard figure of a run folder (matplotlib, Agg); its axes' titles are the
    panels (:data:`COMMONS_PANELS` for a commons run, else :data:`EPOCH_PANELS`).

    Raises:
        PlotError: a missing folder or log, a log that fails its checks (file and line
            named), a round record whose contents cannot be drawn (file named).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    rep, rows = _load(run_dir)
    env = rep.run_start.env
    commons = bool(rep.step_states) or env.startswith("commons")
    n_panels = len(COMMONS_PANELS) if commons else len(EPOCH_PANELS)
    n_cols = 2
    n_rows = (n_panels + 1) // 2
    fig = Figure(figsize=(13, 3.3 * n_rows), layout="constrained")
    axes = [fig.add_subplot(n_rows, n_cols, k + 1) for k in range(n_panels)]
    try:
        if commons:
            _commons_panels(axes, rep, rows, _fork_threshold(run_dir, rep))
        else:
            _epoch_panels(axes, rows)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        # the log's checks leave a round record's (step_state) contents free-form: one
        # edited by hand or by a broken variant stops here, named, not as a traceback
        raise PlotError(f"{run_dir / 'events.jsonl'}: a round record or metric row is "
                        f"malformed ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
                        ) from None
    ended = "complete" if rep.complete else "incomplete"
    fig.suptitle(f"{run_dir.name}: {env}, seed {rep.run_start.seed}, "
                 f"{len(rows)} epochs ({ended})")
    return fig


def write_dashboard(run_dir: str | os.PathLike[str],
                    out: str | os.PathLike[str] | None = None) -> Path:
    """Write the dashboard PNG (default ``RUN_DIR/dashboard.png``), beside then renamed."""
    fig = dashboard(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "dashboard.png"
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


# --------------------------------------------------------------------------- CLI
def cmd_plot(args: argparse.Namespace) -> int:
    import baselines.cli as cli

    if not _has_matplotlib():
        raise cli._Failure("plot needs matplotlib: pip install 'distsafe[analysis]'")
    try:
        path = write_dashboard(args.run_dir, args.out)
    except PlotError as e:
        raise cli._Failure(str(e)) from None
    except OSError as e:
        raise cli._Stop(1, f"{e.filename or args.out}: cannot write the dashboard "
                           f"({e.strerror or e})") from None
    print(path)
    return 0


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``plot`` command to ``distsafe``'s subparsers; returns its parser."""
    p = subparsers.add_parser(
        "plot", help="write a dashboard PNG of a run (commons: stock, credits, extraction, "
                     "policy, messages; every run: toxicity, quality gap ...)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    p.add_argument("--out", metavar="PNG",
                   help="where the PNG goes (default: RUN_DIR/dashboard.png)")
    p.set_defaults(func=cmd_plot)
    return p
