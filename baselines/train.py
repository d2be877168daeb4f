"""``distsafe train``: train a learning agent among scripted ones, then evaluate it.

A training config is a scenario (population, network, payoffs, governance, length) in which
one agents entry learns (``{type: rl, count: N, learn: true}``) and a ``train:`` block says
how (:class:`baselines.scenario.TrainSpec`)::

    agents:
      - {type: honest, count: 3}
      - {type: opportunistic, count: 2}
      - {type: rl, count: 1, learn: true}
    governance: {...}
    train:
      algorithm: maskable_ppo
      total_timesteps: 200000
      copies: 8
      seed: 0
      hyperparams: {n_steps: 128, batch_size: 256}
      eval: {seeds: 10, against: [deceptive, adversarial]}

:func:`train` builds ``copies`` copies of the governed environment (the other agents seeded
per copy), steps them through a :class:`wrappers.vec_env.SharedPolicyVecEnv` (the learning
agents share one model), trains, and writes into the training folder:

======================  ===================================================================
``model.zip``           the model (SB3's zip with ``distsafe.json``: algorithm, env, layout);
                        play it with ``{type: rl, model: .../model.zip}``
``curve.csv`` / ``.png``  the learning curve: per rollout, timesteps, mean episode return of
                        the learning agents (their reward summed over an episode, with the
                        ``harm_bonus`` of a harm-seeking learner), masked
                        choices per learner step, wall time, frames per second, share of
                        time in the environment
``invalid_actions.csv`` per copy, episode and epoch: the learners' steps that chose a value
                        the mask forbade (the environment ignored them), of all their steps
``config.yaml``         the resolved config, seed included
``train.json``          algorithm, budget, seconds, frames per second, environment share
``eval.json`` / ``.csv``  the evaluation (:func:`evaluate`), and ``eval/`` its event logs
======================  ===================================================================

The evaluation puts the trained agent, then each scripted policy of ``eval.against``, in the
learner's place, under the same governance, over ``eval.seeds`` seeds (run ``k`` uses the
scenario's seed + 1000 + ``k``: seeds never used in training), and reads every figure from the
runs' event logs: the learner's total reward (what reached its resources: payoffs minus
effort, dressing and governance costs) with a Student-t 95 % interval, its interaction
payoff, and its behaviour: proposals per step, effort and dressing chosen, acceptance, the
true harm rate of its accepted work, how often it was audited and caught, how close its
circuit-breaker statistic (mean ``1 - p`` over its last ``window`` proposals) ran to the
threshold, and freezes.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from baselines.scenario import ConfigError, Scenario, build

__all__ = ["BEHAVIOUR", "behaviour_from_log", "evaluate", "learner_entry", "train",
           "train_with_rllib"]

#: the behaviour figures of one evaluation run, in table order: (key, title)
BEHAVIOUR: tuple[tuple[str, str], ...] = (
    ("reward", "reward"), ("payoff", "payoff"), ("proposals_per_step", "proposals/step"),
    ("effort", "effort"), ("dressing", "dressing"), ("full_dressing", "fully dressed"),
    ("acceptance", "accepted"), ("mean_p", "mean p"), ("harm_rate", "true harm rate"),
    ("harm_done", "harmful accepted"),
    ("audited", "audited"), ("caught", "caught"), ("fines", "fines"),
    ("breaker_mean", "breaker stat"), ("breaker_max", "breaker max"),
    ("breaker_over", "checks >= threshold"), ("freezes", "freezes"),
    ("frozen_steps", "frozen steps"), ("invalid", "masked choices"),
)
#: the same for a commons run (read from its rounds' records, ``step_state``)
COMMONS_BEHAVIOUR: tuple[tuple[str, str], ...] = (
    ("reward", "reward"), ("gain", "credits gained"), ("taken", "taken/round"),
    ("over_use", "over fair share"), ("honesty", "honesty"), ("mean_p", "mean p"),
    ("audited", "audited"), ("caught", "caught"), ("fines", "fines"),
    ("lever_caught", "caught by levers"), ("lever_penalties", "lever penalties"),
    ("accused", "accused"), ("accusing", "accusations made"), ("eliminated", "eliminated"),
    ("survival", "survival time"), ("invalid", "masked choices"),
)
EVAL_SEED_OFFSET = 1000


def figures_of(result: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The behaviour figures an evaluation holds (the commons' or the interaction
    variants')."""
    return COMMONS_BEHAVIOUR if result.get("variant") == "commons" else BEHAVIOUR


def learner_entry(scenario: Scenario) -> tuple[int, list[str]]:
    """The index of the learning entry and the names of its agents."""
    first = 0
    for index, spec in enumerate(scenario.agents):
        if spec.params.get("learn"):
            return index, [f"agent_{first + k}" for k in range(spec.count)]
        first += spec.count
    raise ValueError(f"scenario {scenario.name!r} has no agents entry with learn: true")


def _derive(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


# --------------------------------------------------------------------------- training
def _make_model(spec: Any, venv: Any, source: str, start: str | None) -> Any:
    """The SB3 model the ``train:`` block asks for, its hyperparameters checked by name."""
    from baselines.rl import algorithm_class

    cls = algorithm_class(spec.algorithm)
    fixed = {"policy", "env", "seed", "verbose", "policy_kwargs", "device", "_init_setup_model",
             "tensorboard_log"}
    allowed = sorted(set(inspect.signature(cls.__init__).parameters) - fixed - {"self"})
    unknown = [k for k in spec.hyperparams if k not in allowed]
    if unknown:
        raise ConfigError(source, problems=[(f"train.hyperparams.{k}", (
            f"not a parameter of {cls.__name__}; allowed: {', '.join(allowed)}"))
            for k in unknown])
    if start is not None:
        return cls.load(start, env=venv, device="cpu", **spec.hyperparams)
    policy: Any = "MlpPolicy"  # DQN; PPO, A2C, MaskablePPO: the fused MultiDiscrete one
    if spec.algorithm != "dqn":
        from baselines.fused import FusedMlpPolicy, MaskableFusedMlpPolicy

        policy = MaskableFusedMlpPolicy if spec.algorithm == "maskable_ppo" else FusedMlpPolicy
    try:
        return cls(policy, venv, seed=spec.seed, verbose=0, device="cpu",
                   policy_kwargs={"net_arch": list(spec.net_arch)}, **spec.hyperparams)
    except (ValueError, TypeError, AssertionError) as e:
        raise ConfigError(source, "train.hyperparams", (
            f"{cls.__name__} refuses them: {type(e).__name__}: {' '.join(str(e).split())}")) \
            from None


def _harm_bonus(bonus: float) -> Callable[[Any, np.ndarray], np.ndarray]:
    """Reward shaping of a harm-seeking learner: ``bonus`` per accepted harmful interaction
    it initiated in the step (the hidden truth of its own work, which it knows)."""
    def shaping(base: Any, rows: np.ndarray) -> np.ndarray:
        b = base.last_batch
        if not len(b):
            return np.zeros(len(rows))
        harmful = b.accepted & (b.v < 0)
        counts = np.bincount(b.initiator[harmful], minlength=base.config.n_agents)
        return bonus * counts[rows]
    return shaping


class _Curve:
    """Collects the learning curve: one row per rollout (SB3 callback, built lazily)."""

    def __init__(self, venv: Any, total: int, on_progress: Callable[[int, int], None] | None):
        self.venv, self.total, self.on_progress = venv, total, on_progress
        self.rows: list[dict[str, float]] = []
        self.returns: list[float] = []
        self.start = time.perf_counter()
        self.invalid_seen = 0

    def callback(self) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        curve = self

        class Callback(BaseCallback):
            def _on_step(self) -> bool:
                for info, done in zip(self.locals["infos"], self.locals["dones"]):
                    if done and "episode" in info:
                        curve.returns.append(info["episode"]["r"])
                if curve.on_progress is not None:
                    curve.on_progress(min(self.num_timesteps, curve.total), curve.total)
                return True

            def _on_rollout_end(self) -> None:
                curve.row(self.num_timesteps)

        return Callback()

    def row(self, timesteps: int) -> None:
        log = self.venv.invalid_log[self.invalid_seen:]
        self.invalid_seen = len(self.venv.invalid_log)
        steps = sum(r["learner_steps"] for r in log)
        elapsed = time.perf_counter() - self.start
        self.rows.append({
            "timesteps": float(timesteps),
            "episodes": float(len(self.returns)),
            "episode_return_mean": (float(np.mean(self.returns)) if self.returns
                                    else math.nan),
            "invalid_per_step": (sum(r["invalid"] for r in log) / steps if steps
                                 else math.nan),
            "seconds": elapsed,
            "fps": timesteps / elapsed if elapsed > 0 else math.nan,
            "env_share": self.venv.env_seconds / elapsed if elapsed > 0 else math.nan})
        self.returns = []


def train(scenario: Scenario, source: str, folder: Any, *,
          on_progress: Callable[[int, int], None] | None = None,
          on_eval_progress: Callable[[int, int], None] | None = None,
          evaluate_after: bool = True) -> dict[str, Any]:
    """Train the scenario's learning entry and evaluate it (see the module docstring).

    Args:
        scenario: A training config (a scenario with a ``train:`` block).
        source: Where it came from, for messages.
        folder: A locked :class:`baselines.runfolder.RunFolder` to write into.
        on_progress: Called with ``(timesteps done, total)`` during training.
        on_eval_progress: Called with ``(runs done, runs)`` during the evaluation.
        evaluate_after: Run the evaluation (``eval.json``) after training.

    Returns:
        ``{"train": what train.json holds, "eval": the evaluation or None}``. An interrupt
        (Ctrl-C, SIGTERM) during training stops it, saves the model, curve and summary as
        they are (``"interrupted": true``) and skips the evaluation.
    """
    import torch

    from baselines.jobs import json_default
    from baselines.rl import save_model
    from baselines.runner import metrics_csv_text
    from wrappers.vec_env import SharedPolicyVecEnv

    spec = scenario.train
    if spec is None:
        raise ConfigError(source, "train", "a training config needs a train: block")
    index, learners = learner_entry(scenario)
    start_model = scenario.agents[index].params.get("model")
    torch.manual_seed(spec.seed)
    built = [build(scenario, seed=_derive(spec.seed, c)) for c in range(spec.copies)]
    envs_iter = iter([env for env, _ in built])
    others = [{a: p for a, p in pols.items() if a not in learners} for _, pols in built]
    venv = SharedPolicyVecEnv(lambda: next(envs_iter), learners=learners,
                              others=lambda c: others[c], copies=spec.copies, seed=spec.seed,
                              joint_actions=spec.algorithm == "dqn",
                              reward_shaping=(_harm_bonus(spec.harm_bonus)
                                              if spec.harm_bonus else None))
    model = _make_model(spec, venv, source, start_model)
    curve = _Curve(venv, spec.total_timesteps, on_progress)
    started = time.perf_counter()
    interrupted = False
    try:
        model.learn(spec.total_timesteps, callback=curve.callback())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what was learned so far
        interrupted = True
    seconds = time.perf_counter() - started
    if not curve.rows or curve.rows[-1]["timesteps"] < model.num_timesteps:
        curve.row(model.num_timesteps)
    layout = venv.layout
    meta = {"algorithm": spec.algorithm, "env": layout.env_id, "layout": layout.describe(),
            "learners": learners, "scenario": scenario.name,
            "timesteps": int(model.num_timesteps), "seed": spec.seed,
            "joint_actions": spec.algorithm == "dqn"}
    model_path = save_model(model, folder.path / "model.zip", meta)
    folder.write_text("curve.csv", metrics_csv_text(curve.rows))
    folder.write_text("invalid_actions.csv", metrics_csv_text(venv.invalid_log))
    summary = {
        "algorithm": spec.algorithm, "timesteps": int(model.num_timesteps),
        "harm_bonus": spec.harm_bonus,
        "copies": spec.copies, "learners": learners, "slots": venv.num_envs,
        "seed": spec.seed, "seconds": round(seconds, 3),
        "fps": round(model.num_timesteps / seconds, 1) if seconds > 0 else None,
        "env_seconds": round(venv.env_seconds, 3),
        "env_share": round(venv.env_seconds / seconds, 4) if seconds > 0 else None,
        "invalid_per_step": _rate(venv.invalid_log),
        "torch_threads": torch.get_num_threads(), "interrupted": interrupted}
    folder.write_text("train.json", json.dumps(summary, indent=2) + "\n")
    _plot_curve(curve.rows, folder.path / "curve.png", scenario.name, spec.algorithm)
    venv.close()
    result = None
    if evaluate_after and not interrupted:
        result = evaluate(scenario, model_path, folder.path / "eval",
                          on_progress=on_eval_progress)
        folder.write_text("eval.json", json.dumps(result, indent=2, default=json_default) + "\n")
        folder.write_text("eval.csv", eval_csv(result))
    return {"train": summary, "eval": result}


def rllib_problems(scenario: Scenario) -> list[tuple[str, str]]:
    """What in a training config the RLlib backend cannot train: ``(path, problem)``."""
    spec = scenario.train
    problems = []
    if spec.algorithm not in ("ppo", "maskable_ppo"):
        problems.append(("train.algorithm", f"--backend rllib trains ppo (or maskable_ppo, "
                                            f"as plain ppo); got {spec.algorithm!r}"))
    if spec.harm_bonus:
        problems.append(("train.harm_bonus", "--backend rllib trains on the environment's "
                                             "rewards only; use the sb3 backend for "
                                             "harm_bonus"))
    return problems


def train_with_rllib(scenario: Scenario, source: str, folder: Any, *,
                     on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The same setup trained with Ray RLlib (``distsafe train --backend rllib``): one PPO
    policy shared by the learning agents, the others driven by their policies, the levers
    on; RLlib's checkpoint, curve and ``rllib.json`` go to ``rllib/`` in the folder.

    RLlib trains plain PPO (no action masks: masked choices are ignored by the environment
    and counted); a ``maskable_ppo`` config trains as ``ppo``, others are refused.
    """
    import itertools

    from baselines.rllib_backend import train_rllib

    spec = scenario.train
    problems = rllib_problems(scenario)
    if problems:
        raise ConfigError(source, problems=problems)
    _, learners = learner_entry(scenario)
    counter = itertools.count()

    def make_env() -> Any:  # each environment RLlib makes: its own seeded policies
        return build(scenario, seed=_derive(spec.seed, next(counter)))

    try:
        return train_rllib(make_env, learners, None, algorithm="ppo",
                           total_timesteps=spec.total_timesteps, seed=spec.seed,
                           hyperparams={**spec.hyperparams, "net_arch": list(spec.net_arch)},
                           out=folder.path / "rllib", on_progress=on_progress)
    except ValueError as e:
        raise ConfigError(source, "train", f"RLlib refuses the config: "
                                           f"{' '.join(str(e).split())}") from None


def _rate(log: Sequence[Mapping[str, int]]) -> float | None:
    steps = sum(r["learner_steps"] for r in log)
    return round(sum(r["invalid"] for r in log) / steps, 6) if steps else None


def _plot_curve(rows: Sequence[Mapping[str, float]], path: Path, name: str,
                algorithm: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the analysis extra is missing: CSV only
        return
    x = [r["timesteps"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, [r["episode_return_mean"] for r in rows], marker=".", lw=1)
    ax.set_xlabel("timesteps (learner steps)")
    ax.set_ylabel("mean episode return")
    ax.set_title(f"{name}: {algorithm}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


# --------------------------------------------------------------------------- evaluation
def _candidates(scenario: Scenario, index: int, model_path: Path,
                deterministic: bool) -> list[tuple[str, Scenario]]:
    """The scenario with the learner's entry played by the trained model, then by each
    scripted policy of ``eval.against`` (no ``train:`` block: each is a plain scenario)."""
    from baselines.scenario import AgentSpec

    spec = scenario.train
    count = scenario.agents[index].count
    entries = [("trained", AgentSpec(type="rl", count=count, params={
        "model": str(model_path), "deterministic": deterministic}))]
    entries += [(name, AgentSpec(type=name, count=count)) for name in spec.eval.against]
    out = []
    for label, entry in entries:
        agents = list(scenario.agents)
        agents[index] = entry
        data = scenario.model_dump(mode="json")
        data.update(agents=[a.model_dump(mode="json") for a in agents], train=None)
        out.append((label, Scenario.model_validate(data)))
    return out


def evaluate(scenario: Scenario, model_path: str | Path, out: str | Path, *,
             seeds: int | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Evaluate the trained model against the scripted candidates (module docstring).

    Returns:
        ``{"seeds": [...], "learners": [...], "candidates": {label: {"runs": [per-run
        figures], "summary": {key: {"mean", "lo", "hi", "n"}}}}, "best_scripted": label,
        "verdict": {...}}``.
    """
    from baselines.compare import interval
    from baselines.runner import rollout

    spec = scenario.train
    index, learners = learner_entry(scenario)
    n_seeds = seeds or spec.eval.seeds
    base_seed = (scenario.simulation.seed or 0) + EVAL_SEED_OFFSET
    seed_list = [base_seed + k for k in range(n_seeds)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [int(a.split("_")[1]) for a in learners]
    candidates = _candidates(scenario, index, Path(model_path), spec.eval.deterministic)
    total, done = len(candidates) * n_seeds, 0
    import envs

    result: dict[str, Any] = {"seeds": seed_list, "learners": learners, "candidates": {},
                              "variant": envs.variant(scenario.env)}
    for label, cand in candidates:
        runs = []
        (out / label).mkdir(exist_ok=True)
        for seed in seed_list:
            log = out / label / f"seed_{seed}.jsonl"
            log.unlink(missing_ok=True)
            env, policies = build(cand, seed=seed, event_log=log)
            try:
                rollout(env, policies, seed=seed)
            finally:
                env.close()
            runs.append({"seed": seed, **behaviour_from_log(log, rows, cand)})
            done += 1
            if on_progress is not None:
                on_progress(done, total)
        summary = {}
        for key, _ in figures_of(result):
            s = interval([r[key] for r in runs])
            summary[key] = {"mean": s.mean, "lo": s.lo, "hi": s.hi, "n": s.n}
        result["candidates"][label] = {"runs": runs, "summary": summary}
    scripted = [label for label, _ in candidates[1:]]
    best = max(scripted, key=lambda k: result["candidates"][k]["summary"]["reward"]["mean"])
    t = result["candidates"]["trained"]["summary"]["reward"]
    b = result["candidates"][best]["summary"]["reward"]
    result["best_scripted"] = best
    result["verdict"] = {
        "metric": "reward", "trained": t, "best_scripted": b,
        "trained_higher": t["mean"] > b["mean"],
        "intervals_overlap": not (t["lo"] > b["hi"] or b["lo"] > t["hi"]),
    }
    return result


def behaviour_from_log(path: str | Path, rows: Sequence[int],
                       scenario: Scenario | None = None) -> dict[str, float]:
    """The learner's figures in one run, read from its event log (per learning agent).

    ``rows`` are the learning agents; ``scenario`` gives the circuit breaker's window and
    threshold (absent: the lever's defaults, 10 and 0.7) and the initial resources.
    """
    from envs.core.events import replay

    rep = replay(path)
    cfg = rep.run_start.config
    rows_arr = np.asarray(rows, dtype=np.int64)
    reward, invalid = _seam_figures(rep, rows_arr)
    if rep.step_states and rep.run_start.env.startswith("commons-"):
        return _commons_behaviour(rep, rows_arr, reward, invalid)
    k = len(rows_arr)
    batch = rep.interactions()
    ini = np.isin(batch.initiator, rows_arr)
    cp = np.isin(batch.counterparty, rows_arr)
    acc = batch.accepted.astype(bool)
    ends = rep.epoch_ends
    steps = max(int(rep.run_end.step) + 1 if rep.run_end is not None else 1, 1)
    levels = cfg.get("dressing_levels") or [0.0, 1.0]
    out: dict[str, float] = {
        "reward": reward,
        "payoff": float((batch.payoff_a[ini].sum() + batch.payoff_b[cp].sum()) / k),
        "proposals_per_step": float(ini.sum() / (k * steps)),
        "effort": _mean(batch.effort[ini]),
        "dressing": _mean(batch.dressing[ini]),
        "full_dressing": _mean(batch.dressing[ini] >= max(levels)),
        "acceptance": _mean(acc[ini]),
        "mean_p": _mean(batch.p[ini]),
        "harm_rate": _mean(batch.v[ini & acc] < 0),
        "harm_done": float((ini & acc & (batch.v < 0)).sum() / k),
        "invalid": invalid,
    }
    audited = caught = 0
    fines = 0.0
    freezes = 0
    window, threshold = 10, 0.7
    gov = scenario.governance if scenario is not None else None
    audit = getattr(gov, "random_audit", None) if gov is not None else None
    breaker = getattr(gov, "circuit_breaker", None) if gov is not None else None
    if breaker is not None:
        window, threshold = breaker.window, breaker.threshold
    fine = (audit.penalty * audit.penalty_multiplier) if audit is not None else 0.0
    for ev in rep.governance:
        if ev.lever == "random_audit":
            audited += int(np.isin(ev.data.get("audited_initiators", []), rows_arr).sum())
            hits = int(np.isin(ev.data.get("hit_initiators", []), rows_arr).sum())
            caught += hits
            fines += hits * fine
        elif ev.lever == "circuit_breaker":
            freezes += int(np.isin(ev.data.get("frozen", []), rows_arr).sum())
    frozen_steps = 0
    for e in ends:  # agents frozen at an epoch's end, counted per epoch of steps
        fr = e.state.get("frozen")
        if fr is not None:
            frozen_steps += int(np.asarray(fr)[rows_arr].sum())
    out.update(audited=audited / k, caught=caught / k, fines=fines / k, freezes=freezes / k,
               frozen_steps=frozen_steps * int(cfg.get("steps_per_epoch", 1)) / k)
    # the breaker's statistic: mean 1 - p over each learner's last `window` delivered
    # proposals, after every step it proposed (what the lever checks)
    stats: list[float] = []
    for r in rows_arr:
        mine = batch.initiator == r
        q = 1.0 - batch.p[mine]
        st = batch.step[mine]
        if len(q) == 0:
            continue
        csum = np.concatenate([[0.0], np.cumsum(q)])
        idx = np.arange(1, len(q) + 1)
        lo = np.maximum(idx - window, 0)
        roll = (csum[idx] - csum[lo]) / (idx - lo)
        last_of_step = np.append(st[1:] != st[:-1], True)
        stats += roll[last_of_step].tolist()
    s = np.asarray(stats)
    out.update(breaker_mean=_mean(s), breaker_max=float(s.max()) if len(s) else math.nan,
               breaker_over=_mean(s >= threshold), breaker_threshold=threshold)
    return out


def _seam_figures(rep: Any, rows: np.ndarray) -> tuple[float, float]:
    """Per learning agent: its reward (the change in the seam's resources over the run) and
    its masked choices (summed over the epochs' counts), from a replayed log."""
    k = len(rows)
    ends = rep.epoch_ends
    last = ends[-1].state if ends else {}
    initial = float(rep.run_start.config.get("initial_resources", 0.0))
    resources = np.asarray(last.get("resources", [initial] * (int(rows.max()) + 1)))
    invalid = sum(int(np.asarray(e.state.get("invalid", [0] * (int(rows.max()) + 1)))[
        rows].sum()) for e in ends)
    return float((resources[rows] - initial).sum() / k), float(invalid / k)


def _commons_behaviour(rep: Any, rows: np.ndarray, reward: float, invalid: float
                       ) -> dict[str, float]:
    """The learner's figures in one commons run, from its rounds' records (per learning
    agent): reward (the change in the seam's resources), credits gained, units taken per
    round, the share of its rounds over the fair share, honesty, mean label, times audited
    and caught by the game and fines, times caught and penalties charged by levers (a
    truth-mode audit, monitoring), accusations against it and by it, elimination, survival
    time."""
    k = len(rows)
    rounds = [s.data for s in rep.step_states]
    taken = np.array([r["taken"] for r in rounds])[:, rows]
    reported = np.array([r["reported"] for r in rounds])[:, rows]
    fair = np.array([r["fair_share"] for r in rounds])
    live = np.array([r["live"] for r in rounds])[:, rows]
    credits0 = float(rep.run_start.config.get("initial_credits", 0.0))
    batch = rep.interactions()
    mine = np.isin(batch.initiator, rows)

    def count(key: str) -> float:
        return float(sum(np.isin(r[key], rows).sum() for r in rounds) / k)

    # what the levers caught and charged: a truth-mode audit's hits, monitoring's audits
    # and fines (the game's own audits are "audited" / "caught" / "fines")
    lever_caught = lever_pen = 0.0
    for ev in rep.governance:
        d = ev.data
        if ev.lever == "random_audit":
            hits = np.isin(d.get("hit_initiators", []), rows)
            lever_caught += float(hits.sum())
            total = float((d.get("summary") or {}).get("penalties", 0.0))
            n_hits = len(d.get("hit_initiators", []))
            if n_hits:  # one penalty per hit (the lever's summary holds the event's total)
                lever_pen += total / n_hits * float(hits.sum())
        elif ev.lever == "monitoring":
            for a in d.get("audits", []):
                if a["agent"] in rows and a.get("rounds_under_reported"):
                    lever_caught += 1.0
                    lever_pen += float(a.get("fine", 0.0))
            for f in d.get("fines", []):
                if f["agent"] in rows:
                    lever_pen += float(f.get("amount", 0.0))

    total = float(taken.sum())
    return {
        "reward": reward,
        "gain": float((np.asarray(rounds[-1]["credits"])[rows] - credits0).sum() / k)
        if rounds else 0.0,
        "taken": _mean(taken[live]),
        "over_use": _mean((taken > fair[:, None] + 1e-9)[live]),
        "honesty": 1.0 - float(np.abs(taken - reported).sum()) / total if total > 0
        else math.nan,
        "mean_p": _mean(batch.p[mine]),
        "audited": count("audited"), "caught": count("caught"),
        "fines": float(sum(np.asarray(r["fines"])[rows].sum() for r in rounds) / k),
        "lever_caught": lever_caught / k, "lever_penalties": lever_pen / k,
        "accused": float(sum(sum(j in rows for _, j in r["accusations"]) for r in rounds) / k),
        "accusing": float(sum(sum(i in rows for i, _ in r["accusations"]) for r in rounds)
                          / k),
        "eliminated": float(sum(np.isin(ids, rows).sum() for r in rounds
                                for ids in r["eliminated"].values()) / k),
        "survival": float(len(rounds)),
        "invalid": invalid,
    }


def _mean(x: Any) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()) if len(x) else math.nan


def eval_csv(result: Mapping[str, Any]) -> str:
    """One row per candidate and figure: mean, 95 % interval, n."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["candidate", "figure", "mean", "lo", "hi", "n"])
    for label, cand in result["candidates"].items():
        for key, _ in figures_of(result):
            s = cand["summary"][key]
            w.writerow([label, key, repr(s["mean"]), repr(s["lo"]), repr(s["hi"]), s["n"]])
    return buf.getvalue()


def eval_table(result: Mapping[str, Any]) -> str:
    """The evaluation as a fixed-width table (figures down, candidates across) and a
    verdict line."""
    labels = list(result["candidates"])
    width = max(14, *(len(x) + 2 for x in labels))
    lines = [f"{'':<20}" + "".join(f"{x:>{width + 12}}" for x in labels)]
    for key, title in figures_of(result):
        cells = []
        for label in labels:
            s = result["candidates"][label]["summary"][key]
            cells.append(f"{_num(s['mean']):>{width}} ±{_num(_half(s)):>9}"[-(width + 12):])
        lines.append(f"{title:<20}" + "".join(f"{c:>{width + 12}}" for c in cells))
    v = result["verdict"]
    t, b = v["trained"], v["best_scripted"]
    lines.append(f"mean ± half-width of its 95 % interval over {len(result['seeds'])} seeds, per "
                 "learning agent and run")
    lines.append("")
    lines.append(
        f"trained reward {_num(t['mean'])} [{_num(t['lo'])}, {_num(t['hi'])}] vs best scripted "
        f"({result['best_scripted']}) {_num(b['mean'])} [{_num(b['lo'])}, {_num(b['hi'])}] "
        f"over {len(result['seeds'])} seeds: "
        + ("higher, intervals do not overlap" if v["trained_higher"]
           and not v["intervals_overlap"] else
           "higher, intervals overlap" if v["trained_higher"] else "not higher"))
    return "\n".join(lines)


def _half(s: Mapping[str, float]) -> float:
    return (s["hi"] - s["lo"]) / 2 if math.isfinite(s["hi"]) else math.nan


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f}"
