"""End-to-end throughput of ``distsafe run`` against the environment it drives.

Everything is measured in one process, interleaved, so the ratios survive a noisy machine:

- ``env``: ``step_arrays`` alone, replaying the actions the scenario's policies chose (the
  same trajectory, no policy cost): the raw environment rate (every variant includes one
  ``reset``, which generates the network);
- ``sim``: the policies' ``act_arrays`` plus ``step_arrays`` (no log, no metrics);
- ``rollout``: :func:`baselines.runner.rollout` without a log (per-epoch metrics included);
- ``run``: ``distsafe run`` in-process (``baselines.cli.main``), log on, run folder written,
  table and whole-run report printed (to /dev/null); imports are warm, nothing else is.

It prints agent-steps/s of each, ``run / env`` and ``run / sim``, the share of the run spent
in per-epoch metrics (``epoch_metrics`` timed inside the real run), in the runner's
metrics and bookkeeping (``rollout - sim``) and in the log, folder and report
(``run - rollout``), and the log's size per interaction for each format.

Usage::

    python benchmarks/bench_run.py [--agents 1000] [--epochs 100] [--steps-per-epoch 10]
                                   [--repeats 5] [--formats arrow parquet jsonl]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import baselines.runner as runner_module  # noqa: E402
from baselines.cli import main as cli_main  # noqa: E402
from baselines.policy import ObsBatch  # noqa: E402
from baselines.runner import rollout  # noqa: E402

_epoch_metrics = runner_module.epoch_metrics
from baselines.scenario import build, load_scenario  # noqa: E402

SCENARIO = """\
name: bench_run
agents:
  - {{type: honest, count: {honest}}}
  - {{type: opportunistic, count: {opportunistic}}}
  - {{type: deceptive, count: {deceptive}}}
  - {{type: adversarial, count: {adversarial}}}
network: {{topology: small_world, k: 10}}
simulation: {{n_epochs: {epochs}, steps_per_epoch: {spe}, seed: 1}}
"""


def write_scenario(folder: Path, agents: int, epochs: int, spe: int) -> Path:
    counts = {"opportunistic": agents // 5, "deceptive": agents * 3 // 20,
              "adversarial": agents // 20}
    counts["honest"] = agents - sum(counts.values())
    path = folder / "bench_run.yaml"
    path.write_text(SCENARIO.format(epochs=epochs, spe=spe, **counts))
    return path


def groups_of(env, policies):
    by_id: dict[int, tuple] = {}
    for a, pol in policies.items():
        by_id.setdefault(id(pol), (pol, []))[1].append(env.agent_name_mapping[a])
    return [(pol, np.asarray(rows)) for pol, rows in by_id.values()]


def time_sim(scenario, record: bool = False):
    env, policies = build(scenario, seed=1)
    t0 = time.perf_counter()  # every variant pays one reset (network generation) alike
    env.reset(seed=1)
    for k, (pol, _) in enumerate(groups_of(env, policies)):
        pol.reset(seed=int(np.random.SeedSequence([1, k]).generate_state(1)[0]))
    groups = groups_of(env, policies)
    actions = np.zeros((env.config.n_agents, len(env.nvec)), dtype=np.int64)
    recorded = []
    for _ in range(env.max_steps):
        for pol, rows in groups:
            actions[rows] = pol.act_arrays(ObsBatch.from_env(env, rows))
        if record:
            recorded.append(actions.copy())
        env.step_arrays(actions, validate=False)
    return time.perf_counter() - t0, recorded


def time_env(scenario, recorded) -> float:
    env, _ = build(scenario, seed=1)
    t0 = time.perf_counter()
    env.reset(seed=1)
    for actions in recorded:
        env.step_arrays(actions, validate=False)
    return time.perf_counter() - t0


def time_rollout(scenario) -> float:
    env, policies = build(scenario, seed=1)
    t0 = time.perf_counter()
    rollout(env, policies, seed=1)
    return time.perf_counter() - t0


METRICS_SECONDS = [0.0]  # time spent in per-epoch metrics during the last timed run


def _timed_epoch_metrics(*args, **kwargs):
    t0 = time.perf_counter()
    try:
        return _epoch_metrics(*args, **kwargs)
    finally:
        METRICS_SECONDS[0] += time.perf_counter() - t0


def time_run(config: Path, out: Path, fmt: str) -> float:
    sink = io.StringIO()
    METRICS_SECONDS[0] = 0.0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        status = cli_main(["run", str(config), "--out", str(out), "--overwrite",
                           "--log-format", fmt])
    elapsed = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"distsafe run failed with status {status}")
    return elapsed


def log_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file()
               and p.name not in (".lock", "metrics.csv", "config.yaml"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--steps-per-epoch", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--formats", nargs="+", default=["arrow", "parquet", "jsonl"])
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_run-"))
    config = write_scenario(tmp, args.agents, args.epochs, args.steps_per_epoch)
    scenario = load_scenario(config)
    agent_steps = args.agents * args.epochs * args.steps_per_epoch
    _, recorded = time_sim(scenario, record=True)
    time_run(config, tmp / "warm", args.formats[0])  # warm every import and cache

    runner_module.epoch_metrics = _timed_epoch_metrics  # measured inside the real run
    times: dict[str, list[float]] = {k: [] for k in ["env", "sim", "rollout"]
                                     + [f"run[{f}]" for f in args.formats]}
    metric_share: list[float] = []
    for _ in range(args.repeats):  # interleaved: a slow phase of the machine hits all alike
        times["env"].append(time_env(scenario, recorded))
        times["sim"].append(time_sim(scenario)[0])
        times["rollout"].append(time_rollout(scenario))
        for fmt in args.formats:
            times[f"run[{fmt}]"].append(time_run(config, tmp / fmt, fmt))
            if fmt == args.formats[0]:
                metric_share.append(METRICS_SECONDS[0] / times[f"run[{fmt}]"][-1])
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; {args.agents} agents x "
          f"{args.epochs * args.steps_per_epoch} steps ({args.steps_per_epoch} per epoch), "
          f"median of {args.repeats}")
    print(f"{'what':<16}{'seconds':>9}{'agent-steps/s':>15}{'/ env':>8}{'/ sim':>8}")
    for k, t in med.items():
        print(f"{k:<16}{t:>9.3f}{agent_steps / t:>15,.0f}{med['env'] / t:>8.2f}"
              f"{med['sim'] / t:>8.2f}")
    first = f"run[{args.formats[0]}]"
    print(f"\nper-epoch metrics (timed inside the run): {statistics.median(metric_share):.1%} "
          f"of {first}; rollout - sim (metrics and the runner's own bookkeeping): "
          f"{(med['rollout'] - med['sim']) / med[first]:.1%}; log, folder and report: "
          f"{(med[first] - med['rollout']) / med[first]:.1%}")
    from envs.core.events import replay

    n = len(replay(tmp / args.formats[0] / "events.jsonl").interactions())
    for fmt in args.formats:
        size = log_bytes(tmp / fmt)
        print(f"log size [{fmt}]: {size / 1e6:.1f} MB, {size / n:.1f} bytes per interaction "
              f"({n} interactions)")


if __name__ == "__main__":
    main()
