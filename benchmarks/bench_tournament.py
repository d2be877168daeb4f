"""Our vectorised round robin against the Axelrod library's ``Tournament``, in one process.

Both play the same strategies (by default the classic seven: AC, AD, TFT, STFT, GRIM, WSLS, RND;
``--all`` adds TF2T, GTFT and the alternator), ``turns=200``, ``repetitions=10``, noise-free,
classic payoffs, timed interleaved (median of ``--repeats``). Axelrod runs serially
(``processes=None``), without its progress bar; ours is :func:`baselines.tournament.round_robin`.
It prints both times, the ratio and whether the two payoff matrices agree on the deterministic
strategies (exactly, up to float rounding) plus the largest gap on the stochastic ones.

Axelrod is not a dependency of distsafe: if it is missing, this script installs it into the
running interpreter's environment with pip (``--no-install`` refuses instead).

Second part, the environment: ``dilemma-v0`` at ``--agents`` (1 000) agents on a scale-free
network (``m`` 3, default ``max_neighbors`` 8: hubs play their 8 heaviest mutual edges),
agent-steps/s through

- ``step_arrays(validate=False)`` (as trainers call it) and ``step_arrays(validate=True)``,
  on actions pre-drawn with ``env.sample_actions(rng)`` (valid all episode: the network is
  static and nobody is frozen, so the masks never change);
- ``env.step`` on the same actions as ``{agent: action vector}`` dicts (built untimed);
- ``step_arrays(validate=False)`` with execution noise 0.05 and perception noise 0.1 (the
  soft labels' draws);

and, as a same-process reference, ``sandbox-v0`` at the same size, measured exactly as
``benchmarks/bench_step.py`` does it (its scale-free m=2 mixed scripted population; the
policies' actions are computed untimed each step; both doors). Variants are interleaved
within each repeat (rotating order, ``gc.collect()`` before each), medians reported; an
episode that ends is reset outside the timings. Targets (the dilemma issue): >= 2 000 000
agent-steps/s through ``step_arrays`` and >= 1 000 000 through ``env.step`` at 1 000 agents.

Usage::

    python benchmarks/bench_tournament.py [--turns 200] [--repetitions 10] [--repeats 5] [--all]
    python benchmarks/bench_tournament.py --only dilemma [--agents 1000] [--steps 100]
        [--env-repeats 15] [--json out.json]
    python benchmarks/bench_tournament.py --only dilemma --quick   # smoke run (tiny sizes)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import envs  # noqa: E402
from baselines.strategies import CLASSIC, make_strategy  # noqa: E402
from baselines.tournament import round_robin  # noqa: E402

TARGET_ARRAYS = 2_000_000  # agent-steps/s through step_arrays, 1 000 agents
TARGET_DICT = 1_000_000    # agent-steps/s through env.step
STEPS_PER_EPOCH = 50

# our short name -> Axelrod class name
AXELROD_NAMES = {
    "AC": "Cooperator", "AD": "Defector", "TFT": "TitForTat", "STFT": "SuspiciousTitForTat",
    "GRIM": "Grudger", "WSLS": "WinStayLoseShift", "RND": "Random", "TF2T": "TitFor2Tats",
    "GTFT": "GTFT", "ALT": "Alternator",
}


def load_axelrod(install: bool):
    try:
        return importlib.import_module("axelrod")
    except ImportError:
        if not install:
            sys.exit("bench_tournament: axelrod is not installed (pip install axelrod)")
    print(f"bench_tournament: axelrod is not installed; installing it into {sys.prefix} "
          f"with pip (it is only needed by this benchmark) ...", flush=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "axelrod"])
    if proc.returncode != 0:
        sys.exit(f"bench_tournament: `pip install axelrod` failed (exit {proc.returncode})")
    importlib.invalidate_caches()
    return importlib.import_module("axelrod")


def tournament_part(args: argparse.Namespace) -> int:
    """Our round robin against axelrod's; 0 when the deterministic payoffs agree."""
    axl = load_axelrod(install=not args.no_install)
    names = [*CLASSIC, *(["TF2T", "GTFT", "ALT"] if args.all else [])]
    ours_players = [make_strategy(n) for n in names]

    def run_ours():
        return round_robin(ours_players, turns=args.turns, repetitions=args.repetitions,
                           seed=0)

    def run_axelrod():
        players = [getattr(axl, AXELROD_NAMES[n])() for n in names]
        return axl.Tournament(players, turns=args.turns, repetitions=args.repetitions,
                              seed=0).play(progress_bar=False)

    run_ours()  # warm imports and caches
    ours_t, axl_t = [], []
    ours = theirs = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = run_ours()
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = run_axelrod()
        axl_t.append(time.perf_counter() - t0)

    t_ours, t_axl = statistics.median(ours_t), statistics.median(axl_t)
    print(f"# round robin: {len(names)} strategies ({', '.join(names)}), turns={args.turns}, "
          f"repetitions={args.repetitions}, noise-free, median of {args.repeats}")
    print(f"# python {platform.python_version()}, numpy {np.__version__}, "
          f"axelrod {axl.__version__}, {platform.machine()}")
    print()
    print("| implementation | seconds | matches x repetitions / s |")
    print("|---|---|---|")
    k = len(names)
    n_matches = k * (k + 1) // 2 * args.repetitions
    for label, t in (("distsafe round_robin", t_ours), ("axelrod Tournament.play", t_axl)):
        print(f"| {label} | {t:.4f} | {n_matches / t:,.0f} |")
    print()
    print(f"speed-up (axelrod / ours): {t_axl / t_ours:.1f}x")

    assert ours is not None and theirs is not None
    ours_m = np.asarray(ours.payoff_matrix, dtype=float)
    axl_m = np.asarray(theirs.payoff_matrix, dtype=float)
    det = [i for i, n in enumerate(names)
           if not make_strategy(n).classifier["stochastic"]]
    sto = [i for i in range(k) if i not in det]
    gap_det = float(np.abs(ours_m[np.ix_(det, det)] - axl_m[np.ix_(det, det)]).max())
    equal = bool(np.allclose(ours_m[np.ix_(det, det)], axl_m[np.ix_(det, det)],
                             rtol=0, atol=1e-12))
    print(f"payoff matrix on the deterministic strategies ({', '.join(names[i] for i in det)}):"
          f" {'EQUAL' if equal else 'DIFFERENT'} to axelrod's (max |gap| {gap_det:.3g})")
    if sto:
        rows = np.zeros((k, k), dtype=bool)
        rows[sto, :] = True
        rows[:, sto] = True
        gap_sto = float(np.abs(ours_m - axl_m)[rows].max())
        print(f"entries involving stochastic strategies ({', '.join(names[i] for i in sto)}): "
              f"max |gap| {gap_sto:.3f} (different random streams)")
    ours_rank = ours.ranked_names
    axl_rank = [names[i] for i in theirs.ranking]  # axelrod ranks player indices
    print(f"ranking ours:    {ours_rank}")
    print(f"ranking axelrod: {axl_rank}")
    if not args.all:
        print()
        print(ours.table())
    return 0 if equal else 1


# ---------------------------------------------------------------------- the environment
class DilemmaCase:
    """dilemma-v0 on a static scale-free network, replaying pre-drawn valid actions."""

    def __init__(self, n: int, steps: int, seed: int, **config) -> None:
        n_epochs = 1_000  # long episodes: resets (untimed) are rare
        self.env = envs.make("dilemma-v0", n_agents=n, n_epochs=n_epochs,
                             steps_per_epoch=STEPS_PER_EPOCH,
                             network={"topology": "scale_free", "m": 3}, **config)
        self.seed = seed
        t0 = time.perf_counter()
        self.env.reset(seed=seed)
        self.reset_s = time.perf_counter() - t0
        rng = np.random.default_rng(seed)
        self.actions = [self.env.sample_actions(rng) for _ in range(steps)]
        names = self.env.possible_agents
        self.dicts = [dict(zip(names, a)) for a in self.actions]  # per-agent action vectors

    def _live(self, steps: int) -> None:
        env = self.env
        if env.t + steps > env.max_steps:  # same seed: same network, the actions stay valid
            env.reset(seed=self.seed)

    def run(self, door: str) -> float:
        """Seconds per step over the pre-drawn actions through ``door``."""
        env = self.env
        self._live(len(self.actions))
        clock = time.perf_counter
        if door == "dict":
            step = env.step
            t0 = clock()
            for d in self.dicts:
                step(d)
        else:
            validate = door == "validate"
            step_arrays = env.step_arrays
            t0 = clock()
            for a in self.actions:
                step_arrays(a, validate=validate)
        return (clock() - t0) / len(self.actions)


class SandboxCase:
    """sandbox-v0 as ``benchmarks/bench_step.py`` measures it (policies untimed)."""

    def __init__(self, n: int, steps: int, seed: int) -> None:
        import bench_step

        self.env, groups, self.reset_s = bench_step.build(n, 10**6, seed=seed)
        self.driver = bench_step.Driver(self.env, groups, seed)
        self.steps = steps

    def run(self, door: str) -> float:
        t_step, _ = self.driver.run(self.steps, door)
        return t_step / self.steps


def dilemma_part(args: argparse.Namespace) -> dict:
    """Time every variant, interleaved; print the table; return the figures."""
    n, steps, seed = args.agents, args.steps, 0
    base = DilemmaCase(n, steps, seed)
    noisy = DilemmaCase(n, steps, seed, noise=0.05, perception_noise=0.1)
    sandbox = SandboxCase(n, steps, seed)
    variants: dict[str, tuple[DilemmaCase | SandboxCase, str]] = {
        "dilemma step_arrays (validate=False)": (base, "arrays"),
        "dilemma step_arrays (validate=True)": (base, "validate"),
        "dilemma env.step (dict)": (base, "dict"),
        "dilemma step_arrays, noise 0.05 + perception 0.1": (noisy, "arrays"),
        "sandbox step_arrays (validate=False)": (sandbox, "arrays"),
        "sandbox env.step (dict)": (sandbox, "dict"),
    }
    names = list(variants)
    for case, door in variants.values():  # warm-up, untimed
        case.run(door)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.env_repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        for name in order:
            case, door = variants[name]
            gc.collect()
            times[name].append(case.run(door))
    med = {k: statistics.median(v) for k, v in times.items()}
    env = base.env
    games = len(env.last_batch) // 2
    net = env.network
    print(f"# dilemma-v0: {n} agents, scale_free m=3 ({net.n_edges} edges, max degree "
          f"{int(net.degree.max())}), K={env.K}: {games} games a round; {steps} steps per "
          f"variant per repeat, median of {args.env_repeats}, interleaved")
    print(f"# sandbox-v0 reference: {n} agents as in bench_step.py (scale_free m=2, mixed "
          f"scripted population; policies untimed)")
    print(f"# python {platform.python_version()}, numpy {np.__version__}, "
          f"{_cpu()}, {_nproc()} cpus")
    print()
    print("| variant | µs/step | agent-steps/s | games/s |")
    print("|---|---:|---:|---:|")
    for k in names:
        g = f"{games / med[k] / 1e6:.2f} M" if k.startswith("dilemma") else "–"
        print(f"| {k} | {1e6 * med[k]:.0f} | {n / med[k] / 1e6:.2f} M | {g} |")
    arr = n / med[names[0]]
    dct = n / med["dilemma env.step (dict)"]
    sb_arr = med["sandbox step_arrays (validate=False)"]
    sb_dict = med["sandbox env.step (dict)"]
    ratios = {
        "validate_over_no_validate": med[names[1]] / med[names[0]],
        "dict_over_arrays": med["dilemma env.step (dict)"] / med[names[0]],
        "noise_over_no_noise": med[names[3]] / med[names[0]],
        "dilemma_arrays_over_sandbox_arrays": med[names[0]] / sb_arr,
        "dilemma_dict_over_sandbox_dict": med["dilemma env.step (dict)"] / sb_dict,
    }
    print()
    print(f"- step_arrays: {arr / 1e6:.2f} M agent-steps/s (target >= "
          f"{TARGET_ARRAYS / 1e6:.0f} M: {'met' if arr >= TARGET_ARRAYS else 'NOT met'}); "
          f"with validation {n / med[names[1]] / 1e6:.2f} M")
    print(f"- env.step: {dct / 1e6:.2f} M agent-steps/s (target >= {TARGET_DICT / 1e6:.0f} M: "
          f"{'met' if dct >= TARGET_DICT else 'NOT met'})")
    print(f"- time per step, ratios: validate=True / False "
          f"{ratios['validate_over_no_validate']:.2f}x; env.step / step_arrays "
          f"{ratios['dict_over_arrays']:.2f}x; noise / no noise "
          f"{ratios['noise_over_no_noise']:.2f}x; dilemma / sandbox: step_arrays "
          f"{ratios['dilemma_arrays_over_sandbox_arrays']:.2f}x, env.step "
          f"{ratios['dilemma_dict_over_sandbox_dict']:.2f}x")
    return {"n_agents": n, "steps": steps, "repeats": args.env_repeats,
            "edges": int(net.n_edges), "games_per_step": games, "K": env.K,
            "median_s": med, "all_s": times, "ratios": ratios,
            "step_arrays_rate": arr, "step_rate": dct,
            "targets_met": {"step_arrays": arr >= TARGET_ARRAYS, "env.step": dct >= TARGET_DICT}}


def _nproc() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count()


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - non-Linux
        pass
    return platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--repetitions", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--all", action="store_true", help="add TF2T, GTFT and ALT")
    ap.add_argument("--no-install", action="store_true",
                    help="fail instead of installing axelrod when it is missing")
    ap.add_argument("--only", choices=["tournament", "dilemma"], default=None,
                    help="run one part (default: both)")
    ap.add_argument("--agents", type=int, default=1000, help="dilemma part: agents")
    ap.add_argument("--steps", type=int, default=100,
                    help="dilemma part: timed steps per variant per repeat")
    ap.add_argument("--env-repeats", type=int, default=15,
                    help="dilemma part: repeats (median reported)")
    ap.add_argument("--quick", action="store_true",
                    help="dilemma part smoke run: 50 agents, 5 steps, 2 repeats")
    ap.add_argument("--json", type=Path, default=None, help="write the dilemma figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.agents, args.steps, args.env_repeats = 50, 5, 2
    code = 0
    if args.only in (None, "tournament"):
        code = tournament_part(args)
    if args.only in (None, "dilemma"):
        if args.only is None:
            print()
        figures = dilemma_part(args)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"argv": sys.argv, "dilemma": figures},
                                            indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
