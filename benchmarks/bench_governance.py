"""Overhead of the governance stack on the step: ``step_arrays`` and ``env.step``, with and
without every lever, at 1 000 agents, measured interleaved in one process.

Both variants replay the same recorded actions (chosen by the scripted policies on the
ungoverned env), so the policies' cost is excluded and only the step differs. The stack is
every lever of ``wrappers.stack`` at the original sandbox's strict settings, on a dynamic
small-world network (the reputation disconnect needs one).

Usage::

    python benchmarks/bench_governance.py [--agents 1000] [--steps 300] [--repeats 7]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envs  # noqa: E402
from baselines.policy import ObsBatch  # noqa: E402
from baselines.scripted import make_policy  # noqa: E402
from wrappers.stack import governance_stack  # noqa: E402

STACK = {
    "reputation_decay": {"rate": 0.85},
    "vote_normalization": {"k": 10.0},
    "transaction_tax": {"rate": 0.1, "split": 0.6, "redistribute": True},
    "random_audit": {"probability": 0.25, "penalty_multiplier": 3.0},
    "staking": {"min_stake": 25.0, "slash_fraction": 0.1},
    "circuit_breaker": {"threshold": 0.5, "violations": 2, "freeze_epochs": 3},
    "collusion_detector": {"z_threshold": 5.0},
    "reputation_disconnect": {"threshold": -2.0},
}


def make_env(n: int, steps: int, governed: bool):
    groups = tuple(["honest"] * (n * 6 // 10) + ["opportunistic"] * (n // 5)
                   + ["deceptive"] * (n - n * 6 // 10 - n // 5))
    env = envs.make("sandbox-v0", n_agents=n, n_epochs=steps // 10, steps_per_epoch=10,
                    groups=groups, network={"topology": "small_world", "k": 10,
                                            "dynamic": True})
    return governance_stack(env, STACK) if governed else env


def record_actions(n: int, steps: int) -> list[np.ndarray]:
    env = make_env(n, steps, governed=False)
    env.reset(seed=1)
    rows = {g: np.flatnonzero(np.asarray(env.groups) == g) for g in set(env.groups)}
    pols = {g: make_policy(g, seed=k) for k, g in enumerate(sorted(rows))}
    actions = np.zeros((n, len(env.nvec)), dtype=np.int64)
    out = []
    for _ in range(env.max_steps):
        for g, r in rows.items():
            actions[r] = pols[g].act_arrays(ObsBatch.from_env(env, r))
        out.append(actions.copy())
        env.step_arrays(actions, validate=False)
    return out


def time_arrays(n: int, steps: int, governed: bool, recorded) -> float:
    gc.collect()  # the previous variant's env is garbage: collect it outside the timing
    env = make_env(n, steps, governed)
    env.reset(seed=1)
    base = env.unwrapped
    t0 = time.perf_counter()
    for a in recorded:
        base.step_arrays(a, validate=False)
    return time.perf_counter() - t0


def time_dicts(n: int, steps: int, governed: bool, recorded) -> float:
    gc.collect()
    env = make_env(n, steps, governed)
    env.reset(seed=1)
    agents = env.possible_agents
    dicts = [dict(zip(agents, a)) for a in recorded]
    t0 = time.perf_counter()
    for d in dicts:
        env.step(d)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    recorded = record_actions(args.agents, args.steps)
    times: dict[str, list[float]] = {k: [] for k in
                                     ("step_arrays", "step_arrays+stack", "env.step",
                                      "env.step+stack")}
    for _ in range(args.repeats):  # interleaved
        times["step_arrays"].append(time_arrays(args.agents, args.steps, False, recorded))
        times["step_arrays+stack"].append(time_arrays(args.agents, args.steps, True, recorded))
        times["env.step"].append(time_dicts(args.agents, args.steps, False, recorded))
        times["env.step+stack"].append(time_dicts(args.agents, args.steps, True, recorded))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"# {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; {args.agents} agents x {args.steps} steps, "
          f"median of {args.repeats}, all {len(STACK)} levers")
    print(f"{'door':<20}{'us/step':>10}{'agent-steps/s':>15}")
    for k, t in med.items():
        print(f"{k:<20}{t / args.steps * 1e6:>10.0f}{args.agents * args.steps / t:>15,.0f}")
    print(f"\nstack overhead: step_arrays {med['step_arrays+stack'] / med['step_arrays']:.2f}x, "
          f"env.step {med['env.step+stack'] / med['env.step']:.2f}x")


if __name__ == "__main__":
    main()
