"""The learners alone: a PettingZoo ``ParallelEnv`` whose agents are only the learning agents.

Multi-agent RL libraries that take a PettingZoo environment (RLlib's PettingZoo wrapper, for
one) train every agent the environment lists. :class:`LearnersParallelEnv` lists only the
learners (an agent, a group label or a list of agents, as
:func:`~wrappers.single_agent.learner_rows` reads them); every other agent is driven by its
:class:`~baselines.policy.Policy` inside the step, through
:class:`~wrappers.single_agent.OtherAgents`, and the environment's batched door
(``step_arrays``) runs the step, so governance levers wrapped around it apply as in a run.

============  ===============================================================================
Agents        the learners, in agent order (``possible_agents``); all live until the end
Observation   ``Box((size,), float32)`` per learner: its flat observation
              (:class:`~wrappers.flat.FlatLayout`), a fresh array at every step
Action        ``MultiDiscrete(nvec)`` per learner: the environment's own action
Reward        each learner's reward (its soft payoff minus action and governance costs)
Episode       the environment's: every learner is truncated after ``n_epochs *
              steps_per_epoch`` steps and ``agents`` empties (``terminations`` stay False:
              a bankrupt learner stays, masked to no-ops)
info          ``action_mask``: the learner's flat mask, ``(sum(nvec),)`` int8;
              ``invalid_actions``: its steps this episode that chose a masked value (the
              environment ignored it)
============  ===============================================================================

Seeding: ``reset(seed=s)`` resets the environment with ``s`` and re-seeds the other policies
from it, so the same seed and learner actions give the same episode.

Example:
    >>> import envs
    >>> from baselines.scripted import make_policy
    >>> env = LearnersParallelEnv(envs.make("sandbox-v0", n_agents=4, n_epochs=1,
    ...                                     steps_per_epoch=3),
    ...                           ["agent_0", "agent_2"], make_policy("honest", seed=1))
    >>> obs, infos = env.reset(seed=0)
    >>> sorted(obs), obs["agent_0"].shape, infos["agent_2"]["action_mask"].shape
    (['agent_0', 'agent_2'], (123,), (33,))
    >>> obs, rewards, terms, truncs, infos = env.step(
    ...     {a: env.action_space(a).sample() for a in env.agents})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

from envs.core.api import ActionError
from wrappers.flat import FlatLayout
from wrappers.single_agent import (
    LearnerView,
    OtherAgents,
    check_hooks_only,
    checked_learner_actions,
    learner_rows,
)

__all__ = ["LearnersParallelEnv"]


class LearnersParallelEnv(LearnerView, ParallelEnv):
    """Only the learners are agents; the others act inside the step (see module docstring).

    Args:
        env: The environment: a variant with the batched door, wrapped only in levers.
        learners: The learning agents: an agent, a group label or a list of agents.
        others: The other agents' policies: one ``Policy`` or ``{agent: Policy}`` (entries
            for learners are ignored, so a scenario's full ``{agent: Policy}`` will do).
        render_mode: ``"ansi"`` or ``None``.

    Attributes:
        env: The wrapped environment; ``base`` its kernel (``env.unwrapped``).
        rows: The learners' rows in the environment's arrays.
        layout: The :class:`~wrappers.flat.FlatLayout` of the observations.
    """

    metadata = {"render_modes": ["ansi"], "name": "learners_v0", "is_parallelizable": True}

    def __init__(self, env: Any, learners: str | Sequence[str], others: Any = None,
                 render_mode: str | None = None) -> None:
        self.env = env
        self.base = base = check_hooks_only(env, "LearnersParallelEnv")
        self.rows = learner_rows(env, learners)
        self.possible_agents = [base.possible_agents[i] for i in self.rows]
        self.agents: list[str] = []
        if isinstance(others, Mapping):
            learning = set(self.possible_agents)
            others = {a: p for a, p in others.items() if a not in learning}
        self.others = OtherAgents(env, self.rows, others)
        self.layout = FlatLayout(env)
        self.nvec = np.asarray(base.nvec, dtype=np.int64)
        obs_space = self.layout.space()
        act_space = spaces.MultiDiscrete(self.nvec)
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: act_space for a in self.possible_agents}
        self.render_mode = render_mode
        self._actions = np.zeros((len(base.possible_agents), len(self.nvec)), dtype=np.int64)
        self._invalid = np.zeros(len(self.rows), dtype=np.int64)

    # ---------------------------------------------------------------- PettingZoo API
    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.MultiDiscrete:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.env.reset(seed=seed, options=options)
        self.others.reseed(seed)
        self.agents = list(self.possible_agents)
        self._invalid[:] = 0
        return self._obs(), self._infos()

    def step(self, actions: Mapping[str, Any]):
        base = self.base
        if not self.agents or base.network is None or base.episode_over:
            raise RuntimeError("LearnersParallelEnv: step called before reset() or after the "
                               "episode ended; call reset()")
        acts = self._actions
        acts[self.rows] = self._learner_actions(actions)
        self.others.act_into(acts, base.t)
        rewards = base.step_arrays(acts, validate=False)
        self._invalid += base.step_invalid[self.rows]
        agents = self.agents
        r = rewards[self.rows].tolist()
        done = base.episode_over
        obs, infos = self._obs(), self._infos()
        rew = dict(zip(agents, r))
        terms = dict.fromkeys(agents, base.terminated)
        truncs = dict.fromkeys(agents, done and not base.terminated)
        if done:
            self.agents = []
        return obs, rew, terms, truncs, infos

    def action_masks(self) -> np.ndarray:
        """The learners' flat masks, ``(len(learners), sum(nvec))`` int8 (a fresh array)."""
        return self.base.obs_arrays.action_mask[self.rows]

    def state(self) -> np.ndarray:
        """Every learner's flat observation, ``(len(learners), size)`` float32."""
        return self.layout.flatten(self.base.obs_arrays.named(), self.rows)

    # ---------------------------------------------------------------- helpers
    def _obs(self) -> dict[str, np.ndarray]:
        flat = self.layout.flatten(self.base.obs_arrays.named(), self.rows)
        return dict(zip(self.possible_agents, flat))

    def _infos(self) -> dict[str, dict[str, Any]]:
        masks = self.action_masks()
        inv = self._invalid.tolist()
        return {a: {"action_mask": masks[j], "invalid_actions": inv[j]}
                for j, a in enumerate(self.possible_agents)}

    def _learner_actions(self, actions: Mapping[str, Any]) -> np.ndarray:
        """The learners' action rows, ``(L, len(nvec))`` int64, checked against the space."""
        missing = [a for a in self.possible_agents if a not in actions]
        if missing:
            raise ActionError(f"LearnersParallelEnv: no action for {', '.join(missing[:5])}"
                              f"{' ...' if len(missing) > 5 else ''}; every learner acts "
                              "at every step")
        d = len(self.nvec)
        try:
            arr = np.asarray([np.asarray(actions[a]).reshape(-1) for a in self.possible_agents])
        except ValueError:
            arr = np.asarray([], dtype=object)
        if arr.shape != (len(self.rows), d) or arr.dtype.kind not in "iub" and not (
                arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0)):
            raise ActionError(f"LearnersParallelEnv: each learner's action must be {d} "
                              f"integers (MultiDiscrete {self.nvec.tolist()}); got "
                              f"{ {a: actions[a] for a in self.possible_agents[:3]} !r}")
        return checked_learner_actions(arr, self.nvec, self.possible_agents,
                                       self.base.action_dim_names, "LearnersParallelEnv")
