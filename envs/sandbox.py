"""Sandbox: an interaction marketplace on a network, with soft labels.

Agents propose interactions (collaboration, reply, trade, task, vote) to a neighbour. The
proposer chooses **effort** (which sets the hidden ``P(v = +1)`` and costs resources) and
**signal dressing** (which raises the observable signals, costs resources and leaves ``v``
alone), and offers a **transfer** ``tau``. The proposal lands in the counterparty's inbox with
its observable signals, the platform's soft label ``p`` and the proposer's public reputation;
the counterparty accepts or rejects it with its next action. Acceptance is information
(Glosten–Milgrom): when dressed proposals are the ones that get accepted, the quality gap
measured on the hidden truth turns negative — adverse selection.

=================  ==========================================================================
Agents             ``agent_0 .. agent_{n-1}``; a fixed set (bankrupt agents stay, masked)
Action             ``MultiDiscrete([6, K, n_effort, n_dressing, n_transfer] + [2] * M)``:
                   kind (0 = none, 1..5 = collaboration, reply, trade, task, vote),
                   target neighbour slot, effort level, dressing level, transfer level,
                   then accept (1) / reject (0) for each of the ``M`` inbox slots
Observation        ``Dict``: ``self`` (``SELF_FEATURES``), ``neighbors`` ``(K, len(NEIGHBOR_
                   FEATURES))``, ``neighbor_mask`` ``(K,)``, ``inbox`` ``(M, len(INBOX_
                   FEATURES))``, ``action_mask`` (a ``Tuple`` of ``MultiBinary``, one per
                   action dimension, as ``MultiDiscrete.sample(mask=...)`` expects)
Reward             soft payoff of the interactions resolved this step (initiator side
                   ``pi_a``, counterparty side ``pi_b``) minus the effort and dressing costs
                   of the proposal made this step; ``reward_mode="realized"`` uses the hidden
                   truth in place of ``p``
Soft labels        proposal -> ``v ~ P(v=+1) = q0 + (q1 - q0) * effort`` -> observables drawn
                   from ``v``'s ranges, shifted by dressing -> ``v_hat`` -> ``p``
Episode            ``n_epochs * steps_per_epoch`` steps, then truncation of every agent
infos[agent]       lazily built: ``"interactions"`` (this step's :class:`SoftInteraction`
                   records involving the agent), ``"view"`` (a JSON-able neighbourhood
                   view for text policies) and ``"governance"`` (this step's governance
                   events naming the agent: ``{"lever", "step", "data"}``)
=================  ==========================================================================

Timing. A proposal made at step ``t`` is seen in the counterparty's inbox after step ``t``
and resolved at step ``t + 1`` by the counterparty's action; both parties' payoffs arrive in
that step's rewards. At most ``M`` proposals reach one inbox per step (a seeded random choice
among them); the rest bounce (counted, no record). Proposals still pending when the episode
ends are dropped. A hidden ``v`` is drawn for every delivered proposal, so rejected
proposals carry a truth too (the quality gap needs them).

Neighbour slots. An agent sees up to ``K`` neighbours: its heaviest edges, ties broken by a
seeded random key per edge end (so on a dense graph every agent sees its own sample). On a
dynamic network the slots are re-ranked at every epoch end; a proposal in flight whose edge
is pruned at that moment is dropped (its effort and dressing were already paid).

Governance seam. The sandbox implements :class:`envs.core.governance.GovernanceSeam` through
the shared :class:`envs.core.kernel.EpisodeKernel` (the step's bookkeeping, on
:class:`~envs.core.kernel.GovernedKernel`: cost, weight, step, epoch, settle and reset hooks,
per-lever freezes, reputation and resources, governance events, ``cut_edges``): a lever's
costs reach ``c_a``/``c_b``, payoffs, rewards, resources and the event log in the same step;
a frozen agent may only pass and reject.

Reputation. An accepted interaction moves the initiator's public reputation by ``p - 0.5``,
which is also its reputation term ``r_a`` in the payoff (``r_b = 0``). The counterparty's
*trust* in the initiator (mean ``p`` of what it accepted from them, 0.5 when unknown) is kept
per edge and shown in the observation.

Hot path. ``step`` is a thin door onto :meth:`SandboxEnv.step_arrays`, which runs one numpy
pass over all agents. Observations are views into preallocated arrays, built once at reset
and updated in place: **an observation is valid until the next step** (pass
``copy_observations=True`` for fresh copies). The batched door (``step_arrays``,
``obs_arrays``, ``reward_array``) serves vectorised trainers and the benchmarks.

Version history: v0 — first release.
"""

from __future__ import annotations

from collections import deque
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
from envs.core.payoff import PayoffConfig, SoftPayoffEngine
from envs.core.proxy import ProxyComputer, ProxyWeights
from envs.core.records import InteractionBatch, InteractionType
from envs.core.slots import NeighborSlots

KINDS = InteractionType.names()[:5]  # what a sandbox agent can propose (not GAME)
SELF_FEATURES = ("resources", "reputation", "frozen", "inbox_count", "episode_progress",
                 "n_initiated", "n_accepted_as_initiator", "steps_since_proposal",
                 "last_reward", "degree", "team")
NEIGHBOR_FEATURES = ("reputation", "edge_weight", "trust", "trust_in_me", "n_accepted_from",
                     "same_team")
INBOX_FEATURES = ("present", "kind", "sender_slot", "sender_reputation", "sender_trust",
                  "sender_same_team", "transfer", "task_progress", "rework_count",
                  "verifier_rejections", "tool_misuse", "engagement", "v_hat", "p")
ACTION_DIMS = ("kind", "target_slot", "effort", "dressing", "transfer")

_S = {k: i for i, k in enumerate(SELF_FEATURES)}
_N = {k: i for i, k in enumerate(NEIGHBOR_FEATURES)}
_I = {k: i for i, k in enumerate(INBOX_FEATURES)}


_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
_AMOUNT = 1e12  # bound on costs, transfers, resources (as envs.core.payoff.MAX_AMOUNT)
_UNIT = Annotated[float, Field(ge=0.0, le=1.0)]
_TRANSFER = Annotated[float, Field(ge=0.0, le=_AMOUNT)]


class Range(BaseModel):
    """A closed range ``[low, high]`` that signals are drawn uniformly from.

    Bounds lie in ``[-1e6, 1e6]`` (signals are clamped to [-1, 1] anyway; the bound keeps
    ``high - low`` finite).
    """

    model_config = _STRICT
    low: float = Field(ge=-1e6, le=1e6, description="lower end")
    high: float = Field(ge=-1e6, le=1e6, description="upper end")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"range low {self.low} > high {self.high}")
        return self


def _r(lo: float, hi: float) -> Any:
    return Field(default_factory=lambda: Range(low=lo, high=hi))


class SignalModel(BaseModel):
    """How hidden truth, effort and dressing turn into observable signals.

    ``P(v = +1) = q_min + (q_max - q_min) * effort``. Given ``v``, task progress and engagement
    are uniform on ``v``'s range and the counts (rework requests, verifier rejections, tool
    misuse) are Poisson with ``v``'s mean, in the spirit of the original sandbox's
    cooperative (``v = +1``) and adversarial (``v = -1``) initiators; good work's ranges sit a
    little higher so that, under ``k = 2``, honest full-effort work averages ``p`` ≈ 0.83.
    Dressing ``d`` adds ``d * dress_progress`` and ``d * dress_engagement`` and removes
    ``round(d * dress_counts)`` from every count: it moves ``v_hat``, never ``v``.

    The default dressing lifts harmful work *part of the way* toward honest work, never past
    it: the proxy can be gamed, but not blinded. Measured on 8 000 sandbox proposals per
    dressing level (``k = 2``): harmful zero-effort work averages ``p`` ≈ 0.43 undressed, 0.60
    at half dressing and 0.73 at full dressing, against ≈ 0.83 for good work; a good proposal
    still outranks a fully dressed harmful one with probability ≈ 0.92 (AUC), and no fully
    dressed harmful one reaches ``p >= 0.85``, which a quarter of good work does. Full
    dressing costs ``dressing_cost`` (0.3 by default) and buys ≈ +0.30 in ``p``, worth ≈ +0.75
    of initiator soft payoff once accepted under the default payoffs
    (``theta * (s_plus + s_minus) + w_rep`` = 2.5 per unit of ``p``): a price and a payoff an
    adaptive adversary can learn to trade. In a small-world population of 10 honest and 10
    deceptive agents (scripted defaults, 20 epochs x 10 steps, 5 seeds) the soft toxicity
    rises from 0.18 (20 honest) to 0.22 while the true harm rate among accepted work rises
    from 0.03 to 0.49, and the AUC of ``p`` against ``v`` is 0.93.

    The **strong** setting, ``dress_progress=1.0, dress_engagement=1.2, dress_counts=3.0``
    (twice the defaults, and the defaults until issue 14), makes fully dressed harmful work
    look a little *better* than honest work (which carries honest noise): ``p`` ≈ 0.85, three
    quarters of it at 0.85 or above, AUC ≈ 0.21 against good work. The same population then
    shows the soft toxicity *falling* (0.18 -> 0.17) as the harm rate rises, and an AUC of
    0.27: every lever keyed to ``p`` would punish the honest. ``configs/adverse_selection.yaml``
    states it in its own ``signals:`` block to show adverse selection.

    Poisson means are at most 100 (the count signal is already -1 to machine precision long
    before; the sampling table is exact up to there); dressing amounts at most 1e6.
    """

    model_config = _STRICT

    q_min: float = Field(0.05, ge=0, le=1, description="P(v=+1) at zero effort")
    q_max: float = Field(0.97, ge=0, le=1, description="P(v=+1) at full effort")
    good_progress: Range = _r(0.6, 1.0)
    bad_progress: Range = _r(-0.3, 0.2)
    good_engagement: Range = _r(0.4, 0.8)
    bad_engagement: Range = _r(-0.5, -0.1)
    good_rework: float = Field(0.15, ge=0, le=100, description="mean rework requests, v=+1")
    bad_rework: float = Field(2.0, ge=0, le=100, description="mean rework requests, v=-1")
    good_rejections: float = Field(0.05, ge=0, le=100,
                                   description="mean verifier rejections, v=+1")
    bad_rejections: float = Field(1.5, ge=0, le=100,
                                  description="mean verifier rejections, v=-1")
    good_misuse: float = Field(0.0, ge=0, le=100, description="mean tool-misuse flags, v=+1")
    bad_misuse: float = Field(0.5, ge=0, le=100, description="mean tool-misuse flags, v=-1")
    dress_progress: float = Field(0.5, ge=0, le=1e6,
                                  description="progress added at full dressing (strong: 1.0)")
    dress_engagement: float = Field(0.6, ge=0, le=1e6,
                                    description="engagement added at full dressing (strong: "
                                    "1.2)")
    dress_counts: float = Field(1.5, ge=0, le=1e6,
                                description="counts removed at full dressing, rounded (strong: "
                                "3.0)")


class ProxyConfig(BaseModel):
    """Parameters of the proxy ``observables -> v_hat -> p``."""

    model_config = _STRICT

    weights: ProxyWeights = Field(default_factory=ProxyWeights)
    k: float = Field(2.0, gt=0, le=1e6, description="sigmoid steepness")
    rework_decay: float = Field(0.3, gt=0, le=1)
    rejection_decay: float = Field(0.4, gt=0, le=1)
    misuse_decay: float = Field(0.5, gt=0, le=1)

    def build(self) -> ProxyComputer:
        return ProxyComputer(self.weights, k=self.k, rework_decay=self.rework_decay,
                             rejection_decay=self.rejection_decay,
                             misuse_decay=self.misuse_decay)


class SandboxConfig(BaseModel):
    """Everything that defines a sandbox episode (validated; unknown keys are errors).

    Strict: an int field takes an int (not ``"3"`` or ``2.0``), a bool field a bool (not
    ``"yes"`` or 1), a float field a finite int or float (not a string, ``nan`` or ``inf``);
    tuple fields accept lists. Amounts (costs, transfers, resources, reputation) are bounded
    by 1e12 in magnitude, sizes by what the arrays can index. Every problem is reported with
    its field path (e.g. ``network.edges[3]`` for a custom edge naming a missing agent).
    """

    model_config = _STRICT

    n_agents: int = Field(5, ge=2, le=2**31 - 1, description="number of agents")
    n_epochs: int = Field(10, ge=1, description="epochs per episode")
    steps_per_epoch: int = Field(10, ge=1, description="steps per epoch")
    max_neighbors: int = Field(8, ge=1, le=10_000,
                               description="neighbour slots K in the observation")
    inbox_size: int = Field(4, ge=1, le=1_000,
                            description="inbox slots M (proposals seen per step)")
    effort_levels: Annotated[tuple[_UNIT, ...], Strict(False)] = Field(
        (0.0, 0.25, 0.5, 0.75, 1.0), min_length=1, description="effort of each action level")
    dressing_levels: Annotated[tuple[_UNIT, ...], Strict(False)] = Field(
        (0.0, 0.5, 1.0), min_length=1, description="dressing of each action level")
    transfer_levels: Annotated[tuple[_TRANSFER, ...], Strict(False)] = Field(
        (0.0, 0.1, 0.5), min_length=1, description="transfer tau of each action level")
    effort_cost: float = Field(0.2, ge=0, le=_AMOUNT, description="resources per unit of effort")
    dressing_cost: float = Field(0.3, ge=0, le=_AMOUNT,
                                 description="resources per unit of dressing")
    initial_resources: float = Field(100.0, ge=-_AMOUNT, le=_AMOUNT,
                                     description="starting resources")
    initial_reputation: float = Field(0.0, ge=-_AMOUNT, le=_AMOUNT,
                                      description="starting public reputation")
    reward_mode: Literal["soft", "realized"] = "soft"
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    payoff: PayoffConfig = Field(default_factory=PayoffConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    signals: SignalModel = Field(default_factory=SignalModel)
    teams: Annotated[tuple[int, ...], Strict(False)] | None = Field(
        None, description="team id per agent (-1: none)")
    groups: Annotated[tuple[str, ...], Strict(False)] | None = Field(
        None, description="label per agent, for reports")
    history_length: int = Field(5, ge=0, le=1_000_000,
                                description="steps of history kept for views")
    copy_observations: bool = Field(False, description="return fresh copies each step")
    render_mode: Literal["ansi", "human"] | None = None

    @model_validator(mode="after")
    def _check(self) -> SandboxConfig:
        problems = episode_problems(self.n_agents, self.n_epochs, self.steps_per_epoch,
                                    self.network, teams=self.teams, groups=self.groups)
        if problems:
            raise config_problems(problems)
        return self


class ObsArrays:
    """The preallocated observation arrays of all agents (the batched door's observation).

    Per-agent observation dicts hold views into these; they are updated in place each step.
    """

    def __init__(self, n: int, k: int, m: int, nvec: np.ndarray) -> None:
        self.self_ = np.zeros((n, len(SELF_FEATURES)), dtype=np.float32)
        self.neighbors = np.zeros((n, k, len(NEIGHBOR_FEATURES)), dtype=np.float32)
        self.neighbor_mask = np.zeros((n, k), dtype=np.int8)
        self.inbox = np.zeros((n, m, len(INBOX_FEATURES)), dtype=np.float32)
        self.action_mask = np.ones((n, int(nvec.sum())), dtype=np.int8)

    def named(self) -> dict[str, np.ndarray]:
        """The observation arrays by their names in the observation space."""
        return {"self": self.self_, "neighbors": self.neighbors,
                "neighbor_mask": self.neighbor_mask, "inbox": self.inbox}


class SandboxEnv(DictDoor, EpisodeKernel, ParallelEnv):
    """The sandbox ``ParallelEnv`` (see the module docstring)."""

    metadata = {"name": "sandbox_v0", "render_modes": ["ansi", "human"],
                "is_parallelizable": True}

    def __init__(self, config: SandboxConfig | None = None, *,
                 event_log: str | Path | EventLog | None = None, **overrides: Any) -> None:
        if config is None:
            config = SandboxConfig(**overrides)
        elif overrides:
            config = SandboxConfig(**{**config.model_dump(), **overrides})
        self.config = c = config
        self._init_episode(event_log)
        n, self.K, self.M = c.n_agents, c.max_neighbors, c.inbox_size
        self.team = np.asarray(c.teams if c.teams is not None else [-1] * n, dtype=np.int64)
        self.nvec = np.array([len(KINDS) + 1, self.K, len(c.effort_levels),
                              len(c.dressing_levels), len(c.transfer_levels)]
                             + [2] * self.M, dtype=np.int64)
        self.action_dim_names = list(ACTION_DIMS) + [f"respond_{m}" for m in range(self.M)]
        self._noop = np.zeros(len(self.nvec), dtype=np.int64)
        self._effort = np.asarray(c.effort_levels, dtype=np.float64)
        self._dressing = np.asarray(c.dressing_levels, dtype=np.float64)
        self._transfer = np.asarray(c.transfer_levels, dtype=np.float64)
        self.proxy = c.proxy.build()
        sig = c.signals
        self._counts = _PoissonTable([sig.good_rework, sig.good_rejections, sig.good_misuse],
                                     [sig.bad_rework, sig.bad_rejections, sig.bad_misuse])
        self.payoff = SoftPayoffEngine(c.payoff)
        self._obs_space = spaces.Dict({
            "self": spaces.Box(-np.inf, np.inf, (len(SELF_FEATURES),), np.float32),
            "neighbors": spaces.Box(-np.inf, np.inf, (self.K, len(NEIGHBOR_FEATURES)),
                                    np.float32),
            "neighbor_mask": spaces.Box(0, 1, (self.K,), np.int8),
            "inbox": spaces.Box(-np.inf, np.inf, (self.M, len(INBOX_FEATURES)), np.float32),
            "action_mask": spaces.Tuple([spaces.MultiBinary(int(k)) for k in self.nvec]),
        })
        self._make_spaces()

    # ------------------------------------------------------------------ reset
    def reset(self, seed: int | None = None, options: dict | None = None):
        c = self.config
        n = c.n_agents
        self._reset_episode(seed, c.max_neighbors, extra_bytes=256 * n * c.inbox_size)
        self.n_initiated = np.zeros(n, dtype=np.int64)
        self.n_accepted_init = np.zeros(n, dtype=np.int64)
        self.last_proposal = np.full(n, -1, dtype=np.int64)
        self._new_edge_state()
        self._rebuild_slots()
        self._pending = _NO_PROPOSALS
        self.last_batch = _EMPTY_BATCH
        self._history: deque[InteractionBatch] = deque(maxlen=max(c.history_length, 1))
        self.step_stats: dict[str, int] = {"proposals": 0, "bounced": 0, "invalid": 0,
                                           "accepted": 0, "resolved": 0}
        self.obs_arrays = ObsArrays(n, self.K, self.M, self.nvec)
        self._resp_mask = self.obs_arrays.action_mask[:, self._seg[5]:].reshape(n, self.M, 2)
        self._resp_mask[:, :, 1] = 0
        self._inbox_rows = np.zeros(0, dtype=np.int64)
        self._inbox_slots = np.zeros(0, dtype=np.int64)
        return self._finish_reset()

    # ------------------------------------------------------------------ governance seam
    # (the hooks, freezes and events are GovernedKernel's, in envs/core/kernel.py)
    _label = "sandbox"
    env_id = "sandbox-v0"

    def _governance_ready(self) -> bool:
        return self.network is not None

    def _on_frozen_change(self) -> None:
        self._static_dirty = True
        if not self._in_step:
            self._write_observations()

    def _new_edge_state(self) -> None:
        e = len(self.network.indices)
        # drawn once per episode and carried through pruning, so an agent's sample of a
        # dense neighbourhood stays put until weights really change the ranking
        self._tie_key = self._rng.random(e)
        self.trust_sum = np.zeros(e, dtype=np.float64)
        self.trust_cnt = np.zeros(e, dtype=np.int64)

    def _rebuild_slots(self) -> None:
        net = self.network
        e = len(net.indices)
        # heaviest K edges; ties (e.g. a dense static graph) by a seeded random key per
        # entry, so each agent sees its own sample and no agent is unreachable by index
        self.slots = slots = NeighborSlots(net, self.K, self._tie_key)
        self._reranked = True
        self.slot_pos, self.slot_mask, self.slot_nb = slots.pos, slots.mask, slots.nb
        self.slot_of_entry, self._slot_gather = slots.of_entry, slots.gather
        # per-entry neighbour features; row E stays zero and backs the empty slots, so one
        # gather fills every agent's (K, F) block with padding included
        self._entry_feat = np.zeros((e + 1, len(NEIGHBOR_FEATURES)), dtype=np.float32)
        team_src, team_nb = self.team[net.src], self.team[net.indices]
        self._entry_feat[:e, _N["same_team"]] = (team_src >= 0) & (team_nb == team_src)
        self._refresh_entries(np.arange(e), weights=True)
        self._static_dirty = True

    def _refresh_entries(self, entries: np.ndarray, weights: bool | None = None) -> None:
        """Recompute the trust (and edge-weight) columns of the entry table at ``entries``."""
        net, ef = self.network, self._entry_feat
        cnt = self.trust_cnt[entries]
        trust = self.trust_sum[entries] / np.maximum(cnt, 1)
        trust[cnt == 0] = 0.5
        back = net.rev[entries]
        ef[entries, _N["trust"]] = trust
        ef[back, _N["trust_in_me"]] = trust
        ef[entries, _N["n_accepted_from"]] = cnt
        if weights is None:
            weights = self.config.network.dynamic
        if weights:
            ef[entries, _N["edge_weight"]] = net.weights[entries]
            ef[back, _N["edge_weight"]] = net.weights[back]

    # ------------------------------------------------------------------ step
    # (the dict door -- obs views built once per episode, step() over step_arrays -- is
    # DictDoor's, in envs/core/api.py)
    _info_keys = ("interactions", "view", "governance", "action_mask")
    #: the labels of each observation array's last axis (the flat view's feature names)
    OBS_FEATURES = {"self": SELF_FEATURES, "neighbors": NEIGHBOR_FEATURES,
                    "inbox": INBOX_FEATURES}

    def _play_step(self, actions: np.ndarray, t: int, epoch: int,
                   reward: np.ndarray) -> InteractionBatch:
        """One step of the game: last step's proposals resolved, this step's delivered."""
        batch = self._resolve(actions, t, epoch, reward)
        self._propose(actions, t, reward)
        return batch

    def _on_bankrupt(self) -> None:
        self._static_dirty = True  # masks follow when the observations are written

    def _after_step(self, batch: InteractionBatch) -> None:
        self._history.append(batch)

    def _resolve(self, actions: np.ndarray, t: int, epoch: int,
                 reward: np.ndarray) -> InteractionBatch:
        """Resolve last step's delivered proposals with the counterparties' responses."""
        pend = self._pending
        n = len(pend.initiator)
        if n == 0:
            self.step_stats.update(resolved=0, accepted=0)
            return _EMPTY_BATCH
        cp = pend.counterparty
        acc = (actions[cp, 5 + pend.slot] == 1) & ~self.frozen[cp]
        accf = acc.astype(np.float64)
        p = pend.p
        r_a = (p - 0.5) * accf
        batch = InteractionBatch(
            initiator=pend.initiator.astype(np.int32), counterparty=cp.astype(np.int32),
            kind=pend.kind, accepted=acc, v=pend.v, effort=pend.effort,
            dressing=pend.dressing, task_progress=pend.task_progress,
            rework_count=pend.rework, verifier_rejections=pend.rejections,
            tool_misuse=pend.misuse, engagement=pend.engagement, v_hat=pend.v_hat, p=p,
            tau=pend.tau, c_a=np.zeros(n), c_b=np.zeros(n), r_a=r_a, r_b=np.zeros(n),
            payoff_a=np.zeros(n), payoff_b=np.zeros(n), weight=np.ones(n),
            step=np.full(n, t, dtype=np.int32), epoch=np.full(n, epoch, dtype=np.int32))
        weight = self._apply_weight_hooks(batch)
        if weight is not None:
            r_a *= weight  # the weight scales the reputation effect too
        c_a, c_b = self._apply_cost_hooks(batch, accf)
        tau = pend.tau * accf  # the offered transfer is paid only when accepted
        if self.config.reward_mode == "soft":
            pi_a, pi_b = self.payoff.payoffs(p, tau, c_a, c_b, r_a, 0.0, weight)
        else:
            pi_a, pi_b = self.payoff.realized_payoffs(pend.v, tau, c_a, c_b, r_a, 0.0, weight)
        np.multiply(pi_a, accf, out=batch.payoff_a)
        np.multiply(pi_b, accf, out=batch.payoff_b)
        n_agents = self.config.n_agents
        reward += np.bincount(pend.initiator, weights=batch.payoff_a, minlength=n_agents)
        reward += np.bincount(cp, weights=batch.payoff_b, minlength=n_agents)
        self.reputation += np.bincount(pend.initiator, weights=r_a, minlength=n_agents)
        self.n_accepted_init += np.bincount(pend.initiator[acc], minlength=n_agents)
        edge = pend.edge[acc]
        back = self.network.rev[edge]  # entry (counterparty -> initiator)
        np.add.at(self.trust_sum, back, p[acc])
        np.add.at(self.trust_cnt, back, 1)
        if self.config.network.dynamic and len(edge):
            self.network.strengthen(edge)
            self._reranked = False  # uniform decay keeps the order; strengthening may not
        self._refresh_entries(back)
        self.step_stats.update(resolved=n, accepted=int(acc.sum()))
        return batch

    def _propose(self, actions: np.ndarray, t: int, reward: np.ndarray) -> None:
        """Turn this step's proposals into delivered, pending proposals."""
        c, sig = self.config, self.config.signals
        kind, slot = actions[:, 0], actions[:, 1]
        wants = kind > 0
        ok = wants & ~self.frozen & self.slot_mask[np.arange(len(kind)), slot]
        who = np.flatnonzero(ok)
        n_p = len(who)
        self.step_stats.update(proposals=n_p, invalid=int(wants.sum()) - n_p)
        if n_p == 0:
            self._pending = _NO_PROPOSALS
            return
        act = actions[who]
        effort = self._effort[act[:, 2]]
        dressing = self._dressing[act[:, 3]]
        cost = c.effort_cost * effort + c.dressing_cost * dressing
        reward[who] -= cost
        self.n_initiated[who] += 1
        self.last_proposal[who] = t
        edge = self.slot_pos[who, act[:, 1]]
        cp = self.network.indices[edge].astype(np.int64)
        rng = self._rng
        u = rng.random((7, n_p))
        good = u[0] < sig.q_min + (sig.q_max - sig.q_min) * effort
        # delivery: at most M proposals per inbox, chosen by a seeded random key
        key = cp + u[3]  # monotone in (counterparty, random draw): one float sort
        order = np.argsort(key, kind="stable")
        ks = key[order]
        if np.any(ks[1:] == ks[:-1]):  # ties lost to rounding: exact sort
            order = np.lexsort((u[3], cp))
        cps = cp[order]
        idx = np.arange(n_p)
        first = np.empty(n_p, dtype=bool)  # first proposal of each counterparty's run
        first[0] = True
        np.not_equal(cps[1:], cps[:-1], out=first[1:])
        rank = idx - np.maximum.accumulate(np.where(first, idx, 0))
        keep = np.sort(order[rank < self.M])
        slot_in_inbox = np.empty(n_p, dtype=np.int64)
        slot_in_inbox[order] = rank
        self.step_stats["bounced"] = n_p - len(keep)

        def uniform(row: int, g: Range, b: Range) -> np.ndarray:
            lo = np.where(good, g.low, b.low)
            return lo + u[row] * (np.where(good, g.high, b.high) - lo)

        removed = np.rint(dressing * sig.dress_counts).astype(np.int64)
        progress = _clip1(uniform(1, sig.good_progress, sig.bad_progress)
                          + dressing * sig.dress_progress)
        engagement = _clip1(uniform(2, sig.good_engagement, sig.bad_engagement)
                            + dressing * sig.dress_engagement)
        drawn = self._counts.sample(good, u[4:])  # rework, rejections, misuse
        rework, rejections, misuse = np.maximum(drawn - removed, 0).astype(np.int16)
        # counts are non-negative ints by construction: the unchecked vectorised door
        v_hat = self.proxy.v_hat_arrays(progress, rework, rejections, misuse, engagement)
        p = self.proxy.p_from_v_hat(v_hat)
        k = keep if len(keep) < n_p else slice(None)  # nothing bounced: no copies
        self._pending = _Proposals(
            initiator=who[k], counterparty=cp[k], edge=edge[k], slot=slot_in_inbox[k],
            kind=(act[k, 0] - 1).astype(np.int8), effort=effort[k], dressing=dressing[k],
            tau=self._transfer[act[k, 4]], v=np.where(good[k], 1, -1).astype(np.int8),
            task_progress=progress[k], rework=rework[k], rejections=rejections[k],
            misuse=misuse[k], engagement=engagement[k], v_hat=v_hat[k], p=p[k])

    def _epoch_network(self) -> None:
        net = self.network
        old_keys = self._entry_keys()
        changed = net.end_epoch()
        if not changed and net.config.dynamic:
            if not self._reranked:
                self._rebuild_slots()  # edges were strengthened: slots follow the heaviest
            else:  # uniform decay: same ranking, new weights
                self._entry_feat[:len(net.indices), _N["edge_weight"]] = net.weights
        if changed:
            self._after_prune(old_keys)

    def _after_prune(self, old_keys: np.ndarray) -> None:
        """Carry per-entry state and proposals in flight over a rebuilt network."""
        new_keys = self._entry_keys()
        pos = np.searchsorted(old_keys, new_keys)
        self.trust_sum = self.trust_sum[pos]
        self.trust_cnt = self.trust_cnt[pos]
        self._tie_key = self._tie_key[pos]
        self._rebuild_slots()
        pend = self._pending
        if len(pend.edge):  # proposals in flight follow their edge, or die with it
            key = old_keys[pend.edge]
            idx = np.minimum(np.searchsorted(new_keys, key), max(len(new_keys) - 1, 0))
            alive = new_keys[idx] == key if len(new_keys) else np.zeros(len(key), bool)
            pend.edge = idx
            self._pending = pend.select(alive)

    # ------------------------------------------------------------------ observations
    def _write_observations(self) -> None:
        c = self.config
        oa = self.obs_arrays
        n = c.n_agents
        s = oa.self_
        s[:, _S["resources"]] = self.resources
        s[:, _S["reputation"]] = self.reputation
        s[:, _S["frozen"]] = self.frozen
        s[:, _S["episode_progress"]] = self.t / self.max_steps
        s[:, _S["n_initiated"]] = self.n_initiated
        s[:, _S["n_accepted_as_initiator"]] = self.n_accepted_init
        s[:, _S["steps_since_proposal"]] = np.where(self.last_proposal >= 0,
                                                     self.t - self.last_proposal, self.t + 1)
        s[:, _S["last_reward"]] = self.reward_array
        # neighbour slots: refresh the per-entry table, then one gather into the obs array
        net = self.network
        e = len(net.indices)
        ef = self._entry_feat
        ef[:e, _N["reputation"]] = self.reputation[net.indices]
        # indices are always in range; mode="clip" lets numpy write into `out` unbuffered
        np.take(ef, self._slot_gather, axis=0, out=oa.neighbors, mode="clip")
        am = oa.action_mask
        seg = self._seg
        if self._static_dirty:  # what changes only with the slots or a new bankruptcy
            s[:, _S["degree"]] = net.degree
            s[:, _S["team"]] = self.team
            oa.neighbor_mask[:] = self.slot_mask
            am[:, seg[0] + 1:seg[1]] = (~self.frozen & self.slot_mask.any(axis=1))[:, None]
            am[:, seg[1]:seg[2]] = self.slot_mask
            # every dimension allows some value: an agent without neighbours (whose kind is
            # masked to none) may name slot 0, which is then ignored
            am[:, seg[1]] |= ~self.slot_mask.any(axis=1)
            self._static_dirty = False
        # inbox: clear last step's rows, write the new pending proposals
        inbox = oa.inbox
        resp = self._resp_mask  # (n, M, 2) view of the response dims of the action mask
        inbox[self._inbox_rows, self._inbox_slots] = 0.0
        resp[self._inbox_rows, self._inbox_slots, 1] = 0
        pend = self._pending
        rows, slots = pend.counterparty, pend.slot
        if len(rows):
            back = self.network.rev[pend.edge]
            f = np.empty((len(rows), len(INBOX_FEATURES)), dtype=np.float32)
            f[:, _I["present"]] = 1.0
            f[:, _I["kind"]] = pend.kind
            f[:, _I["sender_slot"]] = self.slot_of_entry[back]
            f[:, _I["sender_reputation"]] = self.reputation[pend.initiator]
            f[:, _I["sender_trust"]] = self._entry_feat[back, _N["trust"]]
            f[:, _I["sender_same_team"]] = ((self.team[rows] >= 0)
                                            & (self.team[rows] == self.team[pend.initiator]))
            f[:, _I["transfer"]] = pend.tau
            f[:, _I["task_progress"]] = pend.task_progress
            f[:, _I["rework_count"]] = pend.rework
            f[:, _I["verifier_rejections"]] = pend.rejections
            f[:, _I["tool_misuse"]] = pend.misuse
            f[:, _I["engagement"]] = pend.engagement
            f[:, _I["v_hat"]] = pend.v_hat
            f[:, _I["p"]] = pend.p
            inbox[rows, slots] = f
            # accept only what is in the inbox (frozen agents may only reject)
            resp[rows, slots, 1] = ~self.frozen[rows]
        self._inbox_rows, self._inbox_slots = rows, slots
        s[:, _S["inbox_count"]] = np.bincount(rows, minlength=n)

    # ------------------------------------------------------------------ infos (lazy)
    def view(self, i: int | str) -> dict:
        """A JSON-able neighbourhood view of one agent (what a text policy is shown)."""
        if isinstance(i, str):
            i = self.agent_name_mapping[i]
        names = self.possible_agents
        oa = self.obs_arrays
        neighbours = []
        for k in np.flatnonzero(self.slot_mask[i]):
            f = oa.neighbors[i, k]
            neighbours.append({
                "slot": int(k), "agent": names[int(self.slot_nb[i, k])],
                **{name: round(float(f[j]), 4) for j, name in enumerate(NEIGHBOR_FEATURES)}})
        inbox = []
        pend = self._pending
        for j in np.flatnonzero(pend.counterparty == i):
            inbox.append({
                "slot": int(pend.slot[j]), "from": names[int(pend.initiator[j])],
                "kind": KINDS[int(pend.kind[j])], "transfer": float(pend.tau[j]),
                "sender_reputation": round(float(self.reputation[pend.initiator[j]]), 4),
                "signals": {"task_progress": round(float(pend.task_progress[j]), 4),
                            "rework_count": int(pend.rework[j]),
                            "verifier_rejections": int(pend.rejections[j]),
                            "tool_misuse": int(pend.misuse[j]),
                            "engagement": round(float(pend.engagement[j]), 4)},
                "p": round(float(pend.p[j]), 4)})
        inbox.sort(key=lambda d: d["slot"])
        history = []
        for b in self._history:
            for j in np.flatnonzero((b.initiator == i) | (b.counterparty == i)):
                role = "initiator" if b.initiator[j] == i else "counterparty"
                other = b.counterparty[j] if role == "initiator" else b.initiator[j]
                history.append({
                    "step": int(b.step[j]), "role": role, "with": names[int(other)],
                    "kind": KINDS[int(b.kind[j])], "accepted": bool(b.accepted[j]),
                    "p": round(float(b.p[j]), 4),
                    "payoff": round(float(b.payoff_a[j] if role == "initiator"
                                          else b.payoff_b[j]), 4)})
        return {
            "agent": names[i], "step": self.t, "epoch": self.epoch,
            "max_steps": self.max_steps,
            "resources": round(float(self.resources[i]), 4),
            "reputation": round(float(self.reputation[i]), 4),
            "frozen": bool(self.frozen[i]), "neighbors": neighbours, "inbox": inbox,
            "actions": self.action_layout(), "mask": self.allowed_actions(i),
            "history": history[-self.config.history_length:] if self.config.history_length
            else [],
        }

    def action_layout(self) -> dict:
        """What each action dimension means (for docs and text policies)."""
        c = self.config
        return {
            "kind": ["none"] + KINDS, "target_slot": list(range(self.K)),
            "effort": list(c.effort_levels), "dressing": list(c.dressing_levels),
            "transfer": list(c.transfer_levels),
            **{f"respond_{m}": ["reject", "accept"] for m in range(self.M)},
        }

    # ------------------------------------------------------------------ misc
    def render(self) -> str | None:
        if self.render_mode is None:
            gymnasium.logger.warn("sandbox: render() called without a render_mode")
            return None
        b = self.last_batch
        acc = b.accepted
        line = (f"step {self.t}/{self.max_steps} epoch {self.epoch} | "
                f"proposals {self.step_stats['proposals']} resolved {len(b)} "
                f"accepted {int(acc.sum())} | mean p(acc) "
                f"{(float(b.p[acc].mean()) if acc.any() else float('nan')):.3f} | "
                f"mean reputation {float(self.reputation.mean()):.3f}")
        return line

    def __str__(self) -> str:
        return "sandbox_v0"


class _Proposals:
    """Delivered proposals awaiting a response (columnar)."""

    FIELDS = ("initiator", "counterparty", "edge", "slot", "kind", "effort", "dressing",
              "tau", "v", "task_progress", "rework", "rejections", "misuse", "engagement",
              "v_hat", "p")

    def __init__(self, **cols: np.ndarray) -> None:
        for k in self.FIELDS:
            setattr(self, k, cols[k])

    @classmethod
    def empty(cls) -> _Proposals:
        return cls(**{k: np.zeros(0, dtype=np.int64 if k in ("initiator", "counterparty",
                                                               "edge", "slot")
                                  else np.float64) for k in cls.FIELDS})

    def select(self, mask: np.ndarray) -> _Proposals:
        return _Proposals(**{k: getattr(self, k)[mask] for k in self.FIELDS})


class _PoissonTable:
    """Poisson draws by inverse CDF from given uniforms: one ``searchsorted`` for all counts.

    Row ``r`` of a draw uses mean ``good[r]`` where the work is good, ``bad[r]`` elsewhere.
    Each mean's CDF is tabulated (to 1 - 1e-15) and shifted by twice its table index, so one
    sorted array serves every mean and a uniform ``u`` maps to ``searchsorted(cdf, u + 2t)``.
    """

    def __init__(self, good: list[float], bad: list[float]) -> None:
        from math import exp

        means = list(good) + list(bad)
        tables, starts = [], []
        for t, lam in enumerate(means):
            cdf, term, k = [], exp(-lam), 0
            total = term
            while total < 1.0 - 1e-15 and k < 200:
                cdf.append(total)
                k += 1
                term *= lam / k
                total += term
            cdf.append(1.0)  # close the table: u < 1 always lands inside it
            starts.append(sum(len(x) for x in tables))
            tables.append(np.asarray(cdf) + 2.0 * t)
        self._cdf = np.concatenate(tables)
        self._start = np.asarray(starts)
        self._rows = len(good)

    def sample(self, good: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Counts of shape ``u.shape == (rows, n)`` for ``good`` of shape ``(n,)``."""
        table = np.arange(self._rows)[:, None] + np.where(good, 0, self._rows)
        pos = np.searchsorted(self._cdf, u + 2.0 * table, side="right")
        return pos - self._start[table]


def _clip1(x: np.ndarray) -> np.ndarray:
    """Clip to [-1, 1] in place with two ufuncs (np.clip's wrapper costs more at small n)."""
    np.maximum(x, -1.0, out=x)
    return np.minimum(x, 1.0, out=x)


_EMPTY_BATCH = InteractionBatch.empty(0)
_NO_PROPOSALS = _Proposals.empty()


def parallel_env(**config: Any) -> SandboxEnv:
    """PettingZoo-style factory: ``parallel_env(n_agents=10, ...)``."""
    return SandboxEnv(**config)


def env(**config: Any):
    """AEC version (via ``parallel_to_aec``), for PettingZoo habits."""
    return parallel_to_aec(parallel_env(**config))

