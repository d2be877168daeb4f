"""Step throughput of the sandbox: the dict door, the batched door and the scripted policies.

For each agent count the script builds ``sandbox-v0`` on a scale-free network with a mixed
scripted population (60 % honest, 20 % opportunistic, 10 % deceptive, 10 % adversarial on
team 1; one policy instance per type, batched over its agents as the runner does) and
measures, in one process:

- ``env.step`` (dict door): actions precomputed by the policies, turned into
  ``{agent: row}``; only ``env.step(actions)`` is timed;
- ``step_arrays`` (batched door): the same, timing ``env.step_arrays(arr, validate=False)``;
- the policies: the ``act_arrays(ObsBatch.from_env(env, rows))`` calls and the assembly of
  the ``(n, d)`` action array;
- a reference: ``np.add(a, b, out=c)`` on ``n`` floats, so that figures taken on a noisy
  machine can be normalised (``step / ref`` is the step's cost in units of that op).

All environments are built first. Each repeat runs, for every agent count in turn,
``--steps`` steps through the dict door and ``--steps`` through the batched door on the same
environment (alternating which goes first) and then the ``np.add`` reference; the median over
repeats is reported. Interleaving keeps the ratios (dict / batched, 10 000 / 1 000 agents)
honest when the machine is shared. Warm-up steps run first; an episode that ends is reset
outside the timings.

Usage::

    python benchmarks/bench_step.py                       # 10 100 1000 10000 agents
    python benchmarks/bench_step.py --agents 1000 --steps 200 --repeats 7 --json out.json
    python benchmarks/bench_step.py --quick               # smoke run (tiny sizes)

Targets (the performance issue): >= 1 000 000 agent-steps/s at 1 000 agents through
``env.step``; cost per agent-step at 10 000 agents within 1.5x of that at 1 000.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from baselines.policy import ObsBatch  # noqa: E402
from baselines.scripted import make_policy  # noqa: E402

#: population mix: (policy name, share); adversarial agents are on team 1
MIX = (("honest", 0.6), ("opportunistic", 0.2), ("deceptive", 0.1), ("adversarial", 0.1))
STEPS_PER_EPOCH = 50
TARGET_RATE_1K = 1_000_000
TARGET_SCALING = 1.5


def population(n: int, seed: int = 0) -> list[str]:
    """Policy name per agent: the shares of :data:`MIX`, randomly placed (seeded)."""
    counts = [int(round(share * n)) for _, share in MIX]
    counts[0] += n - sum(counts)  # rounding goes to the majority type
    labels = [name for (name, _), c in zip(MIX, counts) for _ in range(c)]
    order = np.random.default_rng(seed).permutation(n)
    return [labels[i] for i in order]


def build(n: int, total_steps: int, dynamic: bool = False, seed: int = 0):
    """The env, its policy groups ``[(policy, rows)]`` and the reset time (s)."""
    labels = population(n, seed)
    n_epochs = max(1, -(-total_steps // STEPS_PER_EPOCH))
    env = envs.make(
        "sandbox-v0", n_agents=n, n_epochs=n_epochs, steps_per_epoch=STEPS_PER_EPOCH,
        network={"topology": "scale_free", "m": 2, "dynamic": dynamic},
        groups=labels, teams=[1 if g == "adversarial" else -1 for g in labels])
    groups = []
    for k, (name, _) in enumerate(MIX):
        rows = np.flatnonzero(np.asarray(labels) == name)
        if len(rows):
            groups.append((make_policy(name, seed=seed + k), rows))
    t0 = time.perf_counter()
    env.reset(seed=seed)
    return env, groups, time.perf_counter() - t0


class Driver:
    """Runs steps through one door, accumulating time in the step and in the policies."""

    def __init__(self, env: Any, groups: list, seed: int) -> None:
        self.env, self.groups, self.seed = env, groups, seed
        self.actions = np.zeros((env.config.n_agents, len(env.nvec)), dtype=np.int64)
        self.resets = 0

    def _act(self) -> np.ndarray:
        env, arr = self.env, self.actions
        for pol, rows in self.groups:
            arr[rows] = pol.act_arrays(ObsBatch.from_env(env, rows))
        return arr

    def _ensure_live(self) -> None:
        env = self.env
        if env.t >= env.max_steps:  # episode over: reset, outside the timings
            self.resets += 1
            env.reset(seed=self.seed + self.resets)

    def run(self, steps: int, door: str) -> tuple[float, float]:
        """``steps`` steps through ``door`` ("dict" / "arrays"); returns (t_step, t_policy)."""
        env = self.env
        names = env.possible_agents
        clock = time.perf_counter
        t_step = t_pol = 0.0
        for _ in range(steps):
            self._ensure_live()
            t0 = clock()
            arr = self._act()
            t1 = clock()
            t_pol += t1 - t0
            if door == "dict":
                actions = dict(zip(names, arr))
                t0 = clock()
                env.step(actions)
                t_step += clock() - t0
            else:
                t0 = clock()
                env.step_arrays(arr, validate=False)
                t_step += clock() - t0
        return t_step, t_pol


class Case:
    """One agent count: its env, driver and the timings collected so far."""

    def __init__(self, n: int, total_steps: int, dynamic: bool, seed: int) -> None:
        self.n = n
        self.env, groups, self.reset_s = build(n, total_steps, dynamic=dynamic, seed=seed)
        self.driver = Driver(self.env, groups, seed)
        self.t_dict: list[float] = []
        self.t_arr: list[float] = []
        self.t_pol: list[float] = []
        self.t_ref: list[float] = []
        self.ref_calls = max(50, 200_000 // max(n, 1))
        a, b, c = np.random.default_rng(0).random((3, n))
        self._ref = (a, b, c)

    def warm(self, steps: int) -> None:
        self.driver.run(steps, "dict")
        self.driver.run(steps, "arrays")

    def repeat(self, steps: int, r: int) -> None:
        for door in (("dict", "arrays") if r % 2 == 0 else ("arrays", "dict")):
            ts, tp = self.driver.run(steps, door)
            (self.t_dict if door == "dict" else self.t_arr).append(ts / steps)
            self.t_pol.append(tp / steps)
        a, b, c = self._ref
        t0 = time.perf_counter()
        for _ in range(self.ref_calls):
            np.add(a, b, out=c)
        self.t_ref.append((time.perf_counter() - t0) / self.ref_calls)

    def result(self, steps: int, warmup: int, dynamic: bool) -> dict:
        med, n = statistics.median, self.n
        s_dict, s_arr = med(self.t_dict), med(self.t_arr)
        s_pol, ref = med(self.t_pol), med(self.t_ref)
        return {
            "n_agents": n, "steps": steps, "repeats": len(self.t_dict), "warmup": warmup,
            "dynamic": dynamic, "edges": int(self.env.network.n_edges),
            "reset_s": self.reset_s, "step_s": s_dict, "step_arrays_s": s_arr,
            "policy_s": s_pol, "ref_add_s": ref,
            "step_rate": n / s_dict, "step_arrays_rate": n / s_arr, "policy_rate": n / s_pol,
            "step_ns_per_agent": 1e9 * s_dict / n, "step_arrays_ns_per_agent": 1e9 * s_arr / n,
            "dict_over_arrays": s_dict / s_arr, "step_over_ref": s_dict / ref,
            "step_arrays_over_ref": s_arr / ref,
            "step_min_s": min(self.t_dict), "step_arrays_min_s": min(self.t_arr),
            "step_all_s": self.t_dict, "step_arrays_all_s": self.t_arr,
            "ref_all_s": self.t_ref, "resets": self.driver.resets,
        }


def bench(agents: list[int], steps: int, repeats: int, warmup: int, dynamic: bool = False,
          seed: int = 0) -> list[dict]:
    """Time every agent count; repeats are interleaved across the counts (and the two doors
    alternate within a repeat) so that a slow spell of a noisy machine hits all of them."""
    total = 2 * warmup + 2 * steps * repeats + 1
    cases = [Case(n, total, dynamic, seed) for n in agents]
    for case in cases:
        case.warm(warmup)
    for r in range(repeats):
        gc.collect()
        for case in cases:
            case.repeat(steps, r)
        print(f"# repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    return [case.result(steps, warmup, dynamic) for case in cases]


def machine() -> dict:
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(), "processor": platform.processor()}
    try:
        info["nproc"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        info["nproc"] = os.cpu_count()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover - non-Linux
        pass
    return info


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def table(rows: list[dict]) -> str:
    head = ("| agents | edges | env.step agent-steps/s | env.step µs/step | step_arrays "
            "agent-steps/s | step_arrays µs/step | policies agent-steps/s | dict/batched | "
            "np.add(n) µs | step / np.add | reset ms |")
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['n_agents']} | {r['edges']} | {_rate(r['step_rate'])} | "
            f"{1e6 * r['step_s']:.0f} | {_rate(r['step_arrays_rate'])} | "
            f"{1e6 * r['step_arrays_s']:.0f} | {_rate(r['policy_rate'])} | "
            f"{r['dict_over_arrays']:.2f} | {1e6 * r['ref_add_s']:.2f} | "
            f"{r['step_over_ref']:.0f} | {1e3 * r['reset_s']:.0f} |")
    return "\n".join(lines)


def ratios(rows: list[dict]) -> dict:
    by_n = {r["n_agents"]: r for r in rows}
    out: dict[str, Any] = {}
    if 1000 in by_n:
        out["step_rate_1k"] = by_n[1000]["step_rate"]
        out["step_rate_1k_meets_target"] = by_n[1000]["step_rate"] >= TARGET_RATE_1K
    if 1000 in by_n and 10000 in by_n:
        a, b = by_n[1000], by_n[10000]
        for key in ("step", "step_arrays"):
            s = b[f"{key}_ns_per_agent"] / a[f"{key}_ns_per_agent"]
            out[f"{key}_scaling_10k_over_1k"] = s
        # the same ratio normalised by the np.add reference at each size
        ref = (b["ref_add_s"] / 10000) / (a["ref_add_s"] / 1000)
        out["ref_scaling_10k_over_1k"] = ref
        out["step_scaling_meets_target"] = out["step_scaling_10k_over_1k"] <= TARGET_SCALING
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--steps", type=int, default=50, help="timed steps per door per repeat")
    ap.add_argument("--repeats", type=int, default=10, help="repeats (median reported)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps per door first")
    ap.add_argument("--dynamic", action="store_true", help="dynamic network edges")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10 and 50 agents, 5 steps, 2 repeats")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.agents, args.steps, args.repeats, args.warmup = [10, 50], 5, 2, 2
    rows = bench(args.agents, args.steps, args.repeats, args.warmup, dynamic=args.dynamic,
                 seed=args.seed)
    info = machine()
    print(f"python {info['python']}, numpy {info['numpy']}, {info.get('cpu', '?')}, "
          f"{info['nproc']} cpus; steps {args.steps} x repeats {args.repeats} "
          f"(median), warm-up {args.warmup}, network scale_free m=2"
          f"{' dynamic' if args.dynamic else ''}")
    print()
    print(table(rows))
    rat = ratios(rows)
    print()
    if "step_rate_1k" in rat:
        print(f"- env.step at 1 000 agents: {rat['step_rate_1k'] / 1e6:.2f}M agent-steps/s "
              f"(target >= {TARGET_RATE_1K / 1e6:.1f}M: "
              f"{'met' if rat['step_rate_1k_meets_target'] else 'NOT met'})")
    if "step_scaling_10k_over_1k" in rat:
        print(f"- cost per agent-step, 10 000 / 1 000 agents: env.step "
              f"{rat['step_scaling_10k_over_1k']:.2f}x, step_arrays "
              f"{rat['step_arrays_scaling_10k_over_1k']:.2f}x (target <= {TARGET_SCALING}x: "
              f"{'met' if rat['step_scaling_meets_target'] else 'NOT met'}); np.add per "
              f"element {rat['ref_scaling_10k_over_1k']:.2f}x")
    for r in rows:
        print(f"- {r['n_agents']} agents: dict door / batched door = "
              f"{r['dict_over_arrays']:.2f}x per agent-step; dict door costs "
              f"{r['step_ns_per_agent']:.0f} ns, batched {r['step_arrays_ns_per_agent']:.0f} "
              f"ns, policies {1e9 * r['policy_s'] / r['n_agents']:.0f} ns per agent-step")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "argv": sys.argv,
                                         "results": rows, "ratios": rat}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
