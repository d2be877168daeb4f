"""Scaling of ``distsafe sweep`` on the local backend: 1 worker against 2, in one process.

The sweep: ``configs/baseline.yaml`` with ``--param governance.random_audit.probability=0,0.1,
0.2,0.3`` over 16 seeds (64 runs of 10 epochs x 10 steps), through
:func:`baselines.sweep.sweep` with ``workers=1`` (every run in this process) and ``workers=2``
(a process pool of two), ``--repeats`` times each, interleaved (the order alternating), after
one untimed warm-up of each. A timing is the whole call: planning (every setting validated and
preflighted), the runs, collecting the rows; nothing is written (``out=None``: the files and
the report cost the same whatever the workers). Beside each timing: the CPU seconds that
other processes used meanwhile (``/proc/stat`` less this process and its workers), to tell a
quiet repeat from a disturbed one. The speed-up is the ratio of the medians; the
script also checks that both give identical per-run metrics. Target (the sweeps issue):
>= 1.7x with 2 workers on the 2-core machine.

Usage::

    python benchmarks/bench_sweep.py [--seeds 16] [--repeats 5] [--json out.json]
    python benchmarks/bench_sweep.py --quick     # smoke run: 2 values x 2 seeds, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from baselines.sweep import sweep  # noqa: E402

TARGET = 1.7


def _busy() -> float:
    """CPU seconds used so far by every process on the machine (Linux; else nan)."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / os.sysconf("SC_CLK_TCK")


def _ours() -> float:
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                  resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


OTHERS: dict[int, list[float]] = {1: [], 2: []}


def timed(config: Path, params: list[str], seeds: int, workers: int) -> tuple[float, str]:
    busy, ours = _busy(), _ours()
    t0 = time.perf_counter()
    result = sweep(config, params, seeds, workers=workers)
    wall = time.perf_counter() - t0
    OTHERS[workers].append(max(0.0, (_busy() - busy) - (_ours() - ours)))
    if result.failures:
        raise SystemExit(f"bench_sweep: {len(result.failures)} runs failed: "
                         f"{result.failures[0]['error']}")
    rows = json.dumps([{k: v for k, v in r.items() if k != "error"} for r in result.rows],
                      sort_keys=True)
    return wall, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "baseline.yaml"))
    ap.add_argument("--param", action="append", default=None,
                    help="PATH=V1,V2,... (default: governance.random_audit.probability="
                         "0,0.1,0.2,0.3)")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 values x 2 seeds, 1 repeat")
    ap.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = ap.parse_args(argv)
    params = args.param or ["governance.random_audit.probability=0,0.1,0.2,0.3"]
    if args.quick:
        params, args.seeds, args.repeats = ["governance.random_audit.probability=0,0.1"], 2, 1
    config = Path(args.config)
    n_values = 1
    for p in params:
        n_values *= len(p.partition("=")[2].split(","))
    runs = n_values * args.seeds
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; load average {load:.2f} at the start")
    print(f"# sweep {config.name} {' '.join('--param ' + p for p in params)} --seeds "
          f"{args.seeds}: {runs} runs; {args.repeats} repeats, interleaved")
    reference = {w: timed(config, params, args.seeds, w)[1] for w in (1, 2)}  # warm-up
    if reference[1] != reference[2]:
        raise SystemExit("bench_sweep: 1 and 2 workers gave different per-run metrics")
    times: dict[int, list[float]] = {1: [], 2: []}
    for v in OTHERS.values():
        v.clear()
    print("| repeat | 1 worker (s) | 2 workers (s) | speed-up | other processes' CPU (s) |")
    print("|---:|---:|---:|---:|---:|")
    for rep in range(args.repeats):
        for w in ((1, 2) if rep % 2 == 0 else (2, 1)):
            wall, rows = timed(config, params, args.seeds, w)
            if rows != reference[1]:
                raise SystemExit(f"bench_sweep: workers={w} gave different per-run metrics")
            times[w].append(wall)
        print(f"| {rep + 1} | {times[1][-1]:.3f} | {times[2][-1]:.3f} | "
              f"{times[1][-1] / times[2][-1]:.2f}x | {OTHERS[1][-1]:.2f}, "
              f"{OTHERS[2][-1]:.2f} |")
    m1, m2 = statistics.median(times[1]), statistics.median(times[2])
    speedup = m1 / m2
    print(f"| median | {m1:.3f} | {m2:.3f} | {speedup:.2f}x | |")
    print(f"speed-up with 2 workers: {speedup:.2f}x (ratio of the medians; target >= "
          f"{TARGET}x); {runs / m1:.1f} runs/s on 1 worker, {runs / m2:.1f} on 2; identical "
          "per-run metrics")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config": str(config), "params": params, "seeds": args.seeds, "runs": runs,
            "repeats": args.repeats, "times_s": {str(k): v for k, v in times.items()},
            "median_s": {"1": m1, "2": m2}, "speedup": speedup, "target": TARGET,
            "load_average_start": load,
            "other_processes_cpu_s": {str(k): v for k, v in OTHERS.items()},
            "machine": {"processor": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "python": platform.python_version()},
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
