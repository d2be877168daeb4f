"""Parameter sharing for whole populations: a Stable-Baselines3 ``VecEnv`` over ``step_arrays``.

:class:`SharedPolicyVecEnv` gives every learning agent of one or more copies of an
environment one slot of a ``VecEnv``, so one SB3 model (PPO, A2C, MaskablePPO) learns a
policy that all of them share while the other agents follow their policies. Nothing per
agent is built on the hot path: a step writes the slots' actions into each copy's action
array, lets the other policies act on the copy's arrays, runs ``step_arrays`` once per copy,
and fills one preallocated ``(num_envs, size)`` observation buffer through the
:class:`~wrappers.flat.FlatLayout`. No SuperSuit.

- **Slots**: ``copies * len(learners)``; slot ``c * L + j`` is learner ``j`` of copy ``c``.
- **Masks**: ``env_method("action_masks")`` returns the ``(num_envs, sum(nvec))`` bool masks
  in one array (what ``sb3_contrib``'s ``get_action_masks`` stacks).
- **Episodes**: the slots of a copy end together (truncation after the episode's steps); as
  SB3 expects, the copy resets at once, ``infos[slot]["terminal_observation"]`` holds the
  last observation, ``"TimeLimit.truncated"`` is True and ``"episode"`` carries the slot's
  return, length and elapsed time (so SB3 logs ``ep_rew_mean`` without a ``VecMonitor``).
  The info dicts are kept from step to step and only episode ends write into them; each
  step returns a new list of them, so one kept from an episode end stays as returned.
- **Seeding**: episode ``e`` of copy ``c`` is reset with ``SeedSequence([seed, c, e])`` and
  the other policies of that copy are re-seeded from it, so a seed fixes every episode
  (``seed()`` sets a new one, as SB3's ``set_random_seed`` does, for the next ``reset``;
  a ``reset`` without a new seed goes on with the next episodes, it does not replay).
  Give each copy its own policy objects (``others`` as a callable) for copies that are
  independent of each other.
- **Invalid actions**: :attr:`invalid_log` gets one row per copy and epoch: the learners'
  steps that chose a masked value (the environment ignores them), of ``learner_steps``.
- **Timing**: :attr:`env_seconds` is the wall time spent inside the environment (stepping,
  the other policies, observations, resets), to report its share of a training run.

Example:
    >>> import envs
    >>> from baselines.scripted import make_policy
    >>> def make():
    ...     return envs.make("sandbox-v0", n_agents=6, n_epochs=1, steps_per_epoch=4)
    >>> venv = SharedPolicyVecEnv(make, learners=["agent_0", "agent_1"],
    ...                           others=make_policy("honest"), copies=2, seed=0)
    >>> obs = venv.reset()
    >>> obs.shape, venv.env_method("action_masks").shape
    ((4, 123), (4, 33))
    >>> obs, rewards, dones, infos = venv.step(venv.sample_actions())
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from envs.core.api import ActionError
from wrappers.flat import FlatLayout
from wrappers.single_agent import OtherAgents, check_hooks_only, learner_rows

__all__ = ["SharedPolicyVecEnv"]


class _Copy:
    """One copy of the environment: its base, other agents, action array, episode."""

    def __init__(self, env: Any, learner: str | Sequence[str], others: Any) -> None:
        self.env = env
        self.base = check_hooks_only(env, "SharedPolicyVecEnv")
        self.rows = learner_rows(env, learner)
        self.others = OtherAgents(env, self.rows, others)
        self.actions = np.zeros((len(self.base.possible_agents), len(self.base.nvec)),
                                dtype=np.int64)
        self.episode = 0
        self.returns = np.zeros(len(self.rows))
        self.started = 0.0


class SharedPolicyVecEnv(VecEnv):
    """Each learning agent of each copy is one slot of a ``VecEnv`` (see module docstring).

    Args:
        make_env: Builds one environment (levers included); called ``copies`` times. A
            built environment is accepted too when ``copies`` is 1.
        learners: The learning agents: an agent, a group label or a list of agents.
        others: The other agents' policies: one ``Policy`` or ``{agent: Policy}`` (a
            callable ``others(copy_index)`` gives each copy its own objects).
        copies: Independent copies of the environment.
        seed: The seed of the first ``reset`` (``None``: fresh entropy).
        joint_actions: Expose ``Discrete(prod(nvec))`` (every combination of the action
            dimensions one action, for algorithms such as DQN that need a ``Discrete``
            space; at most 4096 combinations) instead of ``MultiDiscrete(nvec)``; masks are
            then the joint ``(num_envs, prod(nvec))`` masks.
        reward_shaping: ``f(base_env, learner_rows) -> (L,)`` added to the learners' rewards
            after each step (e.g. a bonus for the harm a harm-seeking adversary got
            through); ``None``: the environment's rewards as they are.
    """

    def __init__(self, make_env: Callable[[], Any] | Any, learners: str | Sequence[str],
                 others: Any = None, copies: int = 1, seed: int | None = None,
                 joint_actions: bool = False,
                 reward_shaping: Callable[[Any, np.ndarray], np.ndarray] | None = None
                 ) -> None:
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"SharedPolicyVecEnv: copies must be an int >= 1, got {copies!r}")
        if not callable(make_env):
            if copies != 1:
                raise ValueError("SharedPolicyVecEnv: give a function that builds the "
                                 "environment for copies > 1")
            built, make_env = make_env, None
        self._copies = []
        for c in range(copies):
            env = built if make_env is None else make_env()
            mine = others(c) if callable(others) and not hasattr(others, "act_batch") \
                else others
            self._copies.append(_Copy(env, learners, mine))
        first = self._copies[0]
        self.layout = FlatLayout(first.env)
        self.L = len(first.rows)
        self.learners = [first.base.possible_agents[i] for i in first.rows]
        self.nvec = np.asarray(first.base.nvec, dtype=np.int64)
        n = copies * self.L
        self._obs = np.zeros((n, self.layout.size), dtype=np.float32)
        self._rewards = np.zeros(n, dtype=np.float32)
        self._dones = np.zeros(n, dtype=bool)
        self._infos: list[dict[str, Any]] = [{} for _ in range(n)]
        self._dirty: list[int] = []
        self._pending: np.ndarray | None = None
        self._seed = seed
        self._reseeded = True
        self._shaping = reward_shaping
        self.render_mode = None
        self.env_seconds = 0.0
        self.invalid_log: list[dict[str, int]] = []
        self.joint = joint_actions
        if joint_actions:
            size = int(np.prod(self.nvec))
            if size > 4096:
                raise ValueError(f"SharedPolicyVecEnv: joint actions need prod(nvec) <= 4096, "
                                 f"this environment has {size} (nvec {self.nvec.tolist()}): "
                                 "use a MultiDiscrete algorithm (ppo, maskable_ppo, a2c)")
            action_space: spaces.Space = spaces.Discrete(size)
        else:
            action_space = spaces.MultiDiscrete(self.nvec)
        super().__init__(n, self.layout.space(), action_space)

    # ---------------------------------------------------------------- VecEnv API
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Set the seed of the next ``reset`` (every copy and episode derives from it)."""
        self._seed = seed
        self._reseeded = True
        return [seed] * self.num_envs

    def reset(self) -> np.ndarray:
        start = time.perf_counter()
        if self._seed is None:
            self._seed = int(np.random.SeedSequence().generate_state(1)[0])
        for c, cp in enumerate(self._copies):
            if self._reseeded:  # a new seed starts its episodes afresh; otherwise a reset
                cp.episode = 0  # goes on to the next episodes (SB3 uses a seed once)
            self._reset_copy(c)
        self._reseeded = False
        self.env_seconds += time.perf_counter() - start
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._pending = actions

    def step_wait(self):
        start = time.perf_counter()
        actions = self._check(self._pending)
        self._pending = None
        for i in self._dirty:  # last step's episode ends: their entries are SB3's now
            self._infos[i] = {}
        self._dirty = []
        L = self.L
        for c, cp in enumerate(self._copies):
            base = cp.base
            sl = slice(c * L, (c + 1) * L)
            cp.actions[cp.rows] = actions[sl]
            cp.others.act_into(cp.actions, base.t)
            rewards = base.step_arrays(cp.actions, validate=False)
            r = rewards[cp.rows]
            if self._shaping is not None:
                r = r + self._shaping(base, cp.rows)
            self._rewards[sl] = r
            cp.returns += r
            spe = base.config.steps_per_epoch
            if base.t % spe == 0 or base.terminated:
                self.invalid_log.append({
                    "copy": c, "episode": cp.episode, "epoch": (base.t - 1) // spe,
                    "invalid": int(base.epoch_invalid[cp.rows].sum()),
                    "learner_steps": spe * L})
            self.layout.fill(base.obs_arrays.named(), self._obs[sl], cp.rows)
            done = base.episode_over
            self._dones[sl] = done
            if done:
                now = time.perf_counter()
                for j in range(L):
                    i = c * L + j
                    self._infos[i] = {
                        "terminal_observation": self._obs[i].copy(),
                        "TimeLimit.truncated": not base.terminated,
                        "episode": {"r": float(cp.returns[j]), "l": base.t,
                                    "t": round(now - cp.started, 6)}}
                    self._dirty.append(i)
                cp.episode += 1
                self._reset_copy(c)
        self.env_seconds += time.perf_counter() - start
        # a new list (as the arrays are copies): the next step replaces entries of ours
        return self._obs.copy(), self._rewards.copy(), self._dones.copy(), list(self._infos)

    def action_masks(self) -> np.ndarray:
        """Every slot's flat mask, ``(num_envs, sum(nvec))`` bool (joint actions:
        ``(num_envs, prod(nvec))``)."""
        mask = np.concatenate([cp.base.obs_arrays.action_mask[cp.rows]
                               for cp in self._copies]).astype(bool)
        if self.joint:
            from baselines.rl import _joint_mask

            return _joint_mask(mask, self.nvec)
        return mask

    def sample_actions(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Uniform random valid actions of every slot (the env's ``sample_actions``)."""
        rng = np.random.default_rng() if rng is None else rng
        acts = np.concatenate([cp.base.sample_actions(rng)[cp.rows] for cp in self._copies])
        if self.joint:
            return np.ravel_multi_index(tuple(acts.T), tuple(self.nvec))
        return acts

    def close(self) -> None:
        for cp in self._copies:
            cp.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None] * len(list(self._get_indices(indices)))
        return [getattr(self._copies[i // self.L].env, attr_name)
                for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        for c in sorted({i // self.L for i in self._get_indices(indices)}):
            setattr(self._copies[c].env, attr_name, value)

    def has_attr(self, attr_name: str) -> bool:
        if attr_name == "action_masks":
            return True
        return super().has_attr(attr_name)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None,
                   **method_kwargs: Any) -> Any:
        if method_name == "action_masks":
            masks = self.action_masks()
            return masks if indices is None else masks[list(self._get_indices(indices))]
        out = []
        for c in sorted({i // self.L for i in self._get_indices(indices)}):
            out.append(getattr(self._copies[c].env, method_name)(*method_args,
                                                                  **method_kwargs))
        return out

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))

    # ---------------------------------------------------------------- helpers
    def _reset_copy(self, c: int) -> None:
        cp = self._copies[c]
        seed = int(np.random.SeedSequence([self._seed, c, cp.episode]).generate_state(1)[0])
        cp.env.reset(seed=seed)
        cp.others.reseed(seed)
        cp.returns[:] = 0.0
        cp.started = time.perf_counter()
        L = self.L
        self.layout.fill(cp.base.obs_arrays.named(), self._obs[c * L:(c + 1) * L], cp.rows)

    def _check(self, actions: Any) -> np.ndarray:
        if actions is None:
            raise RuntimeError("SharedPolicyVecEnv: step_wait() without step_async()")
        arr = np.asarray(actions)
        if self.joint:  # one index per slot -> its action vector
            size = int(np.prod(self.nvec))
            flat = arr.reshape(-1)
            if flat.shape != (self.num_envs,) or flat.dtype.kind not in "iu" or (
                    (flat < 0) | (flat >= size)).any():
                raise ActionError(f"SharedPolicyVecEnv: joint actions must be {self.num_envs} "
                                  f"integers in 0..{size - 1}, got {arr!r}")
            return np.stack(np.unravel_index(flat, tuple(self.nvec)), axis=1).astype(np.int64)
        shape = (self.num_envs, len(self.nvec))
        if arr.shape != shape or arr.dtype.kind not in "iu":
            if arr.shape == shape and arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
                arr = arr.astype(np.int64)
            else:
                raise ActionError(f"SharedPolicyVecEnv: actions must be integers of shape "
                                  f"{shape}, got {arr.dtype} of shape {arr.shape}")
        bad = (arr < 0) | (arr >= self.nvec)
        if bad.any():
            i, d = np.argwhere(bad)[0]
            c, j = divmod(int(i), self.L)
            raise ActionError(f"SharedPolicyVecEnv: slot {i} (copy {c}, "
                              f"{self.learners[j]}): dimension {d} allows 0.."
                              f"{int(self.nvec[d]) - 1}, got {int(arr[i, d])}")
        return arr
