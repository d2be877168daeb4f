"""The RLlib backend of training: the same multi-agent setup, trained by Ray RLlib.

When a training run outgrows one machine, it moves to RLlib by a flag (``--backend rllib``),
not a rewrite: :func:`train_rllib` trains what the Stable-Baselines3 path trains (the
learning agents share one policy, every other agent follows its scripted
:class:`~baselines.policy.Policy`, the scenario's governance levers apply) through RLlib's
PettingZoo wrapper around a :class:`~wrappers.learners.LearnersParallelEnv`.

Ray is an optional extra (``pip install "distsafe[rllib]"``): this module imports it only when
a function is called, and says how to install it when it is missing.

- **Stack**: RLlib's new API stack (RLModule, Learner, EnvRunner), PyTorch, one policy
  ``"shared"`` to which every learner maps; ``algorithm`` is ``"ppo"`` (verified with
  ray 2.60; APPO/IMPALA want remote env runners and their own batch rules, not wired).
- **Resources**: a local Ray with ``num_cpus`` CPUs (default: 2 at most) is started if none
  is running and shut down afterwards (one that was running is used and left running). By
  default the environment is stepped in the driver (``num_env_runners=0``) and the learner
  trains there too (``num_learners=0``), so it fits a 2-core laptop; ``num_env_runners`` in
  ``hyperparams`` adds sampling actors when there are cores for them.
- **Budget**: training iterations run until ``total_timesteps`` environment steps (one step
  of the environment, whatever the number of learners) have been sampled.
- **Seeding**: ``seed`` seeds RLlib (its env runners reset the environment from it, and the
  network's initialisation); the environments' other agents are re-seeded at each seeded
  reset (:class:`~wrappers.learners.LearnersParallelEnv`).
- **Masks**: the policy is trained without the action masks (the environment ignores a masked
  value and counts it in ``invalid_actions``); :class:`RLlibActor` honours them when it
  acts.

It writes into ``out``:

==================  ===========================================================================
``curve.csv``       one row per iteration: ``timesteps``, ``iteration``, ``episodes``,
                    ``episode_reward_mean`` (the mean episode return per learner, comparable
                    to the SB3 curve's), ``team_reward_mean`` (summed over the learners),
                    ``episode_len_mean``, ``policy_loss``, ``vf_loss``, ``entropy``, ``kl``,
                    ``seconds``, ``fps``; ``nan`` where RLlib reported nothing yet
``checkpoint/``     RLlib's checkpoint of the algorithm (to resume it, register the
                    environment again under ``rllib.json``'s ``env_name``, then
                    ``Algorithm.from_checkpoint``); the shared policy's RLModule is under
                    ``checkpoint/`` + :data:`MODULE_PATH`
``rllib.json``      what :class:`RLlibActor` needs to play it: the algorithm, the learners, the
                    flat layout (:meth:`~wrappers.flat.FlatLayout.describe`), the seed, the
                    timesteps, the resolved hyperparameters, the ray version and the name
                    the environment was registered under
==================  ===========================================================================

Example (not run here: it starts Ray)::

    from baselines.scenario import build, load_scenario
    from baselines.rllib_backend import RLlibActor, train_rllib

    s = load_scenario("configs/strict_governance.yaml")
    summary = train_rllib(lambda: build(s, seed=0), ["agent_6"], None,
                          total_timesteps=20_000, seed=0, out="runs/rllib_adversary")
    actor = RLlibActor.load("runs/rllib_adversary")
    actions = actor.act(flat_obs, action_mask=masks)   # (n, len(nvec)) int64
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ALGORITHMS", "INSTALL_HINT", "MODULE_PATH", "POLICY_ID", "RLlibActor",
           "require_rllib", "train_rllib"]

#: the algorithms by name: the RLlib config class ``(module, class)``
ALGORITHMS: dict[str, tuple[str, str]] = {
    "ppo": ("ray.rllib.algorithms.ppo", "PPOConfig"),
}
#: the one policy (RLModule) every learner maps to
POLICY_ID = "shared"
#: where the shared policy's RLModule lies inside an algorithm checkpoint
MODULE_PATH = ("learner_group", "learner", "rl_module", POLICY_ID)
INSTALL_HINT = 'the rllib backend needs Ray RLlib: pip install "distsafe[rllib]"'
META_NAME = "rllib.json"

#: names the SB3 path uses, translated to RLlib's training() arguments
_ALIASES = {"learning_rate": "lr", "batch_size": "minibatch_size", "n_epochs": "num_epochs",
            "gae_lambda": "lambda_", "ent_coef": "entropy_coeff", "clip_range": "clip_param",
            "vf_coef": "vf_loss_coeff", "max_grad_norm": "grad_clip",
            "n_steps": "train_batch_size_per_learner"}
#: hyperparameters that go to the RLModule's model_config
_MODEL_KEYS = {"fcnet_hiddens", "fcnet_activation", "vf_share_layers", "head_fcnet_hiddens"}
#: hyperparameters that go to env_runners()
_RUNNER_KEYS = {"num_env_runners", "num_envs_per_env_runner", "rollout_fragment_length"}
_DEFAULTS = {"train_batch_size_per_learner": 1000, "minibatch_size": 128, "num_epochs": 4,
             "lr": 3e-4, "gamma": 0.99}
_CURVE_FIELDS = ("timesteps", "iteration", "episodes", "episode_reward_mean",
                 "team_reward_mean", "episode_len_mean", "policy_loss", "vf_loss", "entropy",
                 "kl", "seconds", "fps")


def require_rllib() -> Any:
    """Import and return ``ray``, RLlib included, or raise ``ImportError`` saying how to
    install it."""
    try:
        import ray
        import ray.rllib  # noqa: F401
        from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({type(e).__name__}: {e})") from e
    return ray


def _config_class(algorithm: str) -> type:
    import importlib

    if algorithm not in ALGORITHMS:
        raise ValueError(f"train_rllib: unknown algorithm {algorithm!r}; allowed: "
                         f"{', '.join(ALGORITHMS)}")
    module, name = ALGORITHMS[algorithm]
    return getattr(importlib.import_module(module), name)


def _split_hyperparams(config_cls: type, hyperparams: Mapping[str, Any],
                       total_timesteps: int) -> tuple[dict, dict, dict]:
    """``(training, model_config, env_runners)`` keyword arguments, checked by name."""
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    allowed = set()
    for cls in (config_cls, AlgorithmConfig):
        allowed |= {k for k, p in inspect.signature(cls.training).parameters.items()
                    if k != "self" and p.kind is p.KEYWORD_ONLY}
    training: dict[str, Any] = {}
    model: dict[str, Any] = {"fcnet_hiddens": [64, 64]}
    runners: dict[str, Any] = {"num_env_runners": 0}
    unknown = []
    for key, value in hyperparams.items():
        name = _ALIASES.get(key, key)
        if name == "net_arch":
            model["fcnet_hiddens"] = list(value)
        elif name in _MODEL_KEYS:
            model[name] = value
        elif name in _RUNNER_KEYS:
            runners[name] = value
        elif name in allowed:
            training[name] = value
        else:
            unknown.append(key)
    if unknown:
        names = sorted(allowed | _MODEL_KEYS | _RUNNER_KEYS | set(_ALIASES) | {"net_arch"})
        raise ValueError(f"train_rllib: unknown hyperparameters {', '.join(unknown)}; "
                         f"allowed: {', '.join(names)}")
    for key, value in _DEFAULTS.items():
        training.setdefault(key, value)
    batch = training["train_batch_size_per_learner"] = int(
        min(training["train_batch_size_per_learner"], max(total_timesteps, 1)))
    training["minibatch_size"] = int(min(training["minibatch_size"], batch))
    return training, model, runners


def _others(make_others: Any) -> Any:
    if callable(make_others) and not hasattr(make_others, "act_batch"):
        return make_others()
    return make_others


def _env_creator(make_env: Callable[[], Any], learners: str | Sequence[str],
                 make_others: Any) -> Callable[[Any], Any]:
    """What RLlib calls to build one environment (in the driver or an env runner)."""

    def create(_context: Any = None) -> Any:
        from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

        from wrappers.learners import LearnersParallelEnv

        built = make_env()
        others = None
        if isinstance(built, tuple):  # scenario.build: (env, {agent: Policy})
            built, others = built
        if make_others is not None:
            others = _others(make_others)
        return ParallelPettingZooEnv(LearnersParallelEnv(built, learners, others))

    return create


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _curve_row(result: Mapping[str, Any], n_learners: int, started: float) -> dict[str, float]:
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        EPISODE_LEN_MEAN,
        EPISODE_RETURN_MEAN,
        LEARNER_RESULTS,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
        NUM_EPISODES_LIFETIME,
    )

    runners = result.get(ENV_RUNNER_RESULTS, {})
    learner = result.get(LEARNER_RESULTS, {}).get(POLICY_ID, {})
    steps = _num(result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME,
                            runners.get(NUM_ENV_STEPS_SAMPLED_LIFETIME)))
    team = _num(runners.get(EPISODE_RETURN_MEAN))
    elapsed = time.perf_counter() - started
    return {
        "timesteps": steps, "iteration": _num(result.get("training_iteration")),
        "episodes": _num(runners.get(NUM_EPISODES_LIFETIME, 0)),
        "episode_reward_mean": team / n_learners, "team_reward_mean": team,
        "episode_len_mean": _num(runners.get(EPISODE_LEN_MEAN)),
        "policy_loss": _num(learner.get("policy_loss")), "vf_loss": _num(learner.get("vf_loss")),
        "entropy": _num(learner.get("entropy")), "kl": _num(learner.get("mean_kl_loss")),
        "seconds": elapsed, "fps": steps / elapsed if elapsed > 0 else math.nan}


def train_rllib(make_env: Callable[[], Any], learners: str | Sequence[str],
                make_others: Any = None, *, algorithm: str = "ppo", total_timesteps: int,
                seed: int = 0, hyperparams: Mapping[str, Any] | None = None,
                out: str | Path, on_progress: Callable[[int, int], None] | None = None,
                num_cpus: int | None = None, torch_threads: int | None = 1) -> dict[str, Any]:
    """Train one policy shared by the learners with RLlib (see the module docstring).

    Args:
        make_env: Builds one governed environment (levers over a variant with the batched
            door), or ``(env, {agent: Policy})`` as :func:`baselines.scenario.build` returns;
            called once per environment RLlib makes (it must pickle: Ray ships it).
        learners: The learning agents: an agent, a group label or a list of agents.
        make_others: The other agents' policies: a callable returning one ``Policy`` or
            ``{agent: Policy}`` (called once per environment), such a value itself, or
            ``None`` to use the policies ``make_env`` returns.
        algorithm: ``"ppo"`` (the names of :data:`ALGORITHMS`).
        total_timesteps: Environment steps to sample (whole iterations: it may run over).
        seed: Seeds RLlib and so the environments' resets and the network.
        hyperparams: RLlib ``training()`` arguments (``lr``, ``gamma``,
            ``train_batch_size_per_learner`` (default 1000, at most ``total_timesteps``),
            ``minibatch_size`` (128), ``num_epochs`` (4), ``entropy_coeff``, ...; the SB3
            names ``learning_rate``, ``n_steps``, ``batch_size``, ``n_epochs``,
            ``gae_lambda``, ``ent_coef``, ``clip_range``, ``vf_coef`` and ``max_grad_norm``
            are translated), the model's ``fcnet_hiddens`` (or ``net_arch``; default
            ``[64, 64]``), ``fcnet_activation``, ``vf_share_layers``, and ``num_env_runners``
            (default 0), ``num_envs_per_env_runner``, ``rollout_fragment_length``.
        out: The folder to write ``curve.csv``, ``checkpoint/`` and ``rllib.json`` into.
        on_progress: Called after each iteration with ``(timesteps done, total_timesteps)``.
        num_cpus: CPUs of the local Ray this starts (default ``min(2, os.cpu_count())``);
            ignored when Ray is already running.
        torch_threads: PyTorch's threads in this process while it trains (restored after;
            ``None``: leave them): the policy's batches are tiny, and more threads than one
            only contend with the environment and Ray for the cores.

    Returns:
        ``{"algorithm", "learners", "timesteps", "iterations", "seconds", "fps",
        "episode_reward_mean" (the last row's), "curve", "checkpoint", "meta", "seed",
        "hyperparams", "ray_version"}`` (paths as strings).

    Raises:
        ImportError: Ray RLlib is not installed (the message says how to install it).
        ValueError: An unknown algorithm or hyperparameter, or a bad budget.
    """
    ray = require_rllib()
    from ray.tune.registry import register_env

    if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, int) \
            or total_timesteps < 1:
        raise ValueError(f"train_rllib: total_timesteps must be an int >= 1, got "
                         f"{total_timesteps!r}")
    config_cls = _config_class(algorithm)
    training, model, runners = _split_hyperparams(config_cls, dict(hyperparams or {}),
                                                  total_timesteps)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    creator = _env_creator(make_env, learners, make_others)
    probe = creator()  # fail early, in the driver, with our own message; and the layout
    inner = probe.par_env
    names = list(inner.possible_agents)
    layout = inner.layout.describe()
    probe.close()

    import torch

    threads = torch.get_num_threads()
    started_ray = not ray.is_initialized()
    algo = logdir = None
    try:
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        if started_ray:
            ray.init(num_cpus=num_cpus or min(2, os.cpu_count() or 1),
                     include_dashboard=False, logging_level="warning", configure_logging=False,
                     # no idle worker processes competing for the cores at start-up
                     _system_config={"prestart_worker_first_driver": False})
        env_name = f"distsafe-learners-{uuid.uuid4().hex[:8]}"
        register_env(env_name, creator)
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        config = (
            config_cls()
            .api_stack(enable_rl_module_and_learner=True,
                       enable_env_runner_and_connector_v2=True)
            .framework("torch")
            .environment(env_name)
            .env_runners(**runners)
            .learners(num_learners=0)
            .training(**training)
            .multi_agent(policies={POLICY_ID},
                         policy_mapping_fn=lambda agent_id, *args, **kwargs: POLICY_ID)
            .rl_module(rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={POLICY_ID: RLModuleSpec(model_config=model)}))
            .reporting(min_sample_timesteps_per_iteration=0,
                       min_time_s_per_iteration=0)
            .debugging(seed=seed, log_level="WARN")
        )
        algo = config.build_algo()
        logdir = getattr(algo, "logdir", None)
        started = time.perf_counter()
        curve_path = out / "curve.csv"
        rows: list[dict[str, float]] = []
        with curve_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_CURVE_FIELDS)
            writer.writeheader()
            done = 0
            while done < total_timesteps:
                row = _curve_row(algo.train(), len(names), started)
                if not row["timesteps"] > done:
                    raise RuntimeError(f"train_rllib: an iteration sampled no environment "
                                       f"steps (at {done} of {total_timesteps})")
                done = int(row["timesteps"])
                rows.append(row)
                writer.writerow({k: repr(v) for k, v in row.items()})
                f.flush()
                if on_progress is not None:
                    on_progress(min(done, total_timesteps), total_timesteps)
        seconds = time.perf_counter() - started
        checkpoint = Path(algo.save_to_path(str(out / "checkpoint")))
        summary = {
            "algorithm": algorithm, "learners": names, "policy": POLICY_ID,
            "timesteps": done, "iterations": len(rows), "seconds": round(seconds, 3),
            "fps": round(done / seconds, 1) if seconds > 0 else None,
            "episode_reward_mean": rows[-1]["episode_reward_mean"],
            "curve": str(curve_path), "checkpoint": str(checkpoint),
            "meta": str(out / META_NAME), "seed": seed,
            "hyperparams": {**training, "model": model, **runners},
            "ray_version": ray.__version__}
        meta = {**summary, "env": layout.get("env", ""), "env_name": env_name, "layout": layout,
                "checkpoint": checkpoint.name, "module": "/".join(MODULE_PATH)}
        meta.pop("curve")
        meta.pop("meta")
        (out / META_NAME).write_text(json.dumps(meta, indent=2, default=_jsonable) + "\n")
        return summary
    finally:
        if algo is not None:
            algo.stop()
            _remove_if_empty(logdir)
        if started_ray and ray.is_initialized():
            ray.shutdown()
        torch.set_num_threads(threads)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def _remove_if_empty(path: Any) -> None:
    """RLlib makes a (here unused) log folder under ``~/ray_results``: drop it if empty."""
    if not path:
        return
    try:
        os.rmdir(path)
    except OSError:
        pass


class RLlibActor:
    """Actions of a policy :func:`train_rllib` trained, for batches of flat observations.

    Loads only the shared policy's RLModule from the checkpoint (no Ray cluster is started)
    and computes its action logits in one forward pass; :meth:`act` picks, per action
    dimension, the most likely value (``deterministic``) or samples one, among the values the
    flat mask allows when one is given.

    Args:
        module: The RLModule (``RLModule.from_checkpoint``).
        meta: What ``rllib.json`` records (may be empty).
    """

    def __init__(self, module: Any, meta: Mapping[str, Any] | None = None) -> None:
        self.module = module
        self.meta = dict(meta or {})
        self.nvec = np.asarray(module.action_space.nvec, dtype=np.int64)
        self.size = int(np.prod(module.observation_space.shape))

    @classmethod
    def load(cls, path: str | Path) -> RLlibActor:
        """Load from a training folder (with ``rllib.json``), an algorithm checkpoint, or
        the shared policy's module folder inside one."""
        require_rllib()
        from ray.rllib.core.rl_module.rl_module import RLModule

        path = Path(path)
        meta: dict[str, Any] = {}
        if (path / META_NAME).is_file():
            meta = json.loads((path / META_NAME).read_text())
            path = path / meta.get("checkpoint", "checkpoint")
        if path.joinpath(*MODULE_PATH).is_dir():
            path = path.joinpath(*MODULE_PATH)
        if not any(path.glob("module_state*")):
            raise FileNotFoundError(f"{path}: no RLlib checkpoint of the {POLICY_ID!r} policy "
                                    f"here (expected a train_rllib folder, its checkpoint/ or "
                                    f"checkpoint/{'/'.join(MODULE_PATH)})")
        return cls(RLModule.from_checkpoint(str(path)), meta)

    def mismatch(self, env: Any) -> str | None:
        """How ``env``'s flat layout differs from the one trained on (``None``: it does not)."""
        from wrappers.flat import FlatLayout

        layout = FlatLayout(env)
        if "layout" in self.meta:
            return layout.mismatch(self.meta["layout"])
        if layout.size != self.size or layout.nvec.tolist() != self.nvec.tolist():
            return (f"the policy takes {self.size} features and acts in "
                    f"{self.nvec.tolist()}; this environment gives {layout.size} and "
                    f"{layout.nvec.tolist()}")
        return None

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """The ``(n, sum(nvec))`` action logits of ``(n, size)`` flat observations."""
        import torch
        from ray.rllib.core.columns import Columns

        x = np.asarray(obs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.size:
            raise ValueError(f"RLlibActor: observations must be (n, {self.size}), got "
                             f"{x.shape}")
        with torch.no_grad():
            out = self.module.forward_inference({Columns.OBS: torch.from_numpy(x)})
        return out[Columns.ACTION_DIST_INPUTS].cpu().numpy().astype(np.float64)

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None = None,
            deterministic: bool = True,
            rng: np.random.Generator | None = None) -> np.ndarray:
        """``(n, len(nvec))`` int64 actions for ``(n, size)`` flat observations.

        Args:
            obs: Flat observations (:class:`~wrappers.flat.FlatLayout`).
            action_mask: ``(n, sum(nvec))`` flat masks (nonzero: allowed), or ``None``.
            deterministic: The most likely allowed value of each dimension; else a sample.
            rng: The generator to sample with (``deterministic=False``).
        """
        from baselines.rl import choose_per_dimension

        scores = self.logits(obs)
        mask = None
        if action_mask is not None:
            mask = np.asarray(action_mask).astype(bool)
            if mask.shape != scores.shape:
                raise ValueError(f"RLlibActor: action_mask must be {scores.shape}, got "
                                 f"{mask.shape}")
        rng = np.random.default_rng() if rng is None and not deterministic else rng
        return choose_per_dimension(scores, self.nvec, mask, deterministic, rng)
