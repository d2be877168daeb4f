"""Runners: drive any mix of policies through an environment and measure it per epoch.

:func:`rollout` runs one episode and returns one metrics row per epoch: the soft metrics of
that epoch's interactions (toxicity, quality gap, calibration against the hidden truth, …),
welfare, the interaction payoff per agent of each policy group, and the network's metrics.
:func:`metrics_from_events` recomputes exactly the same rows from a run's ``events.jsonl``,
because both go through :func:`epoch_metrics`.

Two doors, one result: when the environment is an unwrapped array kernel (it has
``step_arrays``) and every policy is array-batched, the runner feeds the policies straight
from the env's preallocated observation arrays; otherwise it uses the PettingZoo dict API
(``act_batch`` with observations and infos). Both give identical trajectories.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from baselines.policy import ObsBatch, Policy
from envs.core import metrics as M
from envs.core.api import ActionError
from envs.core.events import replay
from envs.core.governance import governance_columns
from envs.core.network import network_metrics
from envs.core.payoff import PayoffConfig, SoftPayoffEngine
from envs.core.records import InteractionBatch

NETWORK_KEYS = ("n_edges", "avg_degree", "avg_clustering", "n_components", "avg_path_length",
                "density")


def interaction_metrics(batch: InteractionBatch, payoff: Any = None,
                        threshold: float = 0.5) -> dict[str, float]:
    """Soft metrics (and hard twins) of a set of interactions.

    Welfare sums the payoffs actually paid. With the sandbox's payoffs (a ``PayoffConfig``;
    ``None`` means its defaults) the conditional losses compare each side's *would-be* soft
    payoff ``theta*S -/+ tau - c - rho*E`` of accepted against all delivered proposals: a
    rejected proposal pays nothing, so using paid payoffs would only measure the acceptance
    rate; reputation terms are left out so both sets are priced alike. Another variant's
    payoff model (the dilemma's matrix, where every game is played) gives the metrics of the
    paid payoffs.
    """
    if payoff is None:
        payoff = PayoffConfig()
    if not isinstance(payoff, PayoffConfig):  # another variant's payoffs (the dilemma's T, R,
        # P, S): no surplus model, so the spreads use the defaults and losses the paid payoffs
        return M.soft_metrics(batch.p, batch.accepted, v=batch.v,
                              payoff_initiator=batch.payoff_a,
                              payoff_counterparty=batch.payoff_b, threshold=threshold)
    row = M.soft_metrics(batch.p, batch.accepted, v=batch.v, payoff_initiator=batch.payoff_a,
                         payoff_counterparty=batch.payoff_b, s_plus=payoff.s_plus,
                         s_minus=payoff.s_minus, threshold=threshold)
    would_a, would_b = SoftPayoffEngine(payoff).payoffs(batch.p, batch.tau, batch.c_a,
                                                        batch.c_b, 0.0, 0.0)
    row["conditional_loss_initiator"] = M.conditional_loss(would_a, batch.accepted)
    row["conditional_loss_counterparty"] = M.conditional_loss(would_b, batch.accepted)
    return row


class NetworkMetricsCache:
    """Network metrics of an edge list, recomputed only when the graph's structure changes.

    The structural metrics (edges, degree, clustering, components, path length, density)
    ignore weights, so they change only when an edge appears or is pruned: a static network
    is measured once per run, a dynamic one after each epoch that pruned an edge. Nothing is
    sampled or skipped; the values are those of :func:`envs.core.network.network_metrics`.
    """

    def __init__(self) -> None:
        self._key: tuple[np.ndarray, np.ndarray] | None = None
        self._n = -1
        self._row: dict[str, float] = {}

    def __call__(self, n_agents: int, edges: tuple) -> dict[str, float]:
        i, j, w = edges
        i, j = np.asarray(i), np.asarray(j)
        key = self._key
        if (key is None or n_agents != self._n or key[0].shape != i.shape
                or not np.array_equal(key[0], i) or not np.array_equal(key[1], j)):
            self._row = {k: float(v) for k, v in network_metrics(n_agents, i, j, w).items()
                         if k in NETWORK_KEYS}
            self._key, self._n = (i.copy(), j.copy()), n_agents
        return dict(self._row)


def epoch_metrics(batch: InteractionBatch, *, epoch: int, n_agents: int,
                  groups: Sequence[str], edges: tuple | None = None,
                  payoff: PayoffConfig | None = None, threshold: float = 0.5,
                  network_cache: NetworkMetricsCache | None = None,
                  governance: Sequence[Mapping[str, Any]] = (),
                  frozen_agents: int | None = None,
                  invalid_actions: int | None = None) -> dict:
    """One epoch's metrics row from its interactions (and the network's edges at its end).

    ``payoff_<group>`` is the mean, over the group's agents, of the soft payoff each earned in
    the epoch's interactions (initiator side plus counterparty side; action costs excluded,
    since they are not interactions). ``payoff_gini`` is the Gini of those per-agent totals.
    Pass one ``network_cache`` for all epochs of a run to skip recomputing the network
    metrics of an unchanged graph. ``governance`` (the data of the epoch's governance events)
    gives the ``gov_<key>`` columns (:func:`envs.core.governance.governance_columns`);
    ``frozen_agents`` is how many agents were frozen at the epoch's end;
    ``invalid_actions`` how many agent-steps of the epoch chose a value their action mask
    did not allow (the game ignored it).
    """
    row: dict[str, Any] = {"epoch": epoch}
    row.update(interaction_metrics(batch, payoff, threshold))
    per_agent = (M.sum_by_agent(batch.initiator, batch.payoff_a, n_agents)
                 + M.sum_by_agent(batch.counterparty, batch.payoff_b, n_agents))
    names, inverse, counts = _group_index(tuple(groups))
    if len(per_agent) != len(inverse):
        raise ValueError(f"epoch_metrics: {len(groups)} group labels for {n_agents} agents")
    sums = np.bincount(inverse, weights=per_agent, minlength=len(names))
    for g, total, count in zip(names, sums, counts):  # as M.payoff_by_group, labels cached
        row[f"payoff_{g}"] = float(total / count)
    row["payoff_gini"] = M.gini(per_agent)
    acc = batch.accepted  # rejected interactions pay nothing: transfers and costs alike
    row["transfers"] = float(batch.tau[acc].sum())
    row["governance_costs"] = float(batch.c_a[acc].sum() + batch.c_b[acc].sum())
    row.update(governance_columns(governance))
    if frozen_agents is not None:
        row["frozen_agents"] = float(frozen_agents)
    if invalid_actions is not None:
        row["invalid_actions"] = float(invalid_actions)
    if edges is not None:
        row.update((network_cache or NetworkMetricsCache())(n_agents, edges))
    return row


@functools.lru_cache(maxsize=8)
def _group_index(groups: tuple[str, ...]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sorted group names, each agent's group code and the group sizes (cached per run)."""
    names, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    return [str(g) for g in names], inverse.reshape(-1), np.bincount(inverse.reshape(-1))


class PolicyError(RuntimeError):
    """A policy raised, or returned actions outside the action space: names the policy,
    its agents and the step."""

    @classmethod
    def of(cls, pol: Any, names: Sequence[str], t: int, e: BaseException) -> PolicyError:
        who = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
        return cls(f"policy {type(pol).__name__} ({who}) failed at step {t}: "
                   f"{type(e).__name__}: {e}")


def _shaped_actions(out: Any, pol: Any, names: Sequence[str], nvec: np.ndarray,
                    t: int) -> np.ndarray:
    """A policy's output with the right shape and integer values (range checked later)."""
    arr = out if isinstance(out, np.ndarray) else np.asarray(out)
    if arr.shape != (len(names), len(nvec)) or arr.dtype.kind not in "iu":
        return _checked_actions(arr, pol, names, nvec, t)
    return arr


def _checked_actions(out: Any, pol: Any, names: Sequence[str], nvec: np.ndarray,
                     t: int) -> np.ndarray:
    """A policy's ``act_arrays`` output, checked against the action space in one pass."""
    arr = np.asarray(out)
    shape = (len(names), len(nvec))
    what = None
    if arr.shape != shape:
        what = f"an array of shape {shape}, got shape {arr.shape}"
    elif arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f" or not np.all(np.mod(arr, 1) == 0):  # nan fails too
            what = f"integer actions, got dtype {arr.dtype}"
    if what is None:
        bad = (arr < 0) | (arr >= nvec)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            what = (f"dimension {c} in 0..{int(nvec[c]) - 1}, got {arr[r, c].item()!r} for "
                    f"{names[r]}")
    if what is not None:
        who = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
        raise PolicyError(f"policy {type(pol).__name__} ({who}) at step {t}: act_arrays must "
                          f"return {what}")
    return arr


def _act_groups(groups: Sequence[tuple[Any, list[str]]], obs: Mapping, infos: Mapping, t: int,
                pool: Any) -> list[Any]:
    """Each group's ``act_batch``, in group order; the I/O-bound ones (``io_bound``: an LLM
    policy waiting on its provider) at the same time on ``pool``, so a step with several
    LLM entries costs one round trip, not one per entry. Each policy touches only its own
    state, so the results do not depend on the overlap."""
    def call(pol: Any, live: list[str]) -> Any:
        try:
            return pol.act_batch([obs[a] for a in live], [infos[a] for a in live])
        except Exception as e:
            raise PolicyError.of(pol, live, t, e) from e

    if pool is None:
        return [call(pol, live) for pol, live in groups]
    futures = {k: pool.submit(call, pol, live) for k, (pol, live) in enumerate(groups)
               if getattr(pol, "io_bound", False)}
    outs = [None if k in futures else call(pol, live) for k, (pol, live) in enumerate(groups)]
    for k, future in futures.items():  # the first failure in group order is raised
        outs[k] = future.result()
    return outs


def _log_turns(base: Any, pol: Any, t: int, spe: int) -> None:
    """Write what a policy said this step (``pop_turns``) to the env's event log."""
    turns = pol.pop_turns() if hasattr(pol, "pop_turns") else []
    log = getattr(base, "event_log", None)
    if not turns or log is None:
        return
    label = getattr(pol, "name", type(pol).__name__)
    for turn in turns:
        # what varies between a run and its resumption (a reply served from the cache) is
        # left out, so a resumed run's log equals an uninterrupted one's
        data = {k: v for k, v in turn.items() if k not in ("agent", "step", "cached")}
        log.turn(t, t // spe, turn["agent"], label, data)


def _send_texts(base: Any, pol: Any, t: int) -> None:
    """Hand the free text a policy's agents send this step (``pop_messages``: ``{agent:
    (text, to)}``, e.g. an LLM's messages) to an env that takes text (``send_text``)."""
    texts = pol.pop_messages() if hasattr(pol, "pop_messages") else {}
    if not texts or not hasattr(base, "send_text"):
        return
    for agent, (text, to) in texts.items():
        try:
            base.send_text(agent, text, to)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise PolicyError.of(pol, [agent], t, e) from e


def _hooks_only(env: Any) -> bool:
    """Whether every wrapper between ``env`` and its base only registers hooks (levers)."""
    from wrappers.base import GovernanceWrapper

    while env is not env.unwrapped:
        if not isinstance(env, GovernanceWrapper):
            return False
        env = env.env
    return True


def _governance_state(base: Any) -> dict[str, Any]:
    """This epoch's governance events and frozen count, from a seam-implementing env."""
    if not hasattr(base, "pop_governance"):
        return {}
    return {"governance": base.pop_governance(),
            "frozen_agents": int(np.count_nonzero(base.frozen_mask())),
            "invalid_actions": int(base.epoch_invalid.sum())}


def _policy_groups(agents: Sequence[str], policies: Mapping[str, Policy]
                   ) -> list[tuple[Policy, np.ndarray, list[str]]]:
    missing = [a for a in agents if a not in policies]
    if missing:
        raise ValueError(f"rollout: no policy for agents {missing[:5]}; policies were given "
                         f"for {list(policies)[:5]}")
    by_id: dict[int, tuple[Policy, list[int], list[str]]] = {}
    for i, a in enumerate(agents):
        pol = policies[a]
        entry = by_id.setdefault(id(pol), (pol, [], []))
        entry[1].append(i)
        entry[2].append(a)
    return [(pol, np.asarray(rows), names) for pol, rows, names in by_id.values()]


def rollout(env: Any, policies: Mapping[str, Policy], *, seed: int | None = None,
            on_epoch: Callable[[dict], None] | None = None,
            on_step: Callable[[int, int], None] | None = None,
            on_batch: Callable[[InteractionBatch], None] | None = None,
            use_arrays: bool | None = None) -> list[dict]:
    """Run one episode; return one metrics row per epoch (see :func:`epoch_metrics`).

    Args:
        env: a sandbox-like ``ParallelEnv`` (wrapped or not).
        policies: ``{agent: Policy}``; agents sharing a policy instance are batched.
        seed: reset seed; when given, every policy is also re-seeded from it (policy ``k``
            in order of first appearance gets ``SeedSequence([seed, k])``), so the same seed
            gives the same episode even with reused policy objects. ``None`` leaves the env's
            and the policies' generators running.
        on_epoch: called with each epoch's row as soon as it is complete.
        on_step: called with ``(steps_done, max_steps)`` after every step.
        on_batch: called with each epoch's interactions (before ``on_epoch``), e.g. to
            keep what a whole-run report needs without re-reading the log.
        use_arrays: force (True) or forbid (False) the batched array door; default: use it
            when the env is unwrapped and every policy is array-batched.

    Example:
        >>> import envs
        >>> from baselines.scripted import make_policy
        >>> env = envs.make("sandbox-v0", n_agents=4, n_epochs=2, steps_per_epoch=5)
        >>> pol = make_policy("honest", seed=0)
        >>> rows = rollout(env, {a: pol for a in env.possible_agents}, seed=0)
        >>> [r["epoch"] for r in rows]
        [0, 1]
    """
    base = env.unwrapped
    obs, infos = env.reset(seed=seed)
    agents = list(base.possible_agents)
    groups = _policy_groups(agents, policies)
    if seed is not None:  # a rollout is a function of its seed, even with reused policies
        for k, (pol, _, _) in enumerate(groups):
            pol.reset(seed=int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
    if use_arrays is None:  # governance levers live in the kernel: they allow the array door
        use_arrays = _hooks_only(env) and hasattr(base, "step_arrays") and all(
            pol.batched() for pol, _, _ in groups)
    n, spe, max_steps = len(agents), base.config.steps_per_epoch, base.max_steps
    group_labels = list(base.groups)
    payoff = getattr(base.config, "payoff", None)
    columns = _variant_columns(getattr(base, "env_id", None))
    rows: list[dict] = []
    epoch_batches: list[InteractionBatch] = []
    actions = np.zeros((n, len(base.nvec)), dtype=np.int64)
    net_cache = NetworkMetricsCache()
    nvec = np.asarray(base.nvec)
    io_bound = sum(bool(getattr(pol, "io_bound", False)) for pol, _, _ in groups)
    pool = None
    if io_bound > 1 and not use_arrays:  # e.g. several LLM entries: their calls overlap
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=io_bound, thread_name_prefix="distsafe-policy")
    for t in range(max_steps):
        if use_arrays:
            for pol, idx, names in groups:
                try:
                    out = pol.act_arrays(ObsBatch.from_env(base, idx))
                except Exception as e:
                    raise PolicyError.of(pol, names, t, e) from e
                actions[idx] = _shaped_actions(out, pol, names, nvec, t)
            if ((actions < 0) | (actions >= nvec)).any():  # one range check for all groups
                for pol, idx, names in groups:
                    _checked_actions(actions[idx], pol, names, nvec, t)
            base.step_arrays(actions, validate=False)
        else:
            act: dict[str, Any] = {}
            live_groups = [(pol, [a for a in names if a in obs]) for pol, _, names in groups]
            live_groups = [(pol, live) for pol, live in live_groups if live]
            outs = _act_groups(live_groups, obs, infos, t, pool)
            for (pol, live), out in zip(live_groups, outs):
                act.update(zip(live, out))
                _log_turns(base, pol, t, spe)
                _send_texts(base, pol, t)
            try:
                obs, _, _, _, infos = env.step(act)
            except ActionError as e:  # the env names the agent; the policy is to blame
                raise PolicyError(f"step {t}: {e}") from e
        epoch_batches.append(base.last_batch)
        ended = getattr(base, "terminated", False)  # e.g. the commons' collapse
        if on_step is not None:
            on_step(t + 1, max_steps)
        if (t + 1) % spe == 0 or ended:
            epoch = t // spe
            batch = InteractionBatch.concat(epoch_batches)
            if on_batch is not None:
                on_batch(batch)
            row = epoch_metrics(batch, epoch=epoch, n_agents=n, groups=group_labels,
                                edges=base.network.edge_list(), payoff=payoff,
                                network_cache=net_cache, **_governance_state(base))
            if columns is not None:
                row.update(columns(base.last_epoch_state))
            rows.append(row)
            epoch_batches = []
            if on_epoch is not None:
                on_epoch(row)
        if ended:
            break
    if pool is not None:
        pool.shutdown()
    return rows


def _variant_columns(env_id: str | None) -> Callable[[Mapping[str, Any]], dict] | None:
    """A registered variant's extra metric columns, read from its epoch-end state."""
    import envs

    return envs.metric_columns(env_id) if env_id in envs.registry else None


def payoff_from_config(env_id: str, config: Mapping[str, Any]) -> Any:
    """The payoff model of a logged run's config: the environment's own (``PayoffConfig``
    for an unknown environment), with the defaults where the config has no payoff block."""
    import envs

    model = envs.payoff_model(env_id) if env_id in envs.registry else PayoffConfig
    if model is None:
        return None
    return model.model_validate(config.get("payoff", {}))


def metrics_from_events(path: str | Path, episode: int | None = None) -> list[dict]:
    """Recompute the per-epoch metrics rows of a run (one episode) from its event log."""
    rep = replay(path, episode)
    start = rep.run_start
    cfg = start.config
    payoff = payoff_from_config(start.env, cfg)
    n = len(start.agents)
    groups = start.groups or ["agent"] * n
    by_epoch = rep.by_epoch()
    governance: dict[int, list] = {}
    for ev in rep.governance:
        governance.setdefault(ev.epoch, []).append(ev.data)
    rows = []
    cache = NetworkMetricsCache()
    columns = _variant_columns(start.env)
    for end, edges in zip(rep.epoch_ends, rep.edge_lists()):
        batch = by_epoch.get(end.epoch, InteractionBatch.empty(0))
        frozen = end.state.get("frozen")
        invalid = end.state.get("invalid")
        rows.append(epoch_metrics(batch, epoch=end.epoch, n_agents=n, groups=groups,
                                  edges=edges, payoff=payoff, network_cache=cache,
                                  governance=governance.get(end.epoch, []),
                                  frozen_agents=None if frozen is None else
                                  int(np.count_nonzero(frozen)),
                                  invalid_actions=None if invalid is None else
                                  int(sum(invalid))))
        if columns is not None:
            rows[-1].update(columns(end.state))
    return rows


def metrics_csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Metric rows as CSV text; floats keep full precision (``repr``)."""
    if not rows:
        return ""
    keys = list(rows[0])
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(keys)
    for r in rows:
        w.writerow([_fmt(r.get(k, math.nan)) for k in keys])
    return buf.getvalue()


def write_metrics_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write metric rows as CSV; floats keep full precision (``repr``)."""
    Path(path).write_text(metrics_csv_text(rows), newline="")


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """Read rows written by :func:`write_metrics_csv` (every value as float)."""
    with Path(path).open(newline="") as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)
