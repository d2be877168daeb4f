"""Dilemma: the iterated prisoner's dilemma on a network, with soft labels.

Each round every agent plays C or D with each neighbour shown in its slots: one move per
neighbour, so an agent may cooperate with one partner and defect on another. A move may
flip as it is played (execution noise) and again as the partner sees it (perception noise).
The platform labels every move with ``p``, the posterior probability that the mover really
cooperated given what its partner perceived; rewards are the expected matrix payoff under
that label. Two-agent play is the complete graph on two agents (the default).

=================  ==========================================================================
Agents             ``agent_0 .. agent_{n-1}``; a fixed set (frozen agents stay, masked)
Action             ``MultiDiscrete([2] * K)``: the move toward the neighbour in each slot,
                   ``0`` = C (cooperate), ``1`` = D (defect); a slot without a game (empty,
                   or a frozen side) allows only ``0``, which plays nothing
Observation        ``Dict``: ``self`` (``SELF_FEATURES``), ``neighbors`` ``(K, len(NEIGHBOR_
                   FEATURES))``, ``neighbor_mask`` ``(K,)``, ``their_moves`` and ``my_moves``
                   ``(K, H)`` int8 (0 = C, 1 = D; the last ``H`` moves with that neighbour,
                   most recent last; only the last ``rounds`` columns are real, the rest are
                   0), ``action_mask`` (a ``Tuple`` of ``MultiBinary(2)``, one per slot)
Reward             the expected matrix payoff of each game played this round under the label
                   ``p`` of the partner's move, summed over the agent's games, minus
                   governance costs; ``reward_mode="realized"`` uses the partner's real move
Soft labels        intended move -> executed move (flips with ``noise``: the hidden truth
                   ``v``) -> the partner's perception (flips with ``perception_noise``) ->
                   ``p = P(executed C | perceived move)`` by Bayes with the prior ``prior``
Episode            ``n_epochs * steps_per_epoch`` rounds, then truncation of every agent
infos[agent]       lazily built: ``"interactions"`` (this round's records involving the
                   agent), ``"view"`` (a JSON-able view for text policies) and
                   ``"governance"`` (this round's governance events naming the agent)
=================  ==========================================================================

Payoffs. ``T, R, P, S`` (temptation, reward, punishment, sucker's payoff): default 5, 3, 1,
0. Presets (:data:`PAYOFF_PRESETS`, ``payoff: {preset: <name>}``): ``classic`` (5, 3, 1, 0);
``llm_study``, the payoffs of the LLM prisoner's-dilemma study (CC 2/2, CD −1/3, DC 3/−1,
DD 0/0: T 3, R 2, P 0, S −1); ``prison_years``, its prompt's framing as years in prison (CC
one year each, CD ten years for the cooperator and none for the defector, DD five each),
scored as minus the years (T 0, R −1, P −5, S −10), with ``framing: prison_years`` so that
text views speak in years.

Records. Each game of a round gives two interaction records, one per player: the record
``(initiator i, counterparty j)`` is *i's move toward j*. ``v`` is +1 when i's executed move
was C; ``v_hat`` is +1 when j perceived C, else -1; ``p`` is the posterior above; ``effort``
is 1 when i intended C; ``accepted`` is always true (a game is always played). ``payoff_a`` is
i's payoff from the game (expected under the label of j's move in soft mode), less i's
governance costs ``c_a``; ``payoff_b`` is ``-c_b`` (j's payoff from the game is in the twin
record ``(j, i)``), so summing ``payoff_a`` and ``payoff_b`` per agent gives its reward.
``r_a`` is the record's share of i's reputation change. Read through the soft metrics:
``toxicity`` is the labels' expected defection rate, ``realized_harm_rate`` the true one,
``welfare`` the total payoff, and the calibration metrics compare ``p`` with the true moves.

Neighbour slots are **mutual**: a pair plays when each shows the other, and every slot shown
is shown back (:meth:`envs.core.network.Network.mutual_slots`). On a graph where no agent has
more than ``K = min(max_neighbors, n_agents - 1)`` neighbours every edge is played; otherwise
the heaviest edges (ties by a seeded random key) are selected so that no agent exceeds ``K``.

Reputation. Each round moves an agent's public reputation by the mean over its games of
``p - 0.5`` (scaled by a governance weight where a lever sets one): the record that its
partners saw it cooperate.

Dynamic networks. With ``network.dynamic``, a game in which both executed C strengthens its
edge; weights decay and weak edges are pruned at each epoch end, and the slots are chosen
again, heaviest first. A pair still shown keeps its history.

Governance seam. As the sandbox: :class:`envs.core.kernel.EpisodeKernel` (the step's
bookkeeping, cost, weight, step, epoch, settle and reset hooks, per-lever freezes, reputation
and resources, events, ``cut_edges``). A frozen agent plays no games (its slots allow only
the no-op). Resources start at ``initial_resources`` and take every reward; with
``bankruptcy: true`` an agent whose resources reach 0 is frozen for good (off by default:
dilemma payoffs are scores).

Hot path. ``step`` is a thin door onto :meth:`DilemmaEnv.step_arrays`, one numpy pass over
every game of the round, laid out by flat slot (agent * K + slot). Observations are views
into preallocated arrays updated in place: **an observation is valid until the next step**
(``copy_observations=True`` for fresh copies).

Version history: v0 — first release.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils import parallel_to_aec
from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from envs.core.api import DictDoor, config_problems, episode_problems
from envs.core.events import EventLog
from envs.core.kernel import EpisodeKernel
from envs.core.network import NetworkConfig
from envs.core.records import InteractionBatch, InteractionType
from envs.core.slots import NeighborSlots, carry_by_pair

C, D = 0, 1
MOVES = ("C", "D")
SELF_FEATURES = ("resources", "payoff_so_far", "last_reward", "reputation", "frozen",
                 "episode_progress", "partners")
NEIGHBOR_FEATURES = ("reputation", "edge_weight", "rounds", "their_cooperation",
                     "my_cooperation", "payoff_with", "their_defected")

_S = {k: i for i, k in enumerate(SELF_FEATURES)}
_N = {k: i for i, k in enumerate(NEIGHBOR_FEATURES)}

_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
_AMOUNT = 1e12  # bound on payoffs and resources (as envs.core.payoff.MAX_AMOUNT)
_GAME = int(InteractionType.GAME)

PAYOFF_PRESETS: dict[str, dict[str, Any]] = {
    "classic": {"T": 5.0, "R": 3.0, "P": 1.0, "S": 0.0},
    "llm_study": {"T": 3.0, "R": 2.0, "P": 0.0, "S": -1.0},
    "prison_years": {"T": 0.0, "R": -1.0, "P": -5.0, "S": -10.0, "framing": "prison_years"},
}
"""Named payoffs: ``classic`` (T, R, P, S = 5, 3, 1, 0), ``llm_study`` (CC 2/2, CD −1/3,
DC 3/−1, DD 0/0) and ``prison_years`` (minus the years of the study's prompt: CC 1 each,
CD 10 for the cooperator, DC 0, DD 5 each)."""


class DilemmaPayoff(BaseModel):
    """The payoff matrix: ``T``\\ emptation, ``R``\\ eward, ``P``\\ unishment, ``S``\\ ucker.

    The row player earns ``R`` for CC, ``S`` for CD, ``T`` for DC and ``P`` for DD. A prisoner's
    dilemma has ``T > R > P > S`` (and ``2R > T + S`` for the iterated game); other orders
    (stag hunt, chicken) are allowed. Give the four numbers or ``{preset: <name>}``
    (:data:`PAYOFF_PRESETS`), not both. ``framing`` is how text views state the payoffs:
    ``points`` or ``prison_years`` (years = minus the payoff).

    Example:
        >>> DilemmaPayoff(preset="llm_study").rstp()
        (2.0, -1.0, 3.0, 0.0)
    """

    model_config = _STRICT

    T: float = Field(5.0, ge=-_AMOUNT, le=_AMOUNT, description="temptation: D against C")
    R: float = Field(3.0, ge=-_AMOUNT, le=_AMOUNT, description="reward: C against C")
    P: float = Field(1.0, ge=-_AMOUNT, le=_AMOUNT, description="punishment: D against D")
    S: float = Field(0.0, ge=-_AMOUNT, le=_AMOUNT, description="sucker's payoff: C against D")
    framing: Literal["points", "prison_years"] = Field(
        "points", description="how text views state payoffs (prison_years: minus the payoff)")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "preset" not in data:
            return data
        name = data["preset"]
        others = sorted(set(data) - {"preset"})
        if others:
            raise ValueError(f"give a preset or the payoffs {', '.join(others)}, not both")
        if not isinstance(name, str) or name not in PAYOFF_PRESETS:
            raise ValueError(f"unknown payoff preset {name!r}; allowed: "
                             f"{', '.join(PAYOFF_PRESETS)}")
        return dict(PAYOFF_PRESETS[name])

    def table(self) -> np.ndarray:
        """``table[my move][their move]`` -> my payoff (moves 0 = C, 1 = D)."""
        return np.array([[self.R, self.S], [self.T, self.P]], dtype=np.float64)

    def rstp(self) -> tuple[float, float, float, float]:
        """``(R, S, T, P)``, the order :mod:`baselines.tournament` uses."""
        return (self.R, self.S, self.T, self.P)

    @property
    def is_dilemma(self) -> bool:
        """``T > R > P > S`` and ``2R > T + S``."""
        return self.T > self.R > self.P > self.S and 2 * self.R > self.T + self.S


class DilemmaConfig(BaseModel):
    """Everything that defines a dilemma episode (validated; unknown keys are errors).

    Strict like the sandbox's config: an int field takes an int, a bool a bool, a float a
    finite number; tuple fields accept lists; problems are reported with their field path.
    """

    model_config = _STRICT

    n_agents: int = Field(2, ge=2, le=2**31 - 1, description="number of agents")
    n_epochs: int = Field(10, ge=1, description="epochs per episode")
    steps_per_epoch: int = Field(20, ge=1, description="rounds per epoch")
    max_neighbors: int = Field(8, ge=1, le=10_000,
                               description="neighbour slots K: games per agent per round "
                               "(at most n_agents - 1 are used)")
    history_length: int = Field(5, ge=1, le=10_000,
                                description="moves H per neighbour in the observation")
    noise: float = Field(0.0, ge=0.0, le=1.0,
                         description="probability that a played move flips (execution)")
    perception_noise: float = Field(0.0, ge=0.0, le=0.5,
                                    description="probability that a seen move flips")
    prior: float = Field(0.5, gt=0.0, lt=1.0,
                         description="prior P(cooperate) of the posterior label p")
    payoff: DilemmaPayoff = Field(default_factory=DilemmaPayoff,
                                  description="T, R, P, S, or {preset: name}")
    reward_mode: Literal["soft", "realized"] = "soft"
    initial_resources: float = Field(0.0, ge=-_AMOUNT, le=_AMOUNT,
                                     description="starting resources")
    initial_reputation: float = Field(0.0, ge=-_AMOUNT, le=_AMOUNT,
                                      description="starting public reputation")
    bankruptcy: bool = Field(False, description="freeze for good an agent whose resources "
                                                "reach 0")
    network: NetworkConfig = Field(default_factory=lambda: NetworkConfig(topology="complete"))
    groups: Annotated[tuple[str, ...], Strict(False)] | None = Field(
        None, description="label per agent, for reports")
    copy_observations: bool = Field(False, description="return fresh copies each step")
    render_mode: Literal["ansi", "human"] | None = None

    @model_validator(mode="after")
    def _check(self) -> DilemmaConfig:
        problems = episode_problems(self.n_agents, self.n_epochs, self.steps_per_epoch,
                                    self.network, groups=self.groups)
        if self.bankruptcy and self.initial_resources <= 0:
            problems.append(("initial_resources", (
                f"bankruptcy freezes an agent whose resources reach 0, so it needs "
                f"initial_resources > 0, got {self.initial_resources}")))
        if problems:
            raise config_problems(problems)
        return self

    def posterior(self) -> np.ndarray:
        """``[P(C | seen C), P(C | seen D)]`` for this prior and perception noise."""
        e, q = self.perception_noise, self.prior
        seen_c = q * (1 - e) / (q * (1 - e) + (1 - q) * e)
        seen_d = q * e / (q * e + (1 - q) * (1 - e))
        return np.array([seen_c, seen_d], dtype=np.float64)


class ObsArrays:
    """The preallocated observation arrays of all agents (the batched door's observation)."""

    def __init__(self, n: int, k: int, h: int) -> None:
        self.self_ = np.zeros((n, len(SELF_FEATURES)), dtype=np.float32)
        self.neighbors = np.zeros((n, k, len(NEIGHBOR_FEATURES)), dtype=np.float32)
        self.neighbor_mask = np.zeros((n, k), dtype=np.int8)
        self.their_moves = np.zeros((n, k, h), dtype=np.int8)
        self.my_moves = np.zeros((n, k, h), dtype=np.int8)
        self.action_mask = np.ones((n, 2 * k), dtype=np.int8)

    def named(self) -> dict[str, np.ndarray]:
        """The observation arrays by their names in the observation space."""
        return {"self": self.self_, "neighbors": self.neighbors,
                "neighbor_mask": self.neighbor_mask, "their_moves": self.their_moves,
                "my_moves": self.my_moves}


class _PairState:
    """What each agent remembers of each neighbour, laid out by flat slot (agent * K + k)."""

    FIELDS = ("their", "mine", "rounds", "seen_coop", "my_coop", "payoff_with", "defected")

    def __init__(self, size: int, h: int) -> None:
        self.their = np.zeros((size, h), dtype=np.int8)   # perceived moves of the neighbour
        self.mine = np.zeros((size, h), dtype=np.int8)    # own executed moves toward it
        self.rounds = np.zeros(size, dtype=np.int64)
        self.seen_coop = np.zeros(size, dtype=np.int64)
        self.my_coop = np.zeros(size, dtype=np.int64)
        self.payoff_with = np.zeros(size, dtype=np.float64)
        self.defected = np.zeros(size, dtype=bool)        # ever seen to defect

    def arrays(self) -> list[np.ndarray]:
        return [getattr(self, f) for f in self.FIELDS]

    def replace(self, arrays: list[np.ndarray]) -> None:
        for f, a in zip(self.FIELDS, arrays):
            setattr(self, f, a)


class DilemmaEnv(DictDoor, EpisodeKernel, ParallelEnv):
    """The iterated prisoner's dilemma ``ParallelEnv`` (see the module docstring)."""

    metadata = {"name": "dilemma_v0", "render_modes": ["ansi", "human"],
                "is_parallelizable": True}
    _label = "dilemma"
    env_id = "dilemma-v0"
    _info_keys = ("interactions", "view", "governance", "action_mask")
    #: the labels of each observation array's last axis (the flat view's feature names)
    #: (``their_moves`` and ``my_moves`` are labelled ``lag_H .. lag_1`` per instance)
    OBS_FEATURES = {"self": SELF_FEATURES, "neighbors": NEIGHBOR_FEATURES}

    def __init__(self, config: DilemmaConfig | None = None, *,
                 event_log: str | Path | EventLog | None = None, **overrides: Any) -> None:
        if config is None:
            config = DilemmaConfig(**overrides)
        elif overrides:
            config = DilemmaConfig(**{**config.model_dump(), **overrides})
        self.config = c = config
        self._init_episode(event_log)
        # no agent has more than n - 1 neighbours: two agents get one slot each
        self.K, self.H = min(c.max_neighbors, c.n_agents - 1), c.history_length
        lags = tuple(f"lag_{self.H - h}" for h in range(self.H))  # most recent last
        self.OBS_FEATURES = {**type(self).OBS_FEATURES, "their_moves": lags, "my_moves": lags}
        self.nvec = np.full(self.K, 2, dtype=np.int64)
        self.action_dim_names = [f"move_{k}" for k in range(self.K)]
        self._noop = np.zeros(self.K, dtype=np.int64)
        self._table = c.payoff.table()
        self._post = c.posterior()
        K, H = self.K, self.H
        self._obs_space = spaces.Dict({
            "self": spaces.Box(-np.inf, np.inf, (len(SELF_FEATURES),), np.float32),
            "neighbors": spaces.Box(-np.inf, np.inf, (K, len(NEIGHBOR_FEATURES)), np.float32),
            "neighbor_mask": spaces.Box(0, 1, (K,), np.int8),
            "their_moves": spaces.Box(0, 1, (K, H), np.int8),
            "my_moves": spaces.Box(0, 1, (K, H), np.int8),
            "action_mask": spaces.Tuple([spaces.MultiBinary(2) for _ in range(K)]),
        })
        self._make_spaces()
        self.obs_arrays: ObsArrays | None = None
        self._refresh_pending = False

    # ------------------------------------------------------------------ reset
    def reset(self, seed: int | None = None, options: dict | None = None):
        n, K = self.config.n_agents, self.K
        # move histories: state and observation, theirs and mine (4 H bytes), and the rest
        self._reset_episode(seed, K, extra_bytes=n * K * (4 * self.H + 64))
        self._tie_key = self._rng.random(len(self.network.indices))
        self._pairs = _PairState(n * K, self.H)
        self.slots: NeighborSlots | None = None
        self._rebuild_slots()
        self.last_batch = _EMPTY_BATCH
        self.step_stats: dict[str, int] = {"games": 0, "cooperated": 0}
        self.obs_arrays = ObsArrays(n, K, self.H)
        return self._finish_reset()

    # ------------------------------------------------------------------ slots and games
    def _rebuild_slots(self) -> None:
        """Choose the mutual slots again; pairs still shown keep their history."""
        old = self.slots
        n = self.config.n_agents
        self.slots = slots = NeighborSlots(self.network, self.K, self._tie_key, mutual=True)
        if old is not None:
            self._pairs.replace(carry_by_pair(old.pair_keys(n), slots.pair_keys(n),
                                              *self._pairs.arrays()))
        self._static_dirty = True
        self._refresh_games()

    def _refresh_games(self) -> None:
        """Which flat slots play this round (a neighbour shown, neither side frozen)."""
        K, slots = self.K, self.slots
        live = ~self.frozen
        flat_nb = slots.nb.ravel()
        rows = np.repeat(np.arange(self.config.n_agents), K)
        played = slots.mask.ravel() & live[rows] & live[flat_nb]
        g = np.flatnonzero(played)
        where = np.full(played.size, -1, dtype=np.int64)
        where[g] = np.arange(len(g))
        self._played = played
        self._g = g                                   # flat slot of each game side
        self._g_rev = where[slots.rev[g]]             # index of the partner's side
        self._g_agent = (g // K).astype(np.int32)
        self._g_nb = flat_nb[g].astype(np.int32)
        self._g_entry = slots.pos.ravel()[g]
        self._g_upper = np.flatnonzero(self._g_agent < self._g_nb)  # one side per game
        self._games = np.bincount(self._g_agent, minlength=self.config.n_agents)
        self._per_game = 1.0 / np.maximum(self._games, 1)[self._g_agent]
        # slots shown but not played (a frozen side): their move history stands still
        self._stale = np.flatnonzero(slots.mask.ravel() & ~played)

    def _after_prune(self, old_keys: np.ndarray) -> None:
        """After the network's entries moved: carry the tie keys, choose slots again."""
        self._tie_key = self._tie_key[np.searchsorted(old_keys, self._entry_keys())]
        self._rebuild_slots()

    # ------------------------------------------------------------------ governance seam
    def _governance_ready(self) -> bool:
        return self.network is not None

    def _on_frozen_change(self) -> None:
        self._static_dirty = True
        if self._playing:  # a freeze from a cost or weight hook: this round is played
            # and paid as it started; the freeze takes effect from the next round
            self._refresh_pending = True
            return
        self._refresh_games()
        if not self._in_step:
            self._write_observations()

    # ------------------------------------------------------------------ step
    def _bankruptcy_on(self) -> bool:
        return self.config.bankruptcy

    def _on_bankrupt(self) -> None:
        self._static_dirty = True
        self._refresh_games()  # a bankrupt agent plays no more games

    def _play_step(self, actions: np.ndarray, t: int, epoch: int,
                   reward: np.ndarray) -> InteractionBatch:
        """Play every game of the round; return its records."""
        g = self._g
        m = len(g)
        self.step_stats.update(games=m // 2)
        if m == 0:
            self.step_stats["cooperated"] = 0
            return _EMPTY_BATCH
        c = self.config
        intended = actions.reshape(-1)[g].astype(np.int8)
        x = intended
        if c.noise > 0.0:
            x = x ^ (self._rng.random(m) < c.noise).astype(np.int8)
        y = x  # the partner's perception of each move
        if c.perception_noise > 0.0:
            y = x ^ (self._rng.random(m) < c.perception_noise).astype(np.int8)
        p = self._post[y]
        rev = self._g_rev
        x_partner, p_partner, seen = x[rev], p[rev], y[rev]
        table = self._table
        if c.reward_mode == "soft":  # my payoff against C, against D (1-D takes: cheaper)
            pay = (table[:, C].take(x) * p_partner
                   + table[:, D].take(x) * (1.0 - p_partner))
        else:
            pay = table[x, x_partner]
        cooperated = x == C
        batch = InteractionBatch(
            initiator=self._g_agent, counterparty=self._g_nb,
            kind=np.full(m, _GAME, dtype=np.int8), accepted=np.ones(m, dtype=bool),
            v=np.where(cooperated, 1, -1).astype(np.int8),
            effort=(intended == C).astype(np.float64), dressing=np.zeros(m),
            task_progress=np.zeros(m), rework_count=np.zeros(m, dtype=np.int16),
            verifier_rejections=np.zeros(m, dtype=np.int16),
            tool_misuse=np.zeros(m, dtype=np.int16), engagement=np.zeros(m),
            v_hat=np.where(y == C, 1.0, -1.0), p=p, tau=np.zeros(m), c_a=np.zeros(m),
            c_b=np.zeros(m), r_a=(p - 0.5) * self._per_game, r_b=np.zeros(m),
            payoff_a=pay, payoff_b=np.zeros(m), weight=np.ones(m),
            step=np.full(m, t, dtype=np.int32), epoch=np.full(m, epoch, dtype=np.int32))
        n = c.n_agents
        weight = self._apply_weight_hooks(batch)
        if weight is not None:
            pay *= weight
            batch.r_a *= weight
        if self._cost_hooks:
            c_a, c_b = self._apply_cost_hooks(batch, batch.accepted)
            pay -= c_a
            np.negative(c_b, out=batch.payoff_b)
            reward += np.bincount(self._g_nb, weights=batch.payoff_b, minlength=n)
        reward += np.bincount(self._g_agent, weights=pay, minlength=n)
        self.reputation += np.bincount(self._g_agent, weights=batch.r_a, minlength=n)
        # what each side remembers of the game
        st = self._pairs
        stale = self._stale
        for hist, move in ((st.their, seen), (st.mine, x)):
            # every row one move left in one contiguous byte shift (a gather/scatter of the
            # played rows cost ~4x more); empty slots' rows are all zero and stay so, the
            # rows of slots shown but not played are put back
            keep = hist[stale] if len(stale) else None
            if not hist.flags.c_contiguous:  # reshape would copy: the shift would be lost
                raise AssertionError("dilemma: move history must be C-contiguous")
            flat = hist.reshape(-1)
            flat[:-1] = flat[1:]
            last = np.zeros(len(hist), dtype=np.int8)
            last[g] = move
            hist[:, -1] = last
            if keep is not None:
                hist[stale] = keep
        st.rounds[g] += 1
        st.seen_coop[g] += seen == C
        st.my_coop[g] += cooperated
        st.payoff_with[g] += pay
        st.defected[g] |= seen == D
        self.step_stats["cooperated"] = int(np.count_nonzero(cooperated))
        if c.network.dynamic:
            up = self._g_upper
            both = up[cooperated[up] & (x_partner[up] == C)]
            if len(both):
                self.network.strengthen(self._g_entry[both])
        if self._refresh_pending:
            self._refresh_pending = False
            self._refresh_games()
        return batch

    def _epoch_network(self) -> None:
        net = self.network
        if net.config.dynamic:
            old_keys = self._entry_keys()
            if net.end_epoch():
                self._after_prune(old_keys)
            else:  # same entries, new weights: the heaviest edges take the slots
                self._rebuild_slots()

    # ------------------------------------------------------------------ observations
    def _write_observations(self) -> None:
        c = self.config
        oa = self.obs_arrays
        n, K = c.n_agents, self.K
        s = oa.self_
        s[:, _S["resources"]] = self.resources
        s[:, _S["payoff_so_far"]] = self.cumulative_reward
        s[:, _S["last_reward"]] = self.reward_array
        s[:, _S["reputation"]] = self.reputation
        s[:, _S["episode_progress"]] = self.t / self.max_steps
        st, slots = self._pairs, self.slots
        nb = oa.neighbors.reshape(n * K, len(NEIGHBOR_FEATURES))
        mask = slots.mask.ravel()
        nb[:, _N["reputation"]] = np.where(mask, self.reputation[slots.nb.ravel()], 0.0)
        rounds = np.maximum(st.rounds, 1)
        nb[:, _N["rounds"]] = st.rounds
        nb[:, _N["their_cooperation"]] = st.seen_coop / rounds
        nb[:, _N["my_cooperation"]] = st.my_coop / rounds
        nb[:, _N["payoff_with"]] = st.payoff_with
        nb[:, _N["their_defected"]] = st.defected
        oa.their_moves.reshape(n * K, self.H)[:] = st.their
        oa.my_moves.reshape(n * K, self.H)[:] = st.mine
        if self._static_dirty or c.network.dynamic:
            w = self.network.weights
            nb[:, _N["edge_weight"]] = np.where(mask, w[slots.pos.ravel()] if len(w) else 0.0,
                                                0.0)
        if self._static_dirty:  # what changes only with the slots or a freeze
            s[:, _S["frozen"]] = self.frozen
            s[:, _S["partners"]] = self._games
            oa.neighbor_mask[:] = slots.mask
            oa.action_mask[:, 1::2] = self._played.reshape(n, K)  # D only where a game is
            self._static_dirty = False

    # ------------------------------------------------------------------ infos (lazy)
    def payoff_text(self) -> dict[str, str]:
        """The payoff matrix in the config's framing, for text policies."""
        pay = self.config.payoff
        if pay.framing == "prison_years":
            def say(v: float) -> str:
                years = 0.0 - v  # not -v: a payoff of 0 is "0 years", never "-0 years"
                return f"{years:g} year{'s' if years != 1 else ''} in prison"
        else:
            def say(v: float) -> str:
                return f"{v:g} point{'' if v == 1 else 's'}"
        return {"CC": f"you get {say(pay.R)}, they get {say(pay.R)}",
                "CD": f"you get {say(pay.S)}, they get {say(pay.T)}",
                "DC": f"you get {say(pay.T)}, they get {say(pay.S)}",
                "DD": f"you get {say(pay.P)}, they get {say(pay.P)}"}

    def view(self, i: int | str) -> dict:
        """A JSON-able view of one agent (what a text policy is shown): per neighbour slot,
        the moves so far (oldest first, as ``"C"``/``"D"``, theirs as perceived)."""
        if isinstance(i, str):
            i = self.agent_name_mapping[i]
        names, K, st = self.possible_agents, self.K, self._pairs
        neighbours = []
        for k in np.flatnonzero(self.slots.mask[i]):
            f = i * K + int(k)
            r = int(min(st.rounds[f], self.H))
            neighbours.append({
                "slot": int(k), "agent": names[int(self.slots.nb[i, k])],
                "plays": bool(self._played[f]), "rounds": int(st.rounds[f]),
                "their_moves": [MOVES[v] for v in st.their[f, self.H - r:]],
                "my_moves": [MOVES[v] for v in st.mine[f, self.H - r:]],
                "their_cooperation": round(float(st.seen_coop[f] / max(st.rounds[f], 1)), 4),
                "payoff_with": round(float(st.payoff_with[f]), 4),
                "reputation": round(float(self.reputation[self.slots.nb[i, k]]), 4)})
        return {
            "agent": names[i], "step": self.t, "epoch": self.epoch,
            "max_steps": self.max_steps, "payoff_so_far": round(float(
                self.cumulative_reward[i]), 4),
            "reputation": round(float(self.reputation[i]), 4),
            "frozen": bool(self.frozen[i]), "payoffs": self.payoff_text(),
            "neighbors": neighbours, "actions": self.action_layout(),
            "mask": self.allowed_actions(i),
        }

    def action_layout(self) -> dict:
        """What each action dimension means (for docs and text policies)."""
        return {f"move_{k}": ["C", "D"] for k in range(self.K)}

    # ------------------------------------------------------------------ misc
    def render(self) -> str | None:
        if self.render_mode is None:
            gymnasium.logger.warn("dilemma: render() called without a render_mode")
            return None
        b = self.last_batch
        coop = float((b.v > 0).mean()) if len(b) else float("nan")
        return (f"round {self.t}/{self.max_steps} epoch {self.epoch} | games "
                f"{self.step_stats['games']} | cooperation {coop:.3f} | mean p "
                f"{(float(b.p.mean()) if len(b) else float('nan')):.3f} | mean reward "
                f"{float(self.reward_array.mean()):.3f}")

    def __str__(self) -> str:
        return "dilemma_v0"


_EMPTY_BATCH = InteractionBatch.empty(0)


def parallel_env(**config: Any) -> DilemmaEnv:
    """PettingZoo-style factory: ``parallel_env(n_agents=10, ...)``."""
    return DilemmaEnv(**config)


def env(**config: Any):
    """AEC version (via ``parallel_to_aec``), for PettingZoo habits."""
    return parallel_to_aec(parallel_env(**config))
