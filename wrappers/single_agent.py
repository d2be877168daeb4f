"""One learner among policies: a ``gymnasium.Env`` view of a multi-agent environment.

:class:`SingleAgentEnv` lets Stable-Baselines3 (or any single-agent RL library) train one
agent, or one named group acting jointly, while every other agent is driven by a
:class:`~baselines.policy.Policy` (scripted, RL or LLM). It runs the environment's batched
door (``step_arrays``), so governance levers wrapped around it apply exactly as in a run.

============  ===============================================================================
Observation   ``Box((L * size,), float32)``: each learner's flat observation
              (:class:`~wrappers.flat.FlatLayout`), learners in agent order
Action        ``MultiDiscrete(tile(nvec, L))``: each learner's action, in the same order
Mask          ``action_masks()`` and ``info["action_mask"]``: the learners' flat masks, bool
              (what sb3-contrib's ``MaskablePPO`` reads)
Reward        the learners' summed reward (their soft payoffs minus action and governance
              costs: what reaches their resources)
Episode       the environment's: truncated after ``n_epochs * steps_per_epoch`` steps
              (``terminated`` is never set: a bankrupt learner stays, masked to no-ops)
info          ``action_mask``; ``invalid_actions``: the learners' steps this episode that
              chose a masked value (the environment ignored it); at an epoch's end
              ``epoch_invalid``, the same for that epoch
============  ===============================================================================

Seeding: ``reset(seed=s)`` resets the environment with ``s`` and re-seeds the other policies
from it (as :func:`baselines.runner.rollout` does), so the same seed and actions give the
same episode.

Example:
    >>> import envs
    >>> from baselines.scripted import make_policy
    >>> env = SingleAgentEnv(envs.make("sandbox-v0", n_agents=4, n_epochs=1,
    ...                                steps_per_epoch=3),
    ...                      learner="agent_0", others=make_policy("honest", seed=1))
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.action_space.shape, info["action_mask"].dtype
    ((123,), (9,), dtype('bool'))
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.core.api import ActionError
from wrappers.flat import FlatLayout

__all__ = ["LearnerView", "OtherAgents", "SingleAgentEnv", "checked_learner_actions",
           "learner_rows"]


def learner_rows(env: Any, learner: str | Sequence[str]) -> np.ndarray:
    """The agent rows that ``learner`` names: an agent (``"agent_3"``), a group label of the
    environment's ``groups`` (every agent in it), or a list of agents.

    Raises:
        ValueError: A name that is neither an agent nor a group, or an empty list.
    """
    base = env.unwrapped
    index = base.agent_name_mapping
    if isinstance(learner, str):
        if learner in index:
            return np.array([index[learner]], dtype=np.int64)
        groups = list(getattr(base, "groups", []))
        rows = [i for i, g in enumerate(groups) if g == learner]
        if rows:
            return np.asarray(rows, dtype=np.int64)
        raise ValueError(f"learner {learner!r} is neither an agent ({base.possible_agents[0]}"
                         f" .. {base.possible_agents[-1]}) nor a group "
                         f"({', '.join(sorted(set(groups)))})")
    names = list(learner)
    unknown = [a for a in names if a not in index]
    if not names or unknown:
        raise ValueError(f"learner must name agents of the environment; unknown: "
                         f"{unknown[:5] or '(empty list)'}")
    return np.asarray(sorted(index[a] for a in names), dtype=np.int64)


class OtherAgents:
    """The policies of every non-learning agent, acting into a shared action array.

    ``others`` is one :class:`~baselines.policy.Policy` for all of them or ``{agent:
    Policy}``; agents that share a policy object act in one batch. Array-batched policies
    read the environment's arrays; others (an LLM policy) get the dict observations and the
    lazy infos, exactly as in a run.
    """

    def __init__(self, env: Any, learners: np.ndarray, others: Any) -> None:
        from baselines.runner import _policy_groups

        base = env.unwrapped
        self.base = base
        agents = list(base.possible_agents)
        learning = set(learners.tolist())
        rest = [a for i, a in enumerate(agents) if i not in learning]
        if rest and others is None:
            raise ValueError(f"others: no policy for the {len(rest)} other agents "
                             f"({', '.join(rest[:3])}{' ...' if len(rest) > 3 else ''}); give "
                             "one Policy or {agent: Policy}")
        if others is None or not isinstance(others, Mapping):
            others = {a: others for a in rest}
        index = base.agent_name_mapping  # rows in the environment, not in `rest`
        self.groups = [(pol, np.asarray([index[a] for a in names], dtype=np.int64), names)
                       for pol, _, names in (_policy_groups(rest, others) if rest else [])]
        self.nvec = np.asarray(base.nvec)

    def reseed(self, seed: int | None) -> None:
        """Re-seed every policy from ``seed`` (policy ``k``: ``SeedSequence([seed, k])``)."""
        if seed is None:
            return
        for k, (pol, _, _) in enumerate(self.groups):
            pol.reset(seed=int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))

    def act_into(self, actions: np.ndarray, t: int) -> None:
        """Write every other agent's action for this step into ``actions``."""
        from baselines.policy import ObsBatch
        from baselines.runner import PolicyError, _checked_actions

        base = self.base
        obs = None  # the dict observations, built once a step if a policy reads them
        for pol, idx, names in self.groups:
            try:
                if pol.batched():
                    out = pol.act_arrays(ObsBatch.from_env(base, idx))
                else:
                    if obs is None:
                        obs = base._observations_out()
                    out = pol.act_batch([obs[a] for a in names],
                                        [base.infos[a] for a in names])
            except Exception as e:
                raise PolicyError.of(pol, names, t, e) from e
            actions[idx] = _checked_actions(out, pol, names, self.nvec, t)


def check_hooks_only(env: Any, who: str) -> Any:
    """The base environment, once ``env`` is known to be levers over an array kernel."""
    from baselines.runner import _hooks_only

    base = env.unwrapped
    if not hasattr(base, "step_arrays") or not _hooks_only(env):
        raise TypeError(f"{who}: needs an environment with the batched door (step_arrays) "
                        "wrapped only in governance levers; got "
                        f"{type(env).__name__} over {type(base).__name__}")
    return base


def checked_learner_actions(arr: np.ndarray, nvec: np.ndarray, learners: Sequence[str],
                            dim_names: Sequence[str], who: str) -> np.ndarray:
    """``(L, len(nvec))`` int64 learner actions, each value checked against its dimension.

    Raises:
        ActionError: The first value out of range, naming the learner and the dimension.
    """
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= nvec)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ActionError(f"{who}: learner {learners[r]!r}: dimension {c} "
                          f"({dim_names[c]!r}) allows 0..{int(nvec[c]) - 1}, got "
                          f"{int(arr[r, c])}")
    return arr


class LearnerView:
    """What the learner views (:class:`SingleAgentEnv`, ``LearnersParallelEnv``) share:
    ``env`` (the governed environment), ``base``, ``render_mode``."""

    env: Any
    base: Any
    render_mode: str | None

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return self.base.render() if self.base.render_mode else (
            f"step {self.base.t}/{self.base.max_steps}")

    def close(self) -> None:
        self.env.close()


class SingleAgentEnv(LearnerView, gymnasium.Env):
    """One agent (or a group acting jointly) learns; the others follow policies."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, env: Any, learner: str | Sequence[str] = "agent_0",
                 others: Any = None, render_mode: str | None = None) -> None:
        self.env = env
        self.base = base = check_hooks_only(env, "SingleAgentEnv")
        self.rows = learner_rows(env, learner)
        self.learners = [base.possible_agents[i] for i in self.rows]
        self.others = OtherAgents(env, self.rows, others)
        self.layout = FlatLayout(env)
        L = len(self.rows)
        self.observation_space = spaces.Box(-np.inf, np.inf, (L * self.layout.size,),
                                            np.float32)
        self.nvec = np.asarray(base.nvec, dtype=np.int64)
        self.action_space = spaces.MultiDiscrete(np.tile(self.nvec, L))
        self.render_mode = render_mode
        self._actions = np.zeros((len(base.possible_agents), len(self.nvec)), dtype=np.int64)
        self._invalid = 0

    # ---------------------------------------------------------------- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.env.reset(seed=seed, options=options)
        self.others.reseed(seed)
        self._invalid = 0
        return self._obs(), {"action_mask": self.action_masks(), "invalid_actions": 0}

    def step(self, action: Any):
        base = self.base
        if base.network is None or base.episode_over:
            raise RuntimeError("SingleAgentEnv: step called before reset() or after the "
                               "episode ended; call reset()")
        acts = self._actions
        acts[self.rows] = self._learner_actions(action)
        self.others.act_into(acts, base.t)
        rewards = base.step_arrays(acts, validate=False)
        self._invalid += int(base.step_invalid[self.rows].sum())
        info: dict[str, Any] = {}
        if base.t % base.config.steps_per_epoch == 0 or base.terminated:  # an epoch ended
            info["epoch_invalid"] = int(base.epoch_invalid[self.rows].sum())
        info["action_mask"] = self.action_masks()
        info["invalid_actions"] = self._invalid
        truncated = base.t >= base.max_steps and not base.terminated
        return (self._obs(), float(rewards[self.rows].sum()), base.terminated, truncated,
                info)

    def action_masks(self) -> np.ndarray:
        """The learners' flat masks, concatenated, as bool."""
        return self.base.obs_arrays.action_mask[self.rows].reshape(-1).astype(bool)

    # ---------------------------------------------------------------- helpers
    def _obs(self) -> np.ndarray:
        return self.layout.flatten(self.base.obs_arrays.named(), self.rows).reshape(-1)

    def _learner_actions(self, action: Any) -> np.ndarray:
        """The learners' action rows, checked against the action space."""
        arr = np.asarray(action)
        d = len(self.nvec)
        L = len(self.rows)
        if arr.shape not in ((L * d,), (L, d)) or arr.dtype.kind not in "iub" and not (
                arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0)):
            raise ActionError(f"SingleAgentEnv: the action must be {L * d} integers "
                              f"(MultiDiscrete {self.action_space.nvec.tolist()}), got "
                              f"{arr.dtype} of shape {arr.shape}: {action!r}")
        return checked_learner_actions(arr.reshape(L, d), self.nvec, self.learners,
                                       self.base.action_dim_names, "SingleAgentEnv")
