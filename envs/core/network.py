"""Interaction network: topology generation, CSR neighbour arrays, dynamic edge weights.

Agents interact along the edges of an undirected, weighted graph without self-loops whose
nodes are the agent indices ``0 .. n-1``. Topologies are generated with networkx
(:class:`NetworkConfig` says which); the step loop never touches networkx but reads the
compressed-sparse-row (CSR) arrays of :class:`Network`:

- ``indptr`` (n+1,) int64: the entries of node ``u`` are ``indptr[u] : indptr[u+1]``;
- ``indices`` (2E,) int32: the neighbour of each entry; within a row sorted ascending;
- ``weights`` (2E,) float64: the edge weight (both directions of an edge always agree);
- ``rev`` (2E,) int64: position of the reverse entry (``rev[rev[e]] == e``);
- ``src`` (2E,) int32: the row (owner) of each entry;
- ``degree`` (n,) int64.

Every undirected edge is stored twice, once per direction, so "entry position" (an index
into these arrays) identifies an ordered pair (agent, neighbour). Hot-path methods take and
return entry positions.

Dynamic networks (``NetworkConfig.dynamic``): :meth:`Network.strengthen` adds
``config.strengthen`` to an edge per accepted interaction (capped at ``max_weight``);
:meth:`Network.end_epoch` multiplies every weight by ``1 - decay`` and prunes edges whose
weight falls below ``min_weight``. Pruning rebuilds the CSR arrays, which invalidates entry
positions held by the caller (e.g. neighbour slots); ``end_epoch`` returns ``True`` then.
"""

from __future__ import annotations

import math
import operator
from typing import Annotated, Any, Literal

import networkx as nx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from envs.core.api import config_problems

__all__ = ["NetworkConfig", "Network", "network_metrics"]

Topology = Literal["complete", "ring", "star", "random", "small_world", "scale_free", "custom"]


class NetworkConfig(BaseModel):
    """Topology and edge dynamics of the interaction network.

    Defaults follow the reference sandbox: Erdős–Rényi ``p`` 0.5, small-world ``k`` 4 with
    rewiring 0.1, scale-free ``m`` 2; dynamic edges gain 0.1 per accepted interaction, lose
    5 % per epoch and are pruned below 0.1.

    Strict: numbers must be finite numbers (ints where ints are asked for; ``"3"``, ``2.0``
    for an int or ``"yes"`` for a bool are errors), weights are at most ``1e12``, and custom
    edges are pairs of agent indices below ``2**31 - 1`` (a YAML list ``[0, 1]`` is accepted
    for a pair). That an index is below ``n_agents`` is checked where the number of agents is
    known (the environment's config).

    Example:
        >>> cfg = NetworkConfig(topology="small_world", k=4, dynamic=True)
        >>> cfg.rewire_probability, cfg.min_weight
        (0.1, 0.1)
        >>> NetworkConfig(topology="custom", edges=[(0, 1), [1, 2]]).edges
        [(0, 1), (1, 2)]
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    topology: Topology = Field(
        "complete",
        description="graph family: complete, ring (cycle), star (node 0 is the hub), random "
        "(Erdős–Rényi G(n, p)), small_world (Watts–Strogatz), scale_free "
        "(Barabási–Albert) or custom (the `edges` list)",
    )
    edge_probability: float = Field(
        0.5, ge=0.0, le=1.0,
        description="random: probability that each pair is linked (0, or at least 1e-12)"
    )
    k: int = Field(
        4, ge=1,
        description="small_world: each node joins its k nearest ring neighbours (k//2 on each "
        "side, as in networkx) before rewiring",
    )
    rewire_probability: float = Field(
        0.1, ge=0.0, le=1.0, description="small_world: probability of rewiring each edge"
    )
    m: int = Field(
        2, ge=1, description="scale_free: edges attached from each new node to existing nodes"
    )
    edges: list[Annotated[tuple[int, int], Strict(False)]] | None = Field(
        None,
        description="custom: undirected edges as (i, j) agent-index pairs; duplicates and "
        "(j, i) repeats are merged; self-loops are rejected",
    )
    dynamic: bool = Field(
        False, description="whether weights change: strengthen, decay, prune, cap"
    )
    strengthen: float = Field(
        0.1, ge=0.0, le=1e12,
        description="weight added to an edge per accepted interaction over it"
    )
    decay: float = Field(
        0.05, ge=0.0, le=1.0, description="fraction of its weight each edge loses per epoch"
    )
    min_weight: float = Field(
        0.1, ge=0.0, le=1e12,
        description="edges whose weight falls below this after decay are pruned"
    )
    max_weight: float = Field(1.0, ge=0.0, le=1e12, description="cap on an edge weight")
    initial_weight: float = Field(
        0.5, ge=0.0, le=1e12, description="weight of every edge of a generated topology"
    )

    @model_validator(mode="after")
    def _check(self) -> NetworkConfig:
        problems: list[tuple[str, str]] = []
        if 0.0 < self.edge_probability < 1e-12:
            problems.append(("edge_probability", (
                f"must be 0 or at least 1e-12 (smaller values are 0 to the generator); "
                f"received {self.edge_probability!r}")))
        if self.min_weight > self.max_weight:
            problems.append(("min_weight", (
                f"must be <= max_weight; received min_weight={self.min_weight}, "
                f"max_weight={self.max_weight}")))
        if self.initial_weight > self.max_weight:
            problems.append(("initial_weight", (
                f"must be <= max_weight; received initial_weight={self.initial_weight}, "
                f"max_weight={self.max_weight}")))
        if self.topology == "custom":
            if self.edges is None:
                problems.append(("edges", "topology='custom' requires edges (a list of "
                                          "(i, j) pairs); received None"))
            for pos, (a, b) in enumerate(self.edges or ()):
                if a < 0 or b < 0:
                    problems.append((f"edges[{pos}]", "agent indices must be non-negative; "
                                                      f"received ({a}, {b})"))
                elif max(a, b) >= _MAX_NODES:
                    problems.append((f"edges[{pos}]", f"agent indices must be below "
                                                      f"{_MAX_NODES}; received ({a}, {b})"))
                elif a == b:
                    problems.append((f"edges[{pos}]", "self-loops are not allowed; "
                                                      f"received ({a}, {b})"))
        elif self.edges is not None:
            problems.append(("edges", (
                f"edges is only used with topology='custom'; received topology="
                f"{self.topology!r} with {len(self.edges)} edges")))
        if problems:
            raise config_problems(problems)
        return self

    def check_memory(self, n_agents: int, max_neighbors: int = 8, extra_bytes: int = 0
                     ) -> None:
        """Refuse, before allocating, a network that would not fit in the available memory.

        Args:
            n_agents: Number of agents (nodes).
            max_neighbors: Neighbour slots per agent in the environment's observation.
            extra_bytes: Memory the caller needs on top (e.g. other per-agent arrays).

        Raises:
            NetworkMemoryError: When :func:`estimate_network_bytes` plus ``extra_bytes``
                exceeds the memory available now (``MemAvailable`` of ``/proc/meminfo``).
        """
        need = estimate_network_bytes(self, n_agents, max_neighbors) + int(extra_bytes)
        have = _available_memory_bytes()
        if have is not None and need > have:
            raise NetworkMemoryError(
                f"a {self.topology} network on {n_agents} agents needs about "
                f"{need / 1e9:.1f} GB (estimate), but only {have / 1e9:.1f} GB of memory is "
                f"available; use topology small_world or scale_free, or fewer agents")


#: most nodes a network may have: CSR neighbour indices are int32
_MAX_NODES = 2**31 - 1

# Peak bytes of building a network and the environment's arrays at reset, measured with
# tracemalloc and RSS (numpy 2, networkx 3, CPython 3.12) and rounded up: per undirected edge
# when numpy builds the edges (complete, ring, star, custom; measured 240-280) or networkx
# does (random, small_world, scale_free; measured 300-490), per agent (measured ~3400 plus
# ~47 per neighbour slot), plus a fixed allowance.
_BYTES_PER_EDGE_NUMPY = 320
_BYTES_PER_EDGE_NETWORKX = 600
_BYTES_PER_AGENT = 4000
_BYTES_PER_AGENT_SLOT = 64
_BYTES_FIXED = 16 * 2**20


class NetworkMemoryError(ValueError):
    """A network (with the environment's per-agent arrays) that would not fit in memory."""


def estimate_network_bytes(config: NetworkConfig, n_agents: int, max_neighbors: int = 8
                           ) -> int:
    """An upper estimate of the peak memory of generating a network and resetting an env on it.

    Counts the generation (networkx graphs for ``random``, ``small_world``, ``scale_free``;
    numpy for the others), the CSR arrays, the sandbox's per-entry arrays (trust, tie keys,
    neighbour features, slots) and its per-agent arrays and observation dicts, with the
    expected number of undirected edges per topology: complete ``n(n-1)/2``, random
    ``p·n(n-1)/2`` (plus six standard deviations), small_world ``n·(k//2)``, scale_free
    ``(n-m)·m`` (complete when ``k`` or ``m`` >= ``n``), ring ``n``, star ``n-1``, custom
    ``len(edges)``. Calibrated by measurement, rounded up; cheap (no allocation).

    Args:
        config: The network's configuration.
        n_agents: Number of agents (nodes).
        max_neighbors: Neighbour slots per agent in the observation.

    Returns:
        Estimated peak bytes.

    Example:
        >>> estimate_network_bytes(NetworkConfig(), 100_000) > 10**12   # complete: > 1 TB
        True
        >>> estimate_network_bytes(NetworkConfig(topology="ring"), 100_000) < 10**9
        True
    """
    n = max(int(n_agents), 0)
    full = n * (n - 1) // 2
    topo = config.topology
    if topo == "custom":
        edges = len(config.edges or ())
    elif topo == "complete" or n <= 1:
        edges = full
    elif topo == "ring":
        edges = n if n > 2 else full
    elif topo == "star":
        edges = n - 1
    elif topo == "random":
        mean = config.edge_probability * full
        edges = min(full, int(mean + 6.0 * math.sqrt(mean) + 1.0))
    elif topo == "small_world":
        edges = full if config.k >= n else n * (config.k // 2)
    else:  # scale_free
        edges = full if config.m >= n else (n - config.m) * config.m
    networkx = topo in ("random", "small_world", "scale_free") and edges < full
    per_edge = _BYTES_PER_EDGE_NETWORKX if networkx else _BYTES_PER_EDGE_NUMPY
    per_agent = _BYTES_PER_AGENT + _BYTES_PER_AGENT_SLOT * max(int(max_neighbors), 1)
    return _BYTES_FIXED + per_agent * n + per_edge * edges


def _available_memory_bytes() -> int | None:
    """Memory available to a new allocation: ``MemAvailable``, else free pages; None: unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import os

    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _as_count(value: Any, name: str, minimum: int) -> int:
    try:
        out = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {value!r}") from None
    if out < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {out}")
    return int(out)


def _normalise_edges(n: int, i: Any, j: Any, w: Any, *, merge_duplicates: bool
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate an undirected edge list; return it with i < j, sorted, as (int64, int64, f64)."""
    i_arr, j_arr, w_arr = np.asarray(i), np.asarray(j), np.asarray(w, dtype=np.float64)
    if i_arr.ndim != 1 or i_arr.shape != j_arr.shape or i_arr.shape != w_arr.shape:
        raise ValueError(
            f"i, j and w must be 1-D arrays of one length; received shapes {i_arr.shape}, "
            f"{j_arr.shape}, {w_arr.shape}"
        )
    for name, arr in (("i", i_arr), ("j", j_arr)):
        if arr.size and not (np.issubdtype(arr.dtype, np.integer)
                             or np.array_equal(arr, np.floor(arr))):
            raise ValueError(f"{name} must hold integer node indices; received dtype {arr.dtype}")
    i_arr, j_arr = i_arr.astype(np.int64), j_arr.astype(np.int64)
    if i_arr.size:
        lo, hi = min(i_arr.min(), j_arr.min()), max(i_arr.max(), j_arr.max())
        if lo < 0 or hi >= n:
            raise ValueError(
                f"edge endpoints must lie in [0, {n - 1}] for n={n}; received values in "
                f"[{lo}, {hi}]"
            )
        loops = i_arr == j_arr
        if loops.any():
            node = int(i_arr[loops][0])
            raise ValueError(f"self-loops are not allowed; received edge ({node}, {node})")
        if not np.all(np.isfinite(w_arr)) or w_arr.min() < 0:
            raise ValueError(
                f"edge weights must be finite and >= 0; received min {w_arr.min()}, "
                f"max {w_arr.max()}"
            )
    a, b = np.minimum(i_arr, j_arr), np.maximum(i_arr, j_arr)
    order = np.lexsort((b, a))
    a, b, w_arr = a[order], b[order], w_arr[order]
    if a.size > 1:
        dup = (a[1:] == a[:-1]) & (b[1:] == b[:-1])
        if dup.any():
            if not merge_duplicates:
                k = int(np.flatnonzero(dup)[0])
                raise ValueError(
                    f"duplicate undirected edge ({a[k]}, {b[k]}); each edge may appear once"
                )
            keep = np.concatenate([[True], ~dup])
            a, b, w_arr = a[keep], b[keep], w_arr[keep]
    return a, b, w_arr


def _generate_edges(config: NetworkConfig, n: int, seed: int | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Edge endpoints (i, j) of the configured topology on ``n`` nodes."""
    topo = config.topology
    if topo == "custom":
        e = np.asarray(config.edges, dtype=np.int64).reshape(-1, 2)
        return e[:, 0], e[:, 1]
    if topo == "complete" or n <= 1:
        i, j = np.triu_indices(n, k=1)
        return i, j
    if topo == "ring":
        if n == 2:
            return np.array([0]), np.array([1])
        i = np.arange(n)
        return i, (i + 1) % n
    if topo == "star":
        j = np.arange(1, n)
        return np.zeros_like(j), j
    if topo == "random":
        graph = nx.fast_gnp_random_graph(n, config.edge_probability, seed=seed)
    elif topo == "small_world":
        if config.k >= n:
            return _generate_edges(config.model_copy(update={"topology": "complete"}), n, seed)
        graph = nx.watts_strogatz_graph(n, config.k, config.rewire_probability, seed=seed)
    elif topo == "scale_free":
        if config.m >= n:
            return _generate_edges(config.model_copy(update={"topology": "complete"}), n, seed)
        graph = nx.barabasi_albert_graph(n, config.m, seed=seed)
    else:  # pragma: no cover - Literal guards this
        raise ValueError(f"unknown topology {topo!r}")
    e = np.asarray(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
    return e[:, 0], e[:, 1]


class Network:
    """An undirected weighted graph on nodes ``0 .. n-1`` stored as CSR numpy arrays.

    Build one with :meth:`from_config` (a generated topology) or :meth:`from_edge_list`
    (e.g. from a replayed log). See the module docstring for the array layout.

    Args:
        n_nodes: number of nodes (agents), >= 1.
        i, j: endpoints of each undirected edge (any orientation, no self-loops, no repeats).
        w: weight of each edge (finite, >= 0).
        config: topology/dynamics settings; a static default when omitted.

    Example:
        >>> net = Network.from_config(NetworkConfig(topology="ring", dynamic=True), 4, seed=0)
        >>> net.n_edges, net.degree.tolist(), net.neighbors(0).tolist()
        (4, [2, 2, 2, 2], [1, 3])
        >>> net.strengthen(net.edge_positions([0, 0], [1, 1]))  # two interactions on 0-1
        >>> net.edge_list()[2].tolist()
        [0.7, 0.5, 0.5, 0.5]
        >>> slot_pos, slot_mask = net.neighbor_slots(1)   # heaviest neighbour of each node
        >>> net.indices[slot_pos[:, 0]].tolist()
        [1, 0, 1, 0]
    """

    def __init__(self, n_nodes: int, i: Any, j: Any, w: Any,
                 config: NetworkConfig | None = None) -> None:
        n = _as_count(n_nodes, "n_nodes", 1)
        if config is not None and not isinstance(config, NetworkConfig):
            raise ValueError(
                f"config must be a NetworkConfig; received {type(config).__name__}"
            )
        a, b, w_arr = _normalise_edges(n, i, j, w, merge_duplicates=False)
        self.config = config if config is not None else NetworkConfig()
        self.n_nodes = n
        self._build(a, b, w_arr)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: NetworkConfig, n_agents: int, seed: int | None = None
                    ) -> Network:
        """Generate the configured topology on ``n_agents`` nodes with weight ``initial_weight``.

        Small graphs degrade gracefully: a ring of 2 nodes is one edge; ``small_world`` with
        ``k >= n`` and ``scale_free`` with ``m >= n`` give the complete graph; any topology on
        one node has no edges. ``random`` uses ``networkx.fast_gnp_random_graph`` (the same
        G(n, p) distribution as ``gnp_random_graph`` in O(n + E) time); ``small_world`` uses
        ``watts_strogatz_graph`` (may be disconnected; odd ``k`` acts as ``k - 1``);
        ``scale_free`` uses ``barabasi_albert_graph`` ((n - m)·m edges). Complete, ring and
        star graphs are built directly with numpy (the same edges networkx gives).
        ``seed`` is passed to networkx; the same seed gives the same graph.

        Raises:
            ValueError: bad ``n_agents``, or a custom edge outside ``[0, n_agents)``.
        """
        if not isinstance(config, NetworkConfig):
            raise ValueError(
                f"config must be a NetworkConfig; received {type(config).__name__}"
            )
        n = _as_count(n_agents, "n_agents", 1)
        if seed is not None:
            seed = _as_count(seed, "seed", 0)
        i, j = _generate_edges(config, n, seed)
        a, b, _ = _normalise_edges(n, i, j, np.zeros(len(i)), merge_duplicates=True)
        net = cls.__new__(cls)
        net.config, net.n_nodes = config, n
        net._build(a, b, np.full(len(a), float(config.initial_weight)))
        return net

    @classmethod
    def from_edge_list(cls, n: int, i: Any, j: Any, w: Any,
                       config: NetworkConfig | None = None) -> Network:
        """Inverse of :meth:`edge_list` (used to rebuild a logged network for replay)."""
        return cls(n, i, j, w, config)

    def _build(self, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> None:
        """Fill the CSR arrays from a validated edge list with a < b."""
        e = len(a)
        rows = np.concatenate([a, b])
        cols = np.concatenate([b, a])
        order = np.lexsort((cols, rows))
        inverse = np.empty_like(order)
        inverse[order] = np.arange(2 * e)
        self.src = rows[order].astype(np.int32)
        self.indices = cols[order].astype(np.int32)
        self.weights = np.concatenate([w, w])[order].astype(np.float64)
        partner = order + e
        partner[partner >= 2 * e] -= 2 * e
        self.rev = inverse[partner].astype(np.int64)
        self._set_degree()

    def _set_degree(self) -> None:
        self.degree = np.bincount(self.src, minlength=self.n_nodes).astype(np.int64)
        self.indptr = np.zeros(self.n_nodes + 1, dtype=np.int64)
        np.cumsum(self.degree, out=self.indptr[1:])

    def copy(self) -> Network:
        """An independent copy (e.g. to restore the initial network at reset)."""
        net = Network.__new__(Network)
        net.config, net.n_nodes = self.config, self.n_nodes
        for name in ("indptr", "indices", "weights", "rev", "src", "degree"):
            setattr(net, name, getattr(self, name).copy())
        return net

    # ------------------------------------------------------------------ queries
    @property
    def n_edges(self) -> int:
        """Number of undirected edges."""
        return int(self.indices.shape[0] // 2)

    def neighbors(self, node: int) -> np.ndarray:
        """Neighbours of ``node``, ascending (a view; do not modify)."""
        u = _as_count(node, "node", 0)
        if u >= self.n_nodes:
            raise ValueError(f"node must lie in [0, {self.n_nodes - 1}]; received {u}")
        return self.indices[self.indptr[u]:self.indptr[u + 1]]

    def edge_positions(self, rows: Any, cols: Any) -> np.ndarray:
        """CSR entry positions of the ordered pairs ``(rows[k], cols[k])``; -1 for non-edges.

        Vectorised (one ``searchsorted``); use it to turn (initiator, counterparty) pairs of
        accepted interactions into positions for :meth:`strengthen`.
        """
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(cols, dtype=np.int64)
        if r.shape != c.shape:
            raise ValueError(
                f"rows and cols must have one shape; received {r.shape} and {c.shape}"
            )
        n = self.n_nodes
        keys = self.src.astype(np.int64) * n + self.indices
        query = r * n + c
        pos = np.searchsorted(keys, query)
        pos_c = np.minimum(pos, max(len(keys) - 1, 0))
        valid = (r >= 0) & (r < n) & (c >= 0) & (c < n) & (pos < len(keys))
        if len(keys):
            valid &= keys[pos_c] == query
        return np.where(valid, pos_c, -1).astype(np.int64)

    def neighbor_slots(self, K: int, tie_key: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``K`` neighbour entries per node: the heaviest edges.

        Selection: the ``K`` heaviest edges of each node; among equal weights the entry with
        the smaller ``tie_key`` (one float per entry, e.g. seeded random numbers, so that
        every node sees its own sample of a dense neighbourhood) wins, or, without a
        ``tie_key``, the lower neighbour index. Order within a row: ascending neighbour
        index (CSR order), so a neighbour keeps its relative slot order while it stays
        selected. Rows with fewer
        than ``K`` neighbours are padded with -1 (``slot_mask`` False).

        The result is a snapshot of entry positions: recompute it after :meth:`end_epoch`
        returns ``True`` (positions moved), and, if slots should follow weights changed by
        :meth:`strengthen`, whenever you want the selection refreshed.

        Vectorised: nodes are grouped by degree into power-of-two buckets and each bucket is
        sorted row-wise in one numpy call; no Python loop over nodes.

        Returns:
            ``(slot_pos, slot_mask)``: (n, K) int64 entry positions (-1 padding) and the
            (n, K) bool mask of filled slots. ``indices[slot_pos]`` are the neighbours.
        """
        K = _as_count(K, "K", 1)
        n, deg, indptr = self.n_nodes, self.degree, self.indptr
        slot_pos = np.full((n, K), -1, dtype=np.int64)
        # Rows that fit: every entry, in CSR order.
        small_entry = deg[self.src] <= K
        e_small = np.flatnonzero(small_entry)
        rows_small = self.src[e_small]
        slot_pos[rows_small, e_small - indptr[rows_small]] = e_small
        big = np.flatnonzero(deg > K)
        if big.size:
            w = self.weights
            if tie_key is not None and tie_key.shape != w.shape:
                raise ValueError(f"tie_key must have one value per entry, shape {w.shape}; "
                                 f"received shape {tie_key.shape}")
            uniform = tie_key is None and bool(w.size) and bool(np.all(w == w[0]))
            if uniform:  # all ties: the K lowest neighbour indices
                slot_pos[big] = indptr[big, None] + np.arange(K)
            else:
                bucket = np.ceil(np.log2(deg[big])).astype(np.int64)
                for b in np.unique(bucket):
                    rows = big[bucket == b]
                    width = int(deg[rows].max())
                    cols = np.arange(width)
                    pos = indptr[rows, None] + cols
                    valid = cols < deg[rows, None]
                    safe = np.where(valid, pos, 0)
                    key = np.where(valid, -w[safe], np.inf)
                    if tie_key is None:
                        top = np.argsort(key, axis=1, kind="stable")[:, :K]
                    else:
                        tie = np.where(valid, tie_key[safe], np.inf)
                        top = np.lexsort((tie, key), axis=1)[:, :K]
                    top.sort(axis=1)
                    slot_pos[rows] = np.take_along_axis(pos, top, axis=1)
        return slot_pos, slot_pos >= 0

    def mutual_slots(self, K: int, tie_key: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``K`` neighbour entries per node, chosen so that every choice is mutual.

        Where :meth:`neighbor_slots` lets each node pick its own ``K`` heaviest edges (so a
        hub may be shown by neighbours it does not show back), here an edge is selected for
        both of its ends or for neither: the selected edges form a subgraph in which no node
        has more than ``K`` edges. Edges are ranked once, globally: heavier first, then by
        ``tie_key`` (one float per entry; an edge uses the key of its entry from the smaller
        node), then by position. Rounds, each vectorised: every node ranks its candidate
        edges and an edge is selected when it lies within the remaining capacity of both
        ends; nodes left without capacity drop their other candidates. The globally best
        candidate is selected in every round, so the rounds end; on a graph where no node
        has more than ``K`` edges, the first round selects every edge.

        Returns:
            ``(slot_pos, slot_mask)`` as :meth:`neighbor_slots` gives them (rows in CSR order,
            padded with -1 at the end).

        Example:
            >>> net = Network.from_config(NetworkConfig(topology="star"), 4)
            >>> pos, mask = net.mutual_slots(1)
            >>> mask.sum(axis=1).tolist()   # the hub plays one leaf; the others nobody
            [1, 1, 0, 0]
        """
        K = _as_count(K, "K", 1)
        n = self.n_nodes
        slot_pos = np.full((n, K), -1, dtype=np.int64)
        upper = np.flatnonzero(self.src < self.indices)  # one entry per undirected edge
        if tie_key is not None and tie_key.shape != self.weights.shape:
            raise ValueError(f"tie_key must have one value per entry, shape "
                             f"{self.weights.shape}; received shape {tie_key.shape}")
        if (self.degree <= K).all():
            selected = upper
        else:
            tie = tie_key[upper] if tie_key is not None else np.zeros(len(upper))
            order = np.lexsort((np.arange(len(upper)), tie, -self.weights[upper]))
            cand = upper[order]                  # candidate entries, best first
            cap = np.full(n, K, dtype=np.int64)
            chosen = []
            while len(cand):
                a = self.src[cand].astype(np.int64)
                b = self.indices[cand].astype(np.int64)
                # rank of each candidate among its node's candidates (they are in global order)
                rank = _occurrence(np.stack([a, b], axis=1).ravel()).reshape(-1, 2)
                take = (rank[:, 0] < cap[a]) & (rank[:, 1] < cap[b])
                chosen.append(cand[take])
                np.subtract.at(cap, a[take], 1)
                np.subtract.at(cap, b[take], 1)
                keep = ~take & (cap[a] > 0) & (cap[b] > 0)
                cand = cand[keep]
            selected = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        entries = np.sort(np.concatenate([selected, self.rev[selected]]))
        rows = self.src[entries].astype(np.int64)
        first = np.searchsorted(rows, rows)      # entries are sorted by (row, neighbour)
        slot_pos[rows, np.arange(len(entries)) - first] = entries
        return slot_pos, slot_pos >= 0

    # ------------------------------------------------------------------ dynamics
    def strengthen(self, positions: Any) -> None:
        """Add ``config.strengthen`` to the edge of each entry position, capped at max_weight.

        ``positions`` may name either direction of an edge and may repeat: every occurrence
        adds one increment, to both directions. No-op unless ``config.dynamic``. Only
        strengthened edges are capped.

        Raises:
            ValueError: a position outside ``[0, 2E)`` or not an integer.
        """
        pos = np.asarray(positions)
        if pos.size == 0:
            return
        if not np.issubdtype(pos.dtype, np.integer):
            raise ValueError(
                f"positions must be integer CSR entry positions; received dtype {pos.dtype}"
            )
        pos = pos.ravel()
        total = len(self.indices)
        lo, hi = int(pos.min()), int(pos.max())
        if lo < 0 or hi >= total:
            raise ValueError(
                f"positions must lie in [0, {total - 1}]; received values in [{lo}, {hi}]"
            )
        if not self.config.dynamic:
            return
        counts = np.bincount(pos, minlength=total)
        counts += counts[self.rev]
        touched = counts > 0
        new = self.weights[touched] + self.config.strengthen * counts[touched]
        self.weights[touched] = np.minimum(new, self.config.max_weight)

    def end_epoch(self) -> bool:
        """Decay every weight by ``decay`` and prune edges below ``min_weight``.

        Returns:
            ``True`` when edges were pruned (the CSR arrays were rebuilt and earlier entry
            positions, e.g. neighbour slots, are invalid); ``False`` otherwise. A static
            network (``dynamic=False``) is left unchanged and returns ``False``.
        """
        if not self.config.dynamic:
            return False
        self.weights *= 1.0 - self.config.decay
        return self._keep_entries(self.weights >= self.config.min_weight)

    def cut_nodes(self, nodes: Any) -> int:
        """Remove every edge touching ``nodes`` (indices); returns the number of edges cut.

        Like pruning, a cut rebuilds the CSR arrays (entry positions held by the caller are
        invalid afterwards when the returned count is > 0).

        Example:
            >>> net = Network.from_config(NetworkConfig(topology="ring"), 5)
            >>> net.cut_nodes([0]), net.n_edges, net.degree.tolist()
            (2, 3, [0, 1, 2, 2, 1])
        """
        hit = np.zeros(self.n_nodes, dtype=bool)
        hit[np.asarray(nodes, dtype=np.int64)] = True
        keep = ~(hit[self.src] | hit[self.indices])
        cut = int((~keep).sum()) // 2
        self._keep_entries(keep)
        return cut

    def _keep_entries(self, keep: np.ndarray) -> bool:
        """Drop the entries not in ``keep`` (both directions of an edge agree)."""
        if keep.all():
            return False
        new_pos = np.cumsum(keep) - 1
        self.rev = new_pos[self.rev[keep]]
        self.indices = self.indices[keep]
        self.src = self.src[keep]
        self.weights = self.weights[keep]
        self._set_degree()
        return True

    # ------------------------------------------------------------------ export
    def edge_list(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i, j, w)``: one row per undirected edge, ``i < j``, sorted by ``(i, j)``."""
        upper = self.src < self.indices
        return (self.src[upper].astype(np.int64), self.indices[upper].astype(np.int64),
                self.weights[upper].copy())

    def to_networkx(self) -> nx.Graph:
        """A ``networkx.Graph`` with every node and a ``weight`` attribute on each edge."""
        i, j, w = self.edge_list()
        graph = nx.Graph()
        graph.add_nodes_from(range(self.n_nodes))
        graph.add_weighted_edges_from(zip(i.tolist(), j.tolist(), w.tolist()))
        return graph

    def metrics(self, path_length_sample: int | None = 1000, seed: int = 0
                ) -> dict[str, float]:
        """Structural metrics of the current graph (see :func:`network_metrics`)."""
        return _metrics(self, path_length_sample, seed)

    def __repr__(self) -> str:
        return (f"Network(n_nodes={self.n_nodes}, n_edges={self.n_edges}, "
                f"topology={self.config.topology!r}, dynamic={self.config.dynamic})")


# ---------------------------------------------------------------------- metrics
def _occurrence(keys: np.ndarray) -> np.ndarray:
    """For each item, how many earlier items have the same key (0 for the first)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    idx = np.arange(len(keys))
    first = np.ones(len(keys), dtype=bool)
    first[1:] = sk[1:] != sk[:-1]
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = idx - np.maximum.accumulate(np.where(first, idx, 0))
    return rank


def _popcount_sum(x: np.ndarray) -> int:
    bitwise_count = getattr(np, "bitwise_count", None)
    if bitwise_count is not None:
        return int(bitwise_count(x).sum())
    return int(np.unpackbits(x.view(np.uint8)).sum())  # pragma: no cover - numpy < 2


def _sum_distances(net: Network, sources: np.ndarray) -> int:
    """Sum of BFS distances from each source to every node (graph must be connected).

    Breadth-first search runs 64 sources at a time as bitsets: bit ``s`` of ``frontier[v]``
    says that ``v`` is on source ``s``'s current frontier; one level is a gather over the
    CSR entries and an OR-reduction per row.
    """
    starts = net.indptr[:-1]
    total = 0
    for c in range(0, len(sources), 64):
        chunk = sources[c:c + 64]
        visited = np.zeros(net.n_nodes, dtype=np.uint64)
        visited[chunk] = np.left_shift(np.uint64(1), np.arange(len(chunk), dtype=np.uint64))
        frontier = visited.copy()
        level = 0
        while True:
            level += 1
            reached = np.bitwise_or.reduceat(frontier[net.indices], starts)
            reached &= ~visited
            count = _popcount_sum(reached)
            if count == 0:
                break
            total += level * count
            visited |= reached
            frontier = reached
    return total


def _triangles(net: Network) -> np.ndarray:
    """Triangles through each node: row sums of ``A * (A @ A)`` (dense BLAS when dense)."""
    from scipy import sparse

    n = net.n_nodes
    e2 = len(net.indices)
    if e2 == 0:
        return np.zeros(n)
    if n <= 4000 and e2 > 0.05 * n * n:  # dense enough: one BLAS product beats sparse
        a = np.zeros((n, n), dtype=np.float32)
        a[net.src, net.indices] = 1.0
        return ((a @ a) * a).sum(axis=1) / 2.0
    a = sparse.csr_matrix((np.ones(e2, dtype=np.float64), net.indices, net.indptr),
                          shape=(n, n))
    return np.asarray(a.multiply(a @ a).sum(axis=1)).ravel() / 2.0


def _metrics(net: Network, path_length_sample: int | None, seed: int) -> dict[str, float]:
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    if path_length_sample is not None:
        path_length_sample = _as_count(path_length_sample, "path_length_sample", 1)
    n, e = net.n_nodes, net.n_edges
    adj = sparse.csr_matrix((np.ones(len(net.indices), dtype=np.int8), net.indices,
                             net.indptr), shape=(n, n))
    n_components = int(connected_components(adj, directed=False)[0])
    if n_components != 1:
        apl = math.nan
    elif n == 1:
        apl = 0.0
    else:
        if path_length_sample is None or n <= path_length_sample:
            sources = np.arange(n)
        else:
            rng = np.random.default_rng(seed)
            sources = np.sort(rng.choice(n, size=path_length_sample, replace=False))
        apl = _sum_distances(net, sources) / (len(sources) * (n - 1))
    deg = net.degree.astype(np.float64)
    pairs = deg * (deg - 1.0)
    local = np.divide(2.0 * _triangles(net), pairs, out=np.zeros(n), where=pairs > 0)
    return {
        "n_edges": float(e),
        "avg_degree": 2.0 * e / n,
        "avg_clustering": float(local.mean()) if n else 0.0,
        "n_components": float(n_components),
        "avg_path_length": float(apl),
        "density": 2.0 * e / (n * (n - 1)) if n > 1 else 0.0,
    }


def network_metrics(n: int, i: Any, j: Any, w: Any = None,
                    path_length_sample: int | None = 1000, seed: int = 0) -> dict[str, float]:
    """Structural metrics of the graph given as an edge list (e.g. an ``EpochEnd`` event).

    Keys (all floats): ``n_edges``; ``avg_degree`` (2E/n); ``avg_clustering`` (unweighted,
    the mean local clustering ``2T_i / (d_i (d_i - 1))`` as ``networkx.average_clustering``
    computes it, nodes of degree < 2 count as 0; triangles by one sparse or BLAS matrix
    product); ``n_components`` (``scipy.sparse.csgraph``);
    ``density`` (2E / (n(n-1)), 0 for one node); ``avg_path_length`` (unweighted hop count,
    mean over ordered pairs of distinct nodes; ``nan`` when the graph is disconnected, 0 for
    one node). The path length is exact when ``path_length_sample`` is None or
    ``n <= path_length_sample``; otherwise it is the mean over BFS from
    ``path_length_sample`` distinct sources drawn with ``np.random.default_rng(seed)``, an
    unbiased estimate. Deterministic for given inputs.

    Example:
        >>> m = network_metrics(6, [0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 5, 5])   # ring of 6
        >>> m["avg_path_length"], m["density"], m["n_components"]
        (1.8, 0.4, 1.0)
    """
    i_arr = np.asarray(i)
    if w is None:
        w = np.ones(i_arr.shape[0] if i_arr.ndim else 0)
    net = Network(n, i_arr, j, w)
    return _metrics(net, path_length_sample, seed)
