"""Throughput of the commons (``commons-v0``): the step, the policies, and the run around it.

In one process, interleaved over repeats (median reported):

- ``step_arrays``: the batched door at 5, 50 and 200 agents (a stock large enough never to
  collapse), actions precomputed by the ``sustainable`` policy; only the step is timed;
- ``env.step``: the dict door on the same actions;
- the policies: ``saboteur`` and ``sustainable`` deciding for all their agents
  (``act_arrays``);
- the run: :func:`baselines.runner.rollout` of a scenario with four sustainable agents and
  a saboteur writing an Arrow event log, against the same scenario's bare ``step_arrays``
  loop (the run's overhead as a ratio: the run path's target is within 2x of the env);
- a reference: ``np.add`` on 1 000 floats, so that figures from a noisy machine can be
  normalised.

Usage::

    python benchmarks/bench_commons.py                 # full (a few seconds)
    python benchmarks/bench_commons.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from baselines.commons_policies import COMMONS_POLICIES  # noqa: E402
from baselines.policy import ObsBatch  # noqa: E402
from baselines.runner import rollout  # noqa: E402
from envs.core.events import EventLog  # noqa: E402

BIG = {"capacity": 1e9, "initial_stock": 1e8}  # a lake no one can empty


def _time(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def step_figures(n: int, steps: int) -> dict[str, float]:
    env = envs.make("commons-v0", n_agents=n, n_epochs=10 * steps, **BIG)
    env.reset(seed=0)
    pol = COMMONS_POLICIES["sustainable"](seed=0)
    sab = COMMONS_POLICIES["saboteur"](seed=0)
    rows = np.arange(n)
    a = pol.act_arrays(ObsBatch.from_env(env, rows))
    acts = dict(zip(env.possible_agents, a))
    arrays = _time(lambda: env.step_arrays(a, validate=False), steps)
    dicts = _time(lambda: env.step(acts), steps)
    sust = _time(lambda: pol.act_arrays(ObsBatch.from_env(env, rows)), steps)
    sabo = _time(lambda: sab.act_arrays(ObsBatch.from_env(env, rows)), steps)
    return {"step_arrays_us": arrays * 1e6, "env_step_us": dicts * 1e6,
            "sustainable_us": sust * 1e6, "saboteur_us": sabo * 1e6}


def run_figures(rounds: int, spe: int) -> dict[str, float]:
    from baselines.scenario import build, parse_scenario

    scenario = parse_scenario({
        "name": "bench_commons", "env": "commons-v0",
        "agents": [{"type": "sustainable", "count": 4}, {"type": "saboteur", "count": 1}],
        "env_params": dict(BIG),
        "simulation": {"seed": 1, "n_epochs": rounds // spe, "steps_per_epoch": spe}})
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(Path(tmp) / "events.jsonl", format="arrow", background=True)
        env, policies = build(scenario, seed=1, event_log=log)
        t0 = time.perf_counter()
        rollout(env, policies, seed=1)
        env.close()
        run = time.perf_counter() - t0
    env, policies = build(scenario, seed=1)
    env.reset(seed=1)
    a = np.zeros((5, len(env.nvec)), dtype=np.int64)
    a[:, 0] = 2
    t0 = time.perf_counter()
    while not env.episode_over:
        env.step_arrays(a, validate=False)
    bare = time.perf_counter() - t0
    return {"run_us_per_round": run / rounds * 1e6, "bare_us_per_round": bare / rounds * 1e6,
            "run_over_bare": run / bare}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    sizes = (5, 20) if args.quick else (5, 50, 200)
    steps = 20 if args.quick else 300
    repeats = 1 if args.quick else args.repeats
    rounds, spe = (100, 10) if args.quick else (2000, 50)
    per: dict[str, list[dict[str, float]]] = {str(n): [] for n in sizes}
    runs: list[dict[str, float]] = []
    ref: list[float] = []
    x, y, z = (np.ones(1000) for _ in range(3))
    for _ in range(repeats):
        for n in sizes:
            per[str(n)].append(step_figures(n, steps))
        runs.append(run_figures(rounds, spe))
        ref.append(_time(lambda: np.add(x, y, out=z), 2000) * 1e6)

    def med(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in rows) for k in rows[0]}

    out = {"machine": {"python": platform.python_version(), "cpu": platform.processor()
                       or platform.machine()},
           "steps": {n: med(rows) for n, rows in per.items()}, "run": med(runs),
           "reference_us": statistics.median(ref), "repeats": repeats,
           "run_rounds": rounds, "steps_per_epoch": spe}
    print(f"{'agents':>6}  {'step_arrays':>11}  {'env.step':>9}  {'agent-steps/s':>13}  "
          f"{'sustainable':>11}  {'saboteur':>9}")
    for n, f in out["steps"].items():
        print(f"{n:>6}  {f['step_arrays_us']:>9.0f}µs  {f['env_step_us']:>7.0f}µs  "
              f"{int(n) / f['step_arrays_us'] * 1e6:>13,.0f}  {f['sustainable_us']:>9.0f}µs  "
              f"{f['saboteur_us']:>7.0f}µs")
    r = out["run"]
    print(f"run ({rounds} rounds, {spe} a epoch, Arrow log): {r['run_us_per_round']:.0f} µs a "
          f"round, bare step_arrays {r['bare_us_per_round']:.0f} µs: run / env "
          f"{r['run_over_bare']:.2f}x; reference np.add(1000) {out['reference_us']:.2f} µs")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
