"""The governance seam as a mixin: what every variant's kernel shares with the levers.

:class:`GovernedKernel` implements :class:`~envs.core.governance.GovernanceSeam` once, so a
variant file holds only its game. The host environment provides, as plain attributes:
``possible_agents``, ``agent_name_mapping``, ``frozen`` (bool per agent), ``reputation``,
``resources`` and ``reward_array`` (float per agent), ``t``, ``max_steps``,
``config.steps_per_epoch``, ``event_log`` and ``infos``; and calls, from its kernel:

- ``_init_governance()`` in ``__init__``; ``_reset_governance(n, seed)`` early in ``reset``
  and ``_run_reset_hooks()`` once its state exists;
- ``_apply_weight_hooks(batch)`` and ``_apply_cost_hooks(batch, accepted)`` on each step's
  resolved interactions, before payoffs;
- ``_run_step_hooks(batch, epoch)`` after the step's rewards (``epoch`` when the step ends
  an epoch, else ``None``), inside ``with self._stepping():``, then ``_mark_bankrupt()``
  once resources are updated;
- ``_governance_info(i)`` to build ``infos[agent]["governance"]``.

It overrides ``_on_frozen_change()`` (masks follow a freeze) and ``_governance_ready()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from envs.core.api import invalidate_infos, stack_actions

__all__ = ["EpisodeKernel", "GovernedKernel"]


class GovernedKernel:
    """Hooks, per-lever freezes, state access and governance events (see module docstring)."""

    _label = "env"  # the name in error messages

    # ------------------------------------------------------------------ host plumbing
    def _init_governance(self) -> None:
        self._cost_hooks: list[Any] = []
        self._weight_hooks: list[Any] = []
        self._step_hooks: list[Any] = []
        self._epoch_hooks: list[Any] = []
        self._settle_hooks: list[Any] = []
        self._reset_hooks: list[Any] = []
        self._listeners: list[Any] = []
        self._freeze_bit: dict[str, int] = {"bankrupt": 0, "manual": 1}
        self._gov_seeds = np.random.SeedSequence()
        self._gov_events: list[dict] = []
        self._step_gov: list[tuple] = []
        self._in_step = False

    def _reset_governance(self, n: int, seed: int | None) -> None:
        if seed is not None:
            # levers draw from their own streams, so adding one never moves the env's draws
            self._gov_seeds = np.random.SeedSequence([seed, 0x60F])
        self._freeze_bits = np.zeros(n, dtype=np.uint64)  # one bit per reason (lever)
        self._gov_events = []
        self._step_gov = []

    def _run_reset_hooks(self) -> None:
        for hook, child in zip(self._reset_hooks,
                               self._gov_seeds.spawn(len(self._reset_hooks))):
            hook(np.random.default_rng(child))

    @contextlib.contextmanager
    def _stepping(self) -> Iterator[None]:
        """Marks the kernel's step: ``add_rewards`` is allowed, infos restart."""
        self._step_gov = []
        self._in_step = True
        try:
            yield
        finally:
            self._in_step = False

    def _apply_weight_hooks(self, batch: Any) -> Any:
        """Multiply ``batch.weight`` by every weight hook's answer; the weights or None."""
        if not self._weight_hooks:
            return None
        for hook in self._weight_hooks:
            w = hook(batch)
            if w is not None:
                batch.weight *= w
        return batch.weight

    def _apply_cost_hooks(self, batch: Any, accepted: np.ndarray) -> tuple[Any, Any]:
        """Add every cost hook's costs to ``c_a``/``c_b`` (zero where not accepted)."""
        if not self._cost_hooks:
            return 0.0, 0.0
        for hook in self._cost_hooks:
            costs = hook(batch)
            if costs is not None:
                batch.c_a += costs[0]
                batch.c_b += costs[1]
        batch.c_a *= accepted  # a rejected interaction pays nothing, costs included
        batch.c_b *= accepted
        return batch.c_a, batch.c_b

    def _run_step_hooks(self, batch: Any, epoch: int | None) -> None:
        for hook in self._step_hooks:
            hook(batch)
        if epoch is not None:
            for hook in self._epoch_hooks:
                hook(epoch)
        for hook in self._settle_hooks:  # the step's rewards are final here
            hook(batch)

    def _mark_bankrupt(self) -> bool:
        """Agents whose resources ran out are bankrupt, for good (bit 0), frozen by a lever
        or not; returns whether anyone new went bankrupt."""
        broke = (self.resources <= 0.0) & ((self._freeze_bits & np.uint64(1)) == 0)
        if not broke.any():
            return False
        self._freeze_bits[broke] |= np.uint64(1)
        self.frozen |= broke
        return True

    def _governance_info(self, i: int) -> list[dict]:
        return [{"lever": lever, "step": step, "data": data}
                for lever, step, who, data in self._step_gov if (who == i).any()]

    def _on_frozen_change(self) -> None:
        """Called after a freeze or release (the host updates its masks)."""

    def _governance_ready(self) -> bool:
        return True

    # ------------------------------------------------------------------ the seam
    def add_cost_hook(self, hook: Any) -> None:
        """Register ``hook(batch) -> (c_a, c_b) | None``, called on every resolved batch.

        The hook sees the step's interactions (``p``, ``accepted``, ``tau``, who, what) before
        payoffs are computed; the costs it returns (arrays of ``len(batch)`` or scalars) are
        added to ``c_a``/``c_b`` and so enter the payoffs, rewards, resources and the event
        log in the same step. Rejected interactions pay nothing, costs included. Hooks run
        in registration order.
        """
        self._cost_hooks.append(hook)

    def add_weight_hook(self, hook: Any) -> None:
        """Register ``hook(batch) -> weights | None``: multiplies each resolved interaction's
        surplus, externality and reputation effect (``batch.weight``)."""
        self._weight_hooks.append(hook)

    def add_step_hook(self, hook: Any) -> None:
        """Register ``hook(batch)``, called after each step's interactions are paid."""
        self._step_hooks.append(hook)

    def add_epoch_hook(self, hook: Any) -> None:
        """Register ``hook(epoch)``, called at each epoch end before the epoch is logged."""
        self._epoch_hooks.append(hook)

    def add_settle_hook(self, hook: Any) -> None:
        """Register ``hook(batch)``, called last in each step, after the epoch hooks, when
        the step's rewards are final (e.g. a stake check that must see an epoch-end debit)."""
        self._settle_hooks.append(hook)

    def add_reset_hook(self, hook: Any) -> None:
        """Register ``hook(rng)``, called at each reset with the lever's own generator
        (seeded from the reset seed, independent of the environment's draws)."""
        self._reset_hooks.append(hook)

    def add_listener(self, hook: Any) -> None:
        """Register ``hook(lever, data)``, called for every governance event."""
        self._listeners.append(hook)

    def set_frozen(self, agents: Any, frozen: bool = True, *, lever: str = "manual") -> None:
        """Freeze (or release) agents for one reason: a frozen agent may only pass and reject.

        ``agents``: names, indices or a boolean mask. Each ``lever`` freezes for its own
        reason, so releasing one lever's freeze never lifts another's (or a bankruptcy).
        The action masks follow at once.
        """
        if not self._governance_ready():
            raise RuntimeError(f"{self._label}: set_frozen() needs a reset() first")
        if lever == "bankrupt":
            raise ValueError(f"{self._label}: 'bankrupt' is the environment's own freeze "
                             "reason; a lever cannot set or lift it")
        idx = self._agent_index(agents)
        bit = self._freeze_bit.get(lever)
        if bit is None:
            if len(self._freeze_bit) >= 64:
                raise ValueError(f"{self._label}: at most 64 freezing levers")
            bit = self._freeze_bit[lever] = len(self._freeze_bit)
        flag = np.uint64(1) << np.uint64(bit)
        if frozen:
            self._freeze_bits[idx] |= flag
        else:
            self._freeze_bits[idx] &= ~flag
        np.not_equal(self._freeze_bits, 0, out=self.frozen)
        self._on_frozen_change()

    def frozen_mask(self) -> np.ndarray:
        """Who is frozen now, for any reason (a copy)."""
        return self.frozen.copy()

    def get_reputation(self) -> np.ndarray:
        """Public reputation of every agent (a copy)."""
        return self.reputation.copy()

    def set_reputation(self, values: Any) -> None:
        """Overwrite public reputation (finite values, one per agent)."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != self.reputation.shape or not np.isfinite(arr).all():
            raise ValueError(f"{self._label}: reputation must be {self.reputation.shape[0]} "
                             f"finite values, got shape {arr.shape}")
        self.reputation[:] = arr

    def get_resources(self) -> np.ndarray:
        """Resources of every agent (a copy); inside a hook, with this step's rewards so far."""
        return self.resources + self.reward_array if self._in_step else self.resources.copy()

    def add_rewards(self, delta: Any) -> None:
        """Inside a hook: add ``delta`` (one value per agent) to this step's rewards, and so
        to resources, in the same step."""
        if not self._in_step:
            raise RuntimeError(f"{self._label}: add_rewards() is for hooks, during a step")
        arr = np.asarray(delta, dtype=np.float64)
        if arr.shape != self.reward_array.shape or not np.isfinite(arr).all():
            raise ValueError(f"{self._label}: add_rewards needs {self.reward_array.shape[0]} "
                             f"finite values, got shape {arr.shape}")
        self.reward_array += arr

    def log_governance(self, lever: str, data: dict, agents: Any = ()) -> None:
        """Record what a lever did: the event log, ``infos[agent]["governance"]`` of the
        ``agents`` named, the per-epoch metrics (``data["summary"]``), the listeners."""
        step, epoch = self.clock
        self._gov_events.append(data)
        if self.event_log is not None:
            self.event_log.governance(step, epoch, lever, data)
        who = np.asarray(agents, dtype=np.int64).ravel()
        if len(who):  # infos[agent]["governance"] is built from these when read
            self._step_gov.append((lever, step, who, data))
        for hook in self._listeners:
            hook(lever, data)

    def pop_governance(self) -> list[dict]:
        """The governance events' data since the last call (the runner reads them per epoch)."""
        out, self._gov_events = self._gov_events, []
        return out

    @property
    def clock(self) -> tuple[int, int]:
        """``(step, epoch)`` of the step being played (of the next step between steps)."""
        t = min(self.t, self.max_steps - 1)
        return t, t // self.config.steps_per_epoch

    def _agent_index(self, agents: Any) -> np.ndarray:
        """Names, indices or a boolean mask -> checked agent indices."""
        n = len(self.possible_agents)
        if isinstance(agents, str):
            agents = [agents]
        arr = np.asarray(agents)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(f"{self._label}: an agent mask must have shape ({n},), got "
                                 f"{arr.shape}")
            return np.flatnonzero(arr)
        if arr.dtype.kind in "US":
            unknown = [a for a in arr.tolist() if a not in self.agent_name_mapping]
            if unknown:
                raise ValueError(f"{self._label}: unknown agents {unknown[:5]}")
            return np.array([self.agent_name_mapping[a] for a in arr.tolist()], dtype=np.int64)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{self._label}: agents must be names, indices or a boolean mask, "
                             f"got {arr.dtype} values {arr.ravel()[:5].tolist()}")
        idx = arr.astype(np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{self._label}: agent indices must lie in 0..{n - 1}, got "
                             f"{idx[(idx < 0) | (idx >= n)][:5].tolist()}")
        return idx


class EpisodeKernel(GovernedKernel):
    """The bookkeeping around a variant's game that every variant shares: one step, the
    epoch end, infos, cuts, state.

    On top of :class:`GovernedKernel`'s contract the host provides ``config.n_agents``,
    ``network``, ``cumulative_reward``, ``last_batch``, ``_touched`` (the dict door's
    touched infos), ``nvec``, ``action_dim_names`` and ``_noop``, and implements:

    - ``_play_step(actions, t, epoch, reward) -> InteractionBatch``: its game for one step,
      adding to ``reward`` (the governance hooks' step has begun: cost and weight hooks apply
      here);
    - ``_epoch_network()``: its network's dynamics at an epoch end (before it is logged);
    - ``_after_prune(old_keys)``: carry its per-entry state once the network's entries moved
      (``old_keys``: ``src * n + neighbour`` of every entry before);
    - ``_write_observations()``, ``view(i)``;

    and may override ``_bankruptcy_on()`` (default: on), ``_on_bankrupt()`` (after new
    bankruptcies), ``_after_step(batch)`` and ``_epoch_state()`` (its own state in each
    ``epoch_end``). A variant whose episode can end early sets ``terminated = True`` in
    ``_play_step`` or ``_after_step``: that step closes its epoch (logged with
    ``state.terminated``), the run ends, and ``step`` reports every agent terminated.
    """

    env_id = "env-v0"  # the registered id, logged in run_start

    def _init_episode(self, event_log: Any) -> None:
        """``__init__``'s shared part, once ``config`` is set: agents, groups, the log."""
        from pathlib import Path

        from envs.core.events import EventLog

        c = self.config
        self.render_mode = c.render_mode
        self.possible_agents = [f"agent_{i}" for i in range(c.n_agents)]
        self.agent_name_mapping = {a: i for i, a in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self.groups = list(c.groups) if c.groups is not None else ["agent"] * c.n_agents
        self.max_steps = c.n_epochs * c.steps_per_epoch
        self._rng = np.random.default_rng()
        if isinstance(event_log, (str, Path)):
            event_log = EventLog(event_log)
        self.event_log = event_log
        self._seed: int | None = None
        self._episode = -1
        self._init_governance()
        self._playing = False  # inside _play_step: the game's records are being paid
        self.network = None
        self.t = 0

    def _reset_episode(self, seed: int | None, max_neighbors: int, extra_bytes: int) -> None:
        """``reset``'s shared first part: memory check, seeding, the network, the agents'
        resources, reputation, freezes and rewards."""
        from envs.core.network import Network

        c = self.config
        n = c.n_agents
        c.network.check_memory(n, max_neighbors, extra_bytes=extra_bytes)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._reset_governance(n, seed)
        self._seed = seed
        self._episode += 1
        net_seed = int(self._rng.integers(2**31 - 1))
        self.network = Network.from_config(c.network, n, seed=net_seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        self.resources = np.full(n, c.initial_resources, dtype=np.float64)
        self.reputation = np.full(n, c.initial_reputation, dtype=np.float64)
        self.frozen = np.zeros(n, dtype=bool)
        self.reward_array = np.zeros(n, dtype=np.float64)
        self.cumulative_reward = np.zeros(n, dtype=np.float64)
        self._agent_rows = np.arange(n)[:, None]
        #: per agent, the steps of the current epoch whose action chose a masked value
        self.invalid_actions = np.zeros(n, dtype=np.int64)
        #: the same for the last complete epoch
        self.epoch_invalid = np.zeros(n, dtype=np.int64)
        #: per agent, whether the last step's action chose a masked value (read-only)
        self.step_invalid = self._no_invalid = np.zeros(n, dtype=bool)
        self._no_invalid.flags.writeable = False
        #: the episode ended before ``max_steps`` (a variant's terminal state, e.g. the
        #: commons' collapse): every agent is terminated, ``agents`` is empty
        self.terminated = False
        #: the variant's state logged with the last epoch end (see ``_epoch_state``)
        self.last_epoch_state: dict[str, Any] = {}

    def _finish_reset(self) -> tuple[dict, dict]:
        """``reset``'s shared last part, once the variant's arrays exist: the dict views,
        the levers' reset hooks, the first observations, ``run_start``."""
        self._build_dicts()
        self._run_reset_hooks()
        self._write_observations()
        if self.event_log is not None:
            self.event_log.run_start(env=self.env_id, config=self.config.model_dump(mode="json"),
                                     seed=self._seed, agents=self.possible_agents,
                                     groups=self.groups, episode=self._episode)
        return self._observations_out(), self.infos

    def step_arrays(self, actions: np.ndarray, validate: bool = True) -> np.ndarray:
        """The batched door: ``(n_agents, n_dims)`` int actions in, rewards out.

        Observations are left in ``obs_arrays`` (updated in place), the step's interaction
        records in ``last_batch``. Returns ``reward_array``.
        """
        if self.network is None or self.episode_over:
            raise RuntimeError(f"{self._label}: step called before reset() or after the "
                               "episode ended; call reset()")
        if validate:
            actions = stack_actions(actions, self.possible_agents, self.agent_name_mapping,
                                    self.nvec, self.action_dim_names, self._label, self._noop)
        invalidate_infos(self._touched)
        # masked choices are counted, never silently dropped: a value the observation's
        # mask did not allow (the game ignores it) counts once per agent and step
        am = self.obs_arrays.action_mask
        chosen = am[self._agent_rows, self._seg[:-1] + actions]
        if chosen.all():
            self.step_invalid = self._no_invalid
        else:
            self.step_invalid = ~chosen.all(axis=1)
            self.invalid_actions += self.step_invalid
        spe = self.config.steps_per_epoch
        t = self.t
        epoch = t // spe
        reward = self.reward_array
        reward[:] = 0.0
        with self._stepping():
            self._playing = True
            try:
                batch = self._play_step(actions, t, epoch, reward)
            finally:
                self._playing = False
            self._run_step_hooks(batch, epoch if (t + 1) % spe == 0 else None)
        self.resources += reward
        self.cumulative_reward += reward
        if self._bankruptcy_on() and self._mark_bankrupt():  # frozen for good
            self._on_bankrupt()
        self.last_batch = batch
        self._after_step(batch)
        log = self.event_log
        if log is not None and len(batch):
            log.interactions(t, epoch, batch)
        self.t = t + 1
        if self.t % spe == 0 or self.terminated:  # a terminal step ends its epoch early
            self._epoch_network()
            extra = self._epoch_state()
            if self.terminated:
                extra = {**extra, "terminated": True}
            self.last_epoch_state = extra
            if log is not None:
                log.epoch_end(epoch=epoch, step=t, edges=self.network.edge_list(),
                              state={"reputation": self.reputation,
                                     "resources": self.resources, "frozen": self.frozen,
                                     "invalid": self.invalid_actions, **extra})
            self.epoch_invalid = self.invalid_actions.copy()
            self.invalid_actions[:] = 0
        if self.episode_over:
            self.agents = []
            if log is not None:
                log.run_end(step=t, epoch=epoch)
        self._write_observations()
        return reward

    @property
    def episode_over(self) -> bool:
        """Whether the episode has ended: truncated at ``max_steps`` or terminated early."""
        return self.t >= self.max_steps or self.terminated

    def _epoch_state(self) -> dict[str, Any]:
        """The variant's JSON-able state at an epoch end, logged in ``epoch_end.state``
        beside the kernel's (and read back by the variant's metric columns)."""
        return {}

    def _bankruptcy_on(self) -> bool:
        return True

    def _on_bankrupt(self) -> None:
        self._on_frozen_change()

    def _after_step(self, batch: Any) -> None:
        """Called with each step's records once they are final."""

    def _entry_keys(self) -> np.ndarray:
        """``src * n + neighbour`` of every network entry (sorted, as the CSR is)."""
        net = self.network
        return net.src.astype(np.int64) * self.config.n_agents + net.indices

    def cut_edges(self, agents: Any) -> int:
        """Remove every edge of ``agents`` (a dynamic network only); returns edges cut.

        The slots are chosen again and, between steps, the observations and masks follow
        at once (as after :meth:`set_frozen`)."""
        if not self.config.network.dynamic:
            raise ValueError(f"{self._label}: cutting edges needs a dynamic network "
                             "(network.dynamic: true)")
        if self._playing:
            raise RuntimeError(f"{self._label}: cut_edges() from a cost or weight hook, while "
                               "the step's interactions are paid; cut from a step, epoch or "
                               "settle hook")
        idx = self._agent_index(agents)
        old_keys = self._entry_keys()
        cut = self.network.cut_nodes(idx)
        if cut:
            self._after_prune(old_keys)
            if not self._in_step:  # a cut between steps: the masks follow at once
                self._write_observations()
        return cut

    def _build_info(self, key: str, i: int) -> Any:
        if key == "interactions":
            b = self.last_batch
            sel = np.flatnonzero((b.initiator == i) | (b.counterparty == i))
            return b.select(sel).to_records(self.possible_agents)
        if key == "view":
            return self.view(i)
        if key == "governance":
            return self._governance_info(i)
        if key == "action_mask":  # the flat mask (what sb3-contrib's MaskablePPO reads)
            return self.obs_arrays.action_mask[i].copy()
        raise KeyError(key)

    def state(self) -> np.ndarray:
        """Global state: resources, reputation and frozen flag of every agent."""
        return np.stack([self.resources, self.reputation,
                         self.frozen.astype(np.float64)], axis=1)

    def close(self) -> None:
        if self.event_log is not None:
            self.event_log.close()
