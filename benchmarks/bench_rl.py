"""PPO throughput with parameter sharing on the sandbox against PPO on CartPole-v1.

Two trainings with the same Stable-Baselines3 PPO hyperparameters (the same ``net_arch``,
``n_steps``, ``batch_size``, ``n_epochs``, learning rate, seed, ``device="cpu"``, one torch
thread; by default SB3's own PPO defaults, tuned for neither side) and 16 slots each,
alternated in one process (``--repeats`` repetitions, the order rotating) so a slow phase of
the machine hits both alike:

- **sandbox**: what ``distsafe train`` runs: one :class:`~wrappers.vec_env.SharedPolicyVecEnv`
  over ``sandbox-v0`` whose 16 agents all learn one shared policy (``--population all``,
  parameter sharing over a whole population: 16 slots; ``--population mixed``: 20 agents, 16
  learning, ``agent_16``/``agent_17`` honest and ``agent_18``/``agent_19`` opportunistic),
  with :class:`baselines.fused.FusedMlpPolicy` (``MlpPolicy`` whose ``MultiDiscrete``
  distribution is computed in one tensor: the same distribution as SB3's); the sandbox's
  defaults otherwise (episodes of 10 epochs x 10 steps, complete network, 8 neighbour slots:
  observations of 123 floats, actions ``MultiDiscrete([6 8 5 3 3 2 2 2 2])``);
- **cartpole**: ``CartPole-v1`` in SB3's ``DummyVecEnv`` with 16 environments
  (``make_vec_env``): observations of 4 floats, actions ``Discrete(2)``, stock ``MlpPolicy``
  (one ``Categorical``: nothing to fuse);
- **sandbox-stock** (``--stock`` only): the sandbox side with SB3's stock ``MlpPolicy``, whose
  ``MultiDiscrete`` distribution builds one ``torch.distributions.Categorical`` per action
  dimension on every forward pass and minibatch: what the fused distribution saves.

Frames are learner steps (the model's ``num_timesteps``); FPS is frames over the wall time
of the whole ``learn()`` call (rollouts and training). The environment's share of that wall
time is ``venv.env_seconds`` for the sandbox (stepping, the scripted agents, observations,
resets) and, for CartPole, the same measured by a thin timing wrapper around the
``DummyVecEnv``'s ``reset``, ``step_async`` and ``step_wait``. It prints each repetition's
FPS, ratios and environment shares, their medians, and each side's time per learner step
split into the environment and the rest (policy and PPO).

Usage::

    python benchmarks/bench_rl.py [--timesteps 65536] [--repeats 5] [--population all]
        [--stock] [--n-steps 2048 --batch-size 64 --n-epochs 10] [--json PATH]
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

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import VecEnvWrapper  # noqa: E402

import envs  # noqa: E402
from baselines.fused import FusedMlpPolicy  # noqa: E402
from baselines.scripted import make_policy  # noqa: E402
from wrappers.vec_env import SharedPolicyVecEnv  # noqa: E402

SLOTS = 16
LEARNERS = [f"agent_{i}" for i in range(SLOTS)]
#: agents in the sandbox: all learning, or 16 learning among 4 scripted ones
POPULATION = {"all": SLOTS, "mixed": SLOTS + 4}


def ppo_kwargs(args: argparse.Namespace) -> dict:
    """The hyperparameters both sides share."""
    return dict(n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
                learning_rate=3e-4, gamma=0.99, ent_coef=0.0,
                policy_kwargs=dict(net_arch=list(args.net_arch)), device="cpu",
                seed=args.seed, verbose=0)


def make_sandbox_venv(seed: int, population: str) -> SharedPolicyVecEnv:
    n_agents = POPULATION[population]

    def make():
        return envs.make("sandbox-v0", n_agents=n_agents)

    def others(copy: int) -> dict | None:
        if n_agents == SLOTS:
            return None
        honest = make_policy("honest", seed=seed)
        opportunistic = make_policy("opportunistic", seed=seed)
        return {"agent_16": honest, "agent_17": honest,
                "agent_18": opportunistic, "agent_19": opportunistic}

    return SharedPolicyVecEnv(make, learners=LEARNERS, others=others, copies=1, seed=seed)


class EnvTimer(VecEnvWrapper):
    """Times the wrapped VecEnv's ``reset``, ``step_async`` and ``step_wait`` (``env_seconds``)."""

    def __init__(self, venv) -> None:
        super().__init__(venv)
        self.env_seconds = 0.0

    def reset(self):
        start = time.perf_counter()
        obs = self.venv.reset()
        self.env_seconds += time.perf_counter() - start
        return obs

    def step_async(self, actions) -> None:
        start = time.perf_counter()
        self.venv.step_async(actions)
        self.env_seconds += time.perf_counter() - start

    def step_wait(self):
        start = time.perf_counter()
        out = self.venv.step_wait()
        self.env_seconds += time.perf_counter() - start
        return out


class RolloutTimer(BaseCallback):
    """Wall time of ``learn()``'s rollouts (the rest of it is PPO's training phase)."""

    def __init__(self) -> None:
        super().__init__()
        self.rollout_seconds = 0.0
        self._start = 0.0

    def _on_rollout_start(self) -> None:
        self._start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.rollout_seconds += time.perf_counter() - self._start

    def _on_step(self) -> bool:
        return True


def make_cartpole_venv(seed: int) -> EnvTimer:
    return EnvTimer(make_vec_env("CartPole-v1", n_envs=SLOTS, seed=seed))


def train(side: str, args: argparse.Namespace) -> dict:
    """One ``learn()`` of ``args.timesteps`` frames on ``side`` (``sandbox``,
    ``sandbox-stock`` or ``cartpole``): FPS and environment share."""
    if side.startswith("sandbox"):
        venv = make_sandbox_venv(args.seed, args.population)
    else:
        venv = make_cartpole_venv(args.seed)
    policy = FusedMlpPolicy if side == "sandbox" else "MlpPolicy"
    model = PPO(policy, venv, **ppo_kwargs(args))
    timer = RolloutTimer()
    gc.collect()
    start = time.perf_counter()
    model.learn(total_timesteps=args.timesteps, callback=timer)
    wall = time.perf_counter() - start
    frames = int(model.num_timesteps)
    env_s = venv.env_seconds
    venv.close()
    return {"side": side, "frames": frames, "wall_s": wall, "fps": frames / wall,
            "env_s": env_s, "env_share": env_s / wall, "rollout_s": timer.rollout_seconds,
            "train_s": wall - timer.rollout_seconds}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timesteps", type=int, default=65536,
                    help="frames (learner steps) per training, each side")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    ap.add_argument("--n-steps", type=int, default=2048,
                    help="PPO n_steps per slot (2048: SB3's default)")
    ap.add_argument("--batch-size", type=int, default=64, help="(64: SB3's default)")
    ap.add_argument("--n-epochs", type=int, default=10, help="(10: SB3's default)")
    ap.add_argument("--population", choices=sorted(POPULATION), default="all",
                    help="all: 16 agents, all learning; mixed: 16 learning among 20")
    ap.add_argument("--net-arch", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stock", action="store_true",
                    help="also train the sandbox with SB3's stock MlpPolicy (one Categorical "
                         "per action dimension)")
    ap.add_argument("--json", type=Path, default=None, help="save the results here")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    sides = ["sandbox", "cartpole"] + (["sandbox-stock"] if args.stock else [])
    warm = argparse.Namespace(**{**vars(args), "timesteps": args.n_steps * SLOTS})
    for side in sides:  # imports, allocator, torch kernels: warm before timing
        train(side, warm)

    reps = []
    for r in range(args.repeats):  # interleaved; the order rotates every repetition
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        got = {side: train(side, args) for side in order}
        reps.append({side: got[side] for side in sides}
                    | {f"ratio[{side}]": got[side]["fps"] / got["cartpole"]["fps"]
                       for side in sides if side != "cartpole"})

    med = {side: {k: statistics.median(rep[side][k] for rep in reps)
                  for k in ("fps", "wall_s", "env_s", "env_share", "rollout_s",
                           "train_s")} for side in sides}
    ratios = {side: med[side]["fps"] / med["cartpole"]["fps"]
              for side in sides if side != "cartpole"}

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} thread), SB3 {stable_baselines3.__version__}")
    print(f"# PPO, net_arch {args.net_arch}, n_steps {args.n_steps}, batch_size "
          f"{args.batch_size}, n_epochs {args.n_epochs}, seed {args.seed}, {SLOTS} slots "
          f"(sandbox: {POPULATION[args.population]} agents, {SLOTS} learning); "
          f"{args.timesteps} frames per training; {args.repeats} interleaved repetitions")
    head = "| rep | " + " | ".join(f"{side} FPS" for side in sides) + " | " + " | ".join(
        f"{side} / cartpole" for side in ratios) + " | " + " | ".join(
        f"{side} env share" for side in sides) + " |"
    print(head)
    print("|---" + "|---:" * (len(sides) * 2 + len(ratios)) + "|")
    for i, rep in enumerate(reps):
        print(f"| {i + 1} | " + " | ".join(f"{rep[s]['fps']:,.0f}" for s in sides) + " | "
              + " | ".join(f"{rep[f'ratio[{s}]']:.3f}" for s in ratios) + " | "
              + " | ".join(f"{rep[s]['env_share']:.1%}" for s in sides) + " |")
    print("| median | " + " | ".join(f"{med[s]['fps']:,.0f}" for s in sides) + " | "
          + " | ".join(f"{ratios[s]:.3f}" for s in ratios) + " | "
          + " | ".join(f"{med[s]['env_share']:.1%}" for s in sides) + " |")
    print()
    for side, ratio in ratios.items():
        per = [rep[f"ratio[{side}]"] for rep in reps]
        print(f"{side} / cartpole FPS: {ratio:.3f} (ratio of the medians; per repetition "
              f"{min(per):.3f} .. {max(per):.3f}, median {statistics.median(per):.3f})")
    print("\nper learner step (us, medians):\n| side | total | environment "
          "| rollouts besides the environment (policy, buffer) | PPO training phase |\n"
          "|---|---:|---:|---:|---:|")
    for side in sides:
        m = med[side]
        per = 1e6 / args.timesteps
        print(f"| {side} | {m['wall_s'] * per:.1f} | {m['env_s'] * per:.1f} "
              f"| {(m['rollout_s'] - m['env_s']) * per:.1f} | {m['train_s'] * per:.1f} |")

    result = {
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "sb3": stable_baselines3.__version__,
                    "torch_threads": torch.get_num_threads()},
        "config": {"slots": SLOTS, "n_agents": POPULATION[args.population],
                   "population": args.population, "learners": LEARNERS,
                   "timesteps": args.timesteps, "repeats": args.repeats,
                   "n_steps": args.n_steps, "batch_size": args.batch_size,
                   "n_epochs": args.n_epochs, "net_arch": list(args.net_arch),
                   "seed": args.seed, "sides": sides},
        "repetitions": reps, "median": med, "ratio": ratios,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
