"""Our vectorised round robin against the Axelrod library's ``Tournament``, in one process.

Both play the same strategies (by default the classic seven: AC, AD, TFT, STFT, GRIM, WSLS, RND;
``--all`` adds TF2T, GTFT and the alternator), ``turns=200``, ``repetitions=10``, noise-free,
classic payoffs, timed interleaved (median of ``--repeats``). Axelrod runs serially
(``processes=None``), without its progress bar; ours is :func:`baselines.tournament.round_robin`.
It prints both times, the ratio and whether the two payoff matrices agree on the deterministic
strategies (exactly, up to float rounding) plus the largest gap on the stochastic ones.

Axelrod is not a dependency of distsafe: if it is missing, this script installs it into the
running interpreter's environment with pip (``--no-install`` refuses instead).

Usage::

    python benchmarks/bench_tournament.py [--turns 200] [--repetitions 10] [--repeats 5] [--all]
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baselines.strategies import CLASSIC, make_strategy  # noqa: E402
from baselines.tournament import round_robin  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--repetitions", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--all", action="store_true", help="add TF2T, GTFT and ALT")
    ap.add_argument("--no-install", action="store_true",
                    help="fail instead of installing axelrod when it is missing")
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
