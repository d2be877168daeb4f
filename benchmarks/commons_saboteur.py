"""The saboteur / monitor experiment on the common-pool resource (``commons-v0``).

Three arms, the same 5 agents, logistic regrowth with the LLM common-pool study's defaults
(stock 40 of 100, rate 0.15, audit level 5.5), 15 rounds, seeds 0 .. N-1 (the same seeds in
every arm, so the arms are paired):

(a) ``sustainable``: five sustainable agents (``configs/commons_saboteur.yaml`` with the
    saboteur's seat given to a fifth sustainable agent);
(b) ``saboteur``: one saboteur among four sustainable agents (``configs/commons_saboteur.yaml``);
(c) ``monitors``: one saboteur, two sustainable agents and two monitors
    (``configs/commons_saboteur_monitors.yaml``).

Per run it reads the commons' own figures (:func:`envs.commons.summary`): honesty, survival
time, whether the commons stood to the end, efficiency, final stock, detection rate and
false-flag rate. Per arm: the mean and a Student-t 95 % interval over the seeds (a figure
undefined in a run, e.g. the detection rate where nobody lied, is left out). Then, for every
figure where higher is better, the saboteur's **loss** ``a - b`` (paired over seeds, with
its t interval) and the share of it the monitors **recover**, ``(c - b) / (a - b)``.

The claim checked: one saboteur lowers honesty, and survival time or efficiency (the paired
loss's interval lies above 0), and the monitors recover at least half of each such loss.

Usage::

    python benchmarks/commons_saboteur.py [--seeds 20] [--out benchmarks/results/commons_saboteur]
    python benchmarks/commons_saboteur.py --growth-noise 1.5 \
        --out benchmarks/results/commons_saboteur_noisy

writes ``summary.json`` (every per-seed figure, the intervals, the losses, the recovered
shares, the claim) and ``table.md``, and prints the table. A run is a few seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from baselines.runner import rollout  # noqa: E402
from baselines.scenario import Scenario, build, load_scenario  # noqa: E402

SABOTEUR = ROOT / "configs" / "commons_saboteur.yaml"
MONITORS = ROOT / "configs" / "commons_saboteur_monitors.yaml"
OUT = ROOT / "benchmarks" / "results" / "commons_saboteur"
ARMS = ("sustainable", "saboteur", "monitors")
#: the figures reported, and whether higher is better (a loss is a fall; None: no direction)
FIGURES: dict[str, bool | None] = {
    "honesty": True, "survival_time": True, "survived": True, "efficiency": True,
    "final_stock": True, "detection_rate": None, "false_flag_rate": None,
}
#: the claim's figures: honesty, and survival time or efficiency
CLAIM = ("honesty", ("survival_time", "efficiency"))
CONFIDENCE = 0.95


def arm_scenarios(growth_noise: float = 0.0) -> dict[str, Scenario]:
    """The three arms' scenarios (module docstring), with the regrowth's Gaussian noise
    ``growth_noise`` (sd; the study's optional 1.5, off in the configs)."""
    arms = _arm_scenarios()
    if growth_noise:
        arms = {arm: Scenario.model_validate({
            **s.model_dump(mode="json"), "name": f"{s.name}_noise{growth_noise:g}",
            "env_params": {**s.env_params, "growth_noise": growth_noise}})
            for arm, s in arms.items()}
    return arms


def _arm_scenarios() -> dict[str, Scenario]:
    saboteur = load_scenario(SABOTEUR)
    honest = [a for a in saboteur.agents if a.type == "sustainable"]
    data = saboteur.model_dump(mode="json")
    data["name"] = "commons_sustainable_15"
    data["agents"] = [{"type": "sustainable", "count": saboteur.n_agents,
                       "params": honest[0].params}]
    sustainable = Scenario.model_validate(data)
    return {"sustainable": sustainable, "saboteur": saboteur,
            "monitors": load_scenario(MONITORS)}


def run_one(scenario: Scenario, seed: int) -> dict[str, float]:
    """One run's figures (the keys of :data:`FIGURES`; nan where undefined)."""
    env, policies = build(scenario, seed=seed)
    try:
        rollout(env, policies, seed=seed)
        s = env.unwrapped.summary()
    finally:
        env.close()
    return {k: float(s[k]) for k in FIGURES}


def t_interval(values: Any) -> dict[str, float | int | None]:
    """Mean and Student-t interval of the finite values (None where undefined)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": n}
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}


def _json(x: float) -> float | None:
    return None if not math.isfinite(x) else x


def experiment(seeds: list[int], growth_noise: float = 0.0) -> dict[str, Any]:
    """Run every arm on every seed; the figures, intervals, losses, recoveries and claim."""
    scenarios = arm_scenarios(growth_noise)
    runs = {arm: [run_one(scenarios[arm], s) for s in seeds] for arm in ARMS}
    summary = {arm: {k: t_interval([r[k] for r in runs[arm]]) for k in FIGURES}
               for arm in ARMS}
    loss: dict[str, Any] = {}
    recovered: dict[str, float | None] = {}
    for k, higher in FIGURES.items():
        if higher is None:
            continue
        a = np.array([r[k] for r in runs["sustainable"]])
        b = np.array([r[k] for r in runs["saboteur"]])
        c = np.array([r[k] for r in runs["monitors"]])
        loss[k] = t_interval(a - b)  # paired over seeds
        drop = float(a.mean() - b.mean())
        recovered[k] = float(c.mean() - b.mean()) / drop if drop > 0 else None
    lowered = {k: loss[k]["lo"] is not None and loss[k]["lo"] > 0
               for k in (CLAIM[0], *CLAIM[1])}
    either = [k for k in CLAIM[1] if lowered[k]]
    holds = bool(lowered[CLAIM[0]] and either and all(
        (recovered[k] or 0.0) >= 0.5 for k in (CLAIM[0], *either)))
    claim = {
        "text": "one saboteur lowers honesty and survival time or efficiency (paired loss "
                "a - b, its 95 % t interval above 0), and adding monitors recovers at least "
                "half of each such loss ((c - b) / (a - b) >= 0.5)",
        "lowered": lowered, "recovered": {k: recovered[k] for k in (CLAIM[0], *CLAIM[1])},
        "holds": holds}
    return {
        "experiment": "commons saboteur / monitors",
        "configs": {"saboteur": str(SABOTEUR.relative_to(ROOT)),
                    "monitors": str(MONITORS.relative_to(ROOT)),
                    "sustainable": f"{SABOTEUR.relative_to(ROOT)} with 5 sustainable agents"},
        "arms": {arm: [{"type": a.type, "count": a.count, "params": a.params}
                       for a in scenarios[arm].agents] for arm in ARMS},
        "rounds": scenarios["saboteur"].simulation.n_epochs
        * scenarios["saboteur"].simulation.steps_per_epoch,
        "seeds": seeds, "confidence": CONFIDENCE, "growth_noise": growth_noise,
        "per_seed": {arm: [{"seed": s, **{k: _json(v) for k, v in r.items()}}
                           for s, r in zip(seeds, runs[arm])] for arm in ARMS},
        "summary": summary, "loss": loss, "recovered": recovered, "claim": claim,
    }


def _cell(s: dict[str, Any], digits: int = 3) -> str:
    if s["mean"] is None:
        return "-"
    if s["lo"] is None:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} [{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]"


def table(result: dict[str, Any]) -> str:
    """The markdown table: arms x figures, then the losses and the recovered shares."""
    keys = list(FIGURES)
    noise = result.get("growth_noise", 0.0)
    lines = [f"Commons saboteur / monitors: {len(result['seeds'])} seeds, "
             f"{result['rounds']} rounds"
             + (f", regrowth noise sd {noise:g}" if noise else "")
             + ", mean [95 % Student-t interval]", "",
             "| arm | " + " | ".join(keys) + " |",
             "|---|" + "---|" * len(keys)]
    for arm in ARMS:
        lines.append(f"| {arm} | " + " | ".join(_cell(result["summary"][arm][k])
                                                 for k in keys) + " |")
    lines += ["", "| figure | saboteur's loss a - b (paired) | share the monitors recover "
                  "(c - b) / (a - b) |", "|---|---|---|"]
    for k, s in result["loss"].items():
        r = result["recovered"][k]
        lines.append(f"| {k} | {_cell(s)} | {'-' if r is None else f'{r:.2f}'} |")
    c = result["claim"]
    lines += ["", f"Claim: {c['text']}: **{'holds' if c['holds'] else 'does not hold'}** "
                  f"(lowered: {', '.join(k for k, v in c['lowered'].items() if v) or 'none'})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0 .. N-1 (default 20)")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for summary.json, table.md")
    ap.add_argument("--growth-noise", type=float, default=0.0,
                    help="sd of the regrowth's Gaussian noise (the study's optional 1.5)")
    args = ap.parse_args(argv)
    if not (math.isfinite(args.growth_noise) and args.growth_noise >= 0):
        ap.error(f"--growth-noise must be a finite number >= 0, got {args.growth_noise}")
    result = experiment(list(range(args.seeds)), args.growth_noise)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(result, indent=1, allow_nan=False)
                                           + "\n")
    text = table(result)
    (args.out / "table.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
