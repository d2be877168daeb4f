"""Concurrency of LLM agents: 32 agents x 10 steps against a local server at 200 ms a call.

Runs ``dilemma-v0`` with 32 ``type: llm`` agents (one scenario entry, so one batch of 32
concurrent requests per step, ``concurrency: 32``) on a ring for 10 steps, through the real
litellm call path against :class:`llm_policies.fake_server.FakeOpenAIServer` (in a process of
its own, as a provider is) answering every request after ``--latency`` seconds. The lower
bound is ``steps x latency`` (every step waits for its slowest reply); the target is within
1.5x of it. In the same process, a reference
run with ``concurrency: 1`` shows what sequential calls would cost (a few steps only).

Usage::

    python benchmarks/bench_llm.py                 # 32 agents, 10 steps, 200 ms
    python benchmarks/bench_llm.py --agents 8 --steps 3 --latency 0.05   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.runner import rollout  # noqa: E402
from baselines.scenario import build, parse_scenario  # noqa: E402

KEY_VAR = "DISTSAFE_BENCH_KEY"


def _run(url: str, agents: int, steps: int, concurrency: int, cache_dir: str) -> float:
    scenario = parse_scenario({
        "name": "bench_llm", "env": "dilemma-v0",
        "agents": [{"type": "llm", "count": agents, "llm": {
            "model": "openai/fake", "api_base": url, "api_key_env": KEY_VAR,
            "concurrency": concurrency, "retries": 0, "timeout": 30}}],
        "network": {"topology": "ring"},
        "simulation": {"n_epochs": 1, "steps_per_epoch": steps, "seed": 0}})
    env, policies = build(scenario)
    for p in set(policies.values()):
        p.bind_run(cache_dir)   # a fresh cache: every call goes to the server
    t0 = time.perf_counter()
    rollout(env, policies, seed=0)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    os.environ[KEY_VAR] = "sk-bench-not-a-key"
    # the server runs in its own process, as a provider would: in this one it would share
    # the interpreter lock with the client and slow it down
    import subprocess
    import tempfile

    root = str(Path(__file__).resolve().parents[1])
    code = (f"import sys, json; sys.path.insert(0, {root!r})\n"
            "from llm_policies.fake_server import FakeOpenAIServer\n"
            "reply = json.dumps({'moves': {}, 'reasoning': 'bench'})\n"
            f"with FakeOpenAIServer(replies=lambda body: reply, latency={args.latency!r}) "
            "as s:\n"
            "    print(s.url, flush=True); sys.stdin.read()\n"
            "    print(s.max_in_flight, flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    times, seq = [], []
    try:
        _run(url, 2, 1, 2, tempfile.mkdtemp())           # warm-up (imports, event loop)
        for _ in range(args.repeats):
            times.append(_run(url, args.agents, args.steps, args.agents, tempfile.mkdtemp()))
        seq.append(_run(url, args.agents, 1, 1, tempfile.mkdtemp()))
    finally:
        out, _ = proc.communicate("", timeout=30)
    in_flight = int(out.split()[-1])
    bound = args.steps * args.latency
    result = {
        "agents": args.agents, "steps": args.steps, "latency_s": args.latency,
        "lower_bound_s": bound, "median_s": statistics.median(times), "runs_s": times,
        "ratio_to_bound": statistics.median(times) / bound, "max_in_flight": in_flight,
        "sequential_one_step_s": seq[0],
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "nproc": os.cpu_count()}}
    print(f"{args.agents} LLM agents x {args.steps} steps at {args.latency * 1000:.0f} ms a "
          f"call: median {result['median_s']:.3f} s over {args.repeats} runs "
          f"({', '.join(f'{t:.3f}' for t in times)}); lower bound {bound:.3f} s; ratio "
          f"{result['ratio_to_bound']:.2f} (target <= 1.5); max requests in flight "
          f"{in_flight}; one step with concurrency 1: {seq[0]:.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
