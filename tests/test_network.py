"""Tests of envs.core.network: topologies, CSR invariants, dynamics, slots, metrics."""

from __future__ import annotations

import math
import time

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core.network import Network, NetworkConfig, network_metrics


def check_csr(net: Network) -> None:
    """Every structural invariant of the CSR arrays."""
    n = net.n_nodes
    total = len(net.indices)
    assert total % 2 == 0
    assert net.indptr.shape == (n + 1,) and net.indptr.dtype == np.int64
    assert net.indices.dtype == np.int32 and net.src.dtype == np.int32
    assert net.weights.dtype == np.float64 and net.rev.dtype == np.int64
    assert net.indptr[0] == 0 and net.indptr[-1] == total
    assert np.array_equal(np.diff(net.indptr), net.degree)
    assert np.array_equal(net.src, np.repeat(np.arange(n), net.degree))
    assert net.weights.shape == net.rev.shape == net.src.shape == (total,)
    # rows sorted by neighbour, no duplicates, no self-loops
    same_row = net.src[1:] == net.src[:-1]
    assert np.all(net.indices[1:][same_row] > net.indices[:-1][same_row])
    assert np.all(net.indices != net.src)
    if total:
        assert net.indices.min() >= 0 and net.indices.max() < n
    # reverse entries
    assert np.array_equal(net.rev[net.rev], np.arange(total))
    assert np.array_equal(net.indices[net.rev], net.src)
    assert np.array_equal(net.src[net.rev], net.indices)
    assert np.array_equal(net.weights[net.rev], net.weights)
    assert net.n_edges == total // 2


def edge_set(net: Network) -> set[tuple[int, int]]:
    i, j, _ = net.edge_list()
    return set(zip(i.tolist(), j.tolist()))


def nx_edge_set(graph: nx.Graph) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in graph.edges()}


# ---------------------------------------------------------------------- topologies
@pytest.mark.parametrize(
    ("config", "n", "expected_edges"),
    [
        (NetworkConfig(topology="complete"), 10, 45),
        (NetworkConfig(topology="ring"), 10, 10),
        (NetworkConfig(topology="star"), 10, 9),
        (NetworkConfig(topology="scale_free", m=2), 50, (50 - 2) * 2),
        (NetworkConfig(topology="scale_free", m=3), 40, (40 - 3) * 3),
        (NetworkConfig(topology="small_world", k=4), 20, 20 * 4 // 2),
        (NetworkConfig(topology="small_world", k=6, rewire_probability=0.0), 30, 90),
        (NetworkConfig(topology="random", edge_probability=0.0), 12, 0),
        (NetworkConfig(topology="random", edge_probability=1.0), 12, 66),
        (NetworkConfig(topology="custom", edges=[(0, 1), (2, 1), (1, 0)]), 4, 2),
    ],
)
def test_topology_edge_counts(config: NetworkConfig, n: int, expected_edges: int) -> None:
    net = Network.from_config(config, n, seed=3)
    check_csr(net)
    assert net.n_edges == expected_edges
    assert np.all(net.weights == config.initial_weight)


def test_degrees_and_edges_match_networkx() -> None:
    n = 9
    ring = Network.from_config(NetworkConfig(topology="ring"), n)
    assert ring.degree.tolist() == [2] * n
    assert edge_set(ring) == nx_edge_set(nx.cycle_graph(n))
    star = Network.from_config(NetworkConfig(topology="star"), n)
    assert star.degree.tolist() == [n - 1] + [1] * (n - 1)
    assert edge_set(star) == nx_edge_set(nx.star_graph(n - 1))
    comp = Network.from_config(NetworkConfig(topology="complete"), n)
    assert comp.degree.tolist() == [n - 1] * n
    assert edge_set(comp) == nx_edge_set(nx.complete_graph(n))
    sw = Network.from_config(NetworkConfig(topology="small_world", k=4), 30, seed=5)
    assert edge_set(sw) == nx_edge_set(nx.watts_strogatz_graph(30, 4, 0.1, seed=5))
    sf = Network.from_config(NetworkConfig(topology="scale_free", m=2), 30, seed=5)
    assert edge_set(sf) == nx_edge_set(nx.barabasi_albert_graph(30, 2, seed=5))


@pytest.mark.parametrize("topology", ["complete", "ring", "star", "random", "small_world",
                                      "scale_free"])
def test_small_n_is_graceful(topology: str) -> None:
    for n in (1, 2, 3, 4):
        net = Network.from_config(NetworkConfig(topology=topology), n, seed=0)
        check_csr(net)
        assert net.n_nodes == n
        if n == 1:
            assert net.n_edges == 0


def test_small_n_fallbacks_to_complete() -> None:
    assert Network.from_config(NetworkConfig(topology="ring"), 2).n_edges == 1
    assert Network.from_config(NetworkConfig(topology="scale_free", m=2), 2).n_edges == 1
    assert Network.from_config(NetworkConfig(topology="scale_free", m=5), 4).n_edges == 6
    assert Network.from_config(NetworkConfig(topology="small_world", k=6), 5).n_edges == 10


@pytest.mark.parametrize("topology", ["random", "small_world", "scale_free"])
def test_same_seed_same_graph(topology: str) -> None:
    cfg = NetworkConfig(topology=topology, edge_probability=0.1)
    a = Network.from_config(cfg, 60, seed=11)
    b = Network.from_config(cfg, 60, seed=11)
    c = Network.from_config(cfg, 60, seed=12)
    for x, y in zip(a.edge_list(), b.edge_list()):
        assert np.array_equal(x, y)
    assert edge_set(a) != edge_set(c)


def test_custom_edges_validated() -> None:
    cfg = NetworkConfig(topology="custom", edges=[(0, 5)])
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        Network.from_config(cfg, 4)
    with pytest.raises(ValueError, match="self-loops"):
        NetworkConfig(topology="custom", edges=[(1, 1)])
    with pytest.raises(ValueError, match="requires edges"):
        NetworkConfig(topology="custom")
    with pytest.raises(ValueError, match="only used with topology='custom'"):
        NetworkConfig(topology="ring", edges=[(0, 1)])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"edge_probability": 1.5}, "edge_probability"),
        ({"edge_probability": -0.1}, "edge_probability"),
        ({"rewire_probability": 2.0}, "rewire_probability"),
        ({"k": 0}, "k"),
        ({"m": 0}, "m"),
        ({"strengthen": -0.1}, "strengthen"),
        ({"decay": 1.5}, "decay"),
        ({"min_weight": -1.0}, "min_weight"),
        ({"max_weight": -1.0}, "max_weight"),
        ({"initial_weight": -0.5}, "initial_weight"),
        ({"min_weight": 0.8, "max_weight": 0.5}, "min_weight"),
        ({"initial_weight": 2.0, "max_weight": 1.0}, "initial_weight"),
        ({"topology": "hypercube"}, "topology"),
        ({"edge_probabilty": 0.3}, "edge_probabilty"),
    ],
)
def test_bad_config_raises(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        NetworkConfig(**kwargs)


def test_config_is_frozen_and_documented() -> None:
    cfg = NetworkConfig()
    with pytest.raises(ValueError):
        cfg.k = 3  # type: ignore[misc]
    assert all(f.description for f in NetworkConfig.model_fields.values())


def test_bad_build_arguments_raise() -> None:
    with pytest.raises(ValueError, match="n_agents"):
        Network.from_config(NetworkConfig(), 0)
    with pytest.raises(ValueError, match="n_agents"):
        Network.from_config(NetworkConfig(), 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="config"):
        Network.from_config({"topology": "ring"}, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicate"):
        Network.from_edge_list(3, [0, 1], [1, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights"):
        Network.from_edge_list(3, [0], [1], [-0.5])
    with pytest.raises(ValueError, match="one length"):
        Network.from_edge_list(3, [0, 1], [1], [0.5])


# ---------------------------------------------------------------------- dynamics
def dynamic_ring(n: int = 6, **kwargs) -> Network:
    return Network.from_config(NetworkConfig(topology="ring", dynamic=True, **kwargs), n)


def weight(net: Network, a: int, b: int) -> float:
    pos = net.edge_positions([a], [b])[0]
    assert pos >= 0
    return float(net.weights[pos])


def test_strengthen_both_directions_repeats_and_cap() -> None:
    net = dynamic_ring(strengthen=0.1, max_weight=0.75)
    p01, p10, p12 = net.edge_positions([0, 1, 1], [1, 0, 2])
    net.strengthen(np.array([p01, p10, p12]))
    check_csr(net)
    assert weight(net, 0, 1) == pytest.approx(0.7)
    assert weight(net, 1, 0) == weight(net, 0, 1)
    assert weight(net, 2, 1) == pytest.approx(0.6)
    assert weight(net, 3, 4) == 0.5
    net.strengthen([p01] * 10)
    assert weight(net, 0, 1) == 0.75 and weight(net, 1, 0) == 0.75
    check_csr(net)
    net.strengthen(np.array([], dtype=np.int64))  # no-op
    with pytest.raises(ValueError, match="positions"):
        net.strengthen([len(net.indices)])
    with pytest.raises(ValueError, match="positions"):
        net.strengthen([-1])
    with pytest.raises(ValueError, match="positions"):
        net.strengthen([0.5])


def test_edge_positions() -> None:
    net = dynamic_ring()
    pos = net.edge_positions([0, 0, 0, 2, 9, -1], [1, 5, 3, 3, 0, 0])
    assert pos[0] >= 0 and pos[1] >= 0 and pos[3] >= 0
    assert pos[2] == -1 and pos[4] == -1 and pos[5] == -1
    assert net.src[pos[0]] == 0 and net.indices[pos[0]] == 1
    assert net.rev[pos[0]] == net.edge_positions([1], [0])[0]


def test_decay_and_prune() -> None:
    net = dynamic_ring(6, decay=0.5, min_weight=0.3, strengthen=0.5)
    net.strengthen(net.edge_positions([0, 3], [1, 4]))  # two edges to 1.0, four at 0.5
    assert net.end_epoch() is True  # 0.5 -> 0.25 < 0.3 pruned; 1.0 -> 0.5 kept
    check_csr(net)
    assert edge_set(net) == {(0, 1), (3, 4)}
    assert np.all(net.weights == 0.5)
    assert net.degree.tolist() == [1, 1, 0, 1, 1, 0]
    assert net.end_epoch() is True  # 0.25 pruned: nothing left
    check_csr(net)
    assert net.n_edges == 0 and net.degree.tolist() == [0] * 6
    assert net.end_epoch() is False
    slot_pos, slot_mask = net.neighbor_slots(3)
    assert not slot_mask.any() and np.all(slot_pos == -1)


def test_decay_without_prune_returns_false() -> None:
    net = dynamic_ring(5, decay=0.1, min_weight=0.1)
    assert net.end_epoch() is False
    check_csr(net)
    assert np.allclose(net.weights, 0.45)
    assert net.n_edges == 5


def test_prune_after_mixed_strengthening_keeps_invariants() -> None:
    rng = np.random.default_rng(7)
    cfg = NetworkConfig(topology="random", edge_probability=0.2, dynamic=True, decay=0.3,
                        min_weight=0.3, strengthen=0.05)
    net = Network.from_config(cfg, 80, seed=1)
    for _ in range(4):
        net.strengthen(rng.integers(0, len(net.indices), 300))
        check_csr(net)
        i0, j0, w0 = net.edge_list()
        changed = net.end_epoch()
        check_csr(net)
        expected = w0 * (1 - 0.3)
        keep = expected >= 0.3
        i1, j1, w1 = net.edge_list()
        assert changed == (not keep.all())
        assert np.array_equal(i1, i0[keep]) and np.array_equal(j1, j0[keep])
        assert np.array_equal(w1, expected[keep])


def test_static_network_is_unchanged() -> None:
    net = Network.from_config(NetworkConfig(topology="small_world"), 30, seed=2)
    before = [a.copy() for a in net.edge_list()]
    net.strengthen(np.arange(10))
    assert net.end_epoch() is False
    for a, b in zip(before, net.edge_list()):
        assert np.array_equal(a, b)


def test_copy_is_independent() -> None:
    net = dynamic_ring()
    twin = net.copy()
    net.strengthen([0, 0, 0])
    assert twin.weights.max() == 0.5 and net.weights.max() > 0.5
    check_csr(twin)


# ---------------------------------------------------------------------- neighbour slots
def reference_slots(net: Network, k: int) -> list[list[int]]:
    """Slow reference: the k heaviest neighbours (ties: lower index), listed ascending."""
    out = []
    for u in range(net.n_nodes):
        lo, hi = net.indptr[u], net.indptr[u + 1]
        entries = [(-float(net.weights[e]), int(net.indices[e])) for e in range(lo, hi)]
        chosen = sorted(entries)[:k]
        out.append(sorted(nb for _, nb in chosen))
    return out


def slots_as_lists(net: Network, k: int) -> list[list[int]]:
    slot_pos, slot_mask = net.neighbor_slots(k)
    assert slot_pos.shape == slot_mask.shape == (net.n_nodes, k)
    assert slot_pos.dtype == np.int64 and slot_mask.dtype == np.bool_
    assert np.array_equal(slot_mask, slot_pos >= 0)
    assert np.array_equal(slot_mask.sum(axis=1), np.minimum(net.degree, k))
    rows = np.repeat(np.arange(net.n_nodes)[:, None], k, axis=1)
    assert np.all(net.src[slot_pos[slot_mask]] == rows[slot_mask])  # entries of own row
    assert np.all(slot_mask[:, :-1] >= slot_mask[:, 1:])  # padding at the end
    return [net.indices[slot_pos[u][slot_mask[u]]].tolist() for u in range(net.n_nodes)]


def random_weighted(n: int, p: float, seed: int, levels: int) -> Network:
    rng = np.random.default_rng(seed)
    g = nx.gnp_random_graph(n, p, seed=seed)
    e = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
    w = rng.integers(0, levels, len(e)) / levels  # few levels: many ties
    return Network.from_edge_list(n, e[:, 0], e[:, 1], w)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 40])
@pytest.mark.parametrize("levels", [1, 3, 1000])
def test_neighbor_slots_match_reference(k: int, levels: int) -> None:
    net = random_weighted(120, 0.08, seed=k + levels, levels=levels)
    check_csr(net)
    assert slots_as_lists(net, k) == reference_slots(net, k)


def test_neighbor_slots_on_hub() -> None:
    net = Network.from_config(NetworkConfig(topology="star", dynamic=True), 50)
    net.strengthen(net.edge_positions([0, 0, 0, 0], [40, 7, 40, 49]))
    slots = slots_as_lists(net, 3)
    assert slots[0] == [7, 40, 49]
    assert slots[1] == [0]
    assert slots_as_lists(net, 3) == reference_slots(net, 3)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 25), p=st.floats(0.0, 1.0), seed=st.integers(0, 10_000),
       k=st.integers(1, 30), levels=st.integers(1, 5))
def test_neighbor_slots_property(n: int, p: float, seed: int, k: int, levels: int) -> None:
    net = random_weighted(n, p, seed, levels)
    check_csr(net)
    assert slots_as_lists(net, k) == reference_slots(net, k)


def test_neighbor_slots_bad_k() -> None:
    net = dynamic_ring()
    with pytest.raises(ValueError, match="K"):
        net.neighbor_slots(0)


def test_neighbor_slots_fast_at_scale() -> None:
    rng = np.random.default_rng(0)
    g = nx.gnm_random_graph(10_000, 40_000, seed=0)
    e = np.array(list(g.edges()))
    net = Network.from_edge_list(10_000, e[:, 0], e[:, 1], rng.random(len(e)))
    net.neighbor_slots(8)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        net.neighbor_slots(8)
        best = min(best, time.perf_counter() - t0)
    assert best < 0.05  # typically 2-4 ms; loose bound for busy machines


# ---------------------------------------------------------------------- export
def test_edge_list_round_trip() -> None:
    net = random_weighted(60, 0.15, seed=4, levels=1000)
    i, j, w = net.edge_list()
    assert np.all(i < j)
    assert np.all(np.diff(i * 60 + j) > 0)  # sorted by (i, j)
    back = Network.from_edge_list(60, i, j, w, net.config)
    for name in ("indptr", "indices", "weights", "rev", "src", "degree"):
        assert np.array_equal(getattr(back, name), getattr(net, name)), name
    perm = np.random.default_rng(1).permutation(len(i))
    swapped = Network.from_edge_list(60, j[perm], i[perm], w[perm])
    for x, y in zip(swapped.edge_list(), net.edge_list()):
        assert np.array_equal(x, y)


def test_to_networkx() -> None:
    net = random_weighted(30, 0.2, seed=2, levels=10)
    g = net.to_networkx()
    assert g.number_of_nodes() == 30 and g.number_of_edges() == net.n_edges
    for a, b, w in zip(*net.edge_list()):
        assert g[int(a)][int(b)]["weight"] == w


# ---------------------------------------------------------------------- metrics
def test_metrics_complete_k5() -> None:
    m = Network.from_config(NetworkConfig(), 5).metrics()
    assert m == {"n_edges": 10.0, "avg_degree": 4.0, "avg_clustering": 1.0,
                 "n_components": 1.0, "avg_path_length": 1.0, "density": 1.0}


def test_metrics_ring_and_disconnected() -> None:
    m = Network.from_config(NetworkConfig(topology="ring"), 6).metrics()
    assert m["avg_path_length"] == pytest.approx(1.8)
    assert m["avg_clustering"] == 0.0 and m["n_components"] == 1.0
    m = network_metrics(6, [0, 1, 3, 4], [1, 2, 4, 5])
    assert m["n_components"] == 2.0 and math.isnan(m["avg_path_length"])
    m = network_metrics(1, [], [])
    assert m["n_edges"] == 0.0 and m["avg_path_length"] == 0.0 and m["density"] == 0.0


def test_path_length_exact_matches_networkx_and_sampling() -> None:
    net = Network.from_config(NetworkConfig(topology="scale_free", m=2), 300, seed=9)
    g = net.to_networkx()
    exact = net.metrics(path_length_sample=None)["avg_path_length"]
    assert exact == pytest.approx(nx.average_shortest_path_length(g), rel=1e-12)
    assert net.metrics(path_length_sample=300)["avg_path_length"] == exact
    assert net.metrics()["avg_clustering"] == pytest.approx(nx.average_clustering(g))
    s1 = net.metrics(path_length_sample=60, seed=1)
    s2 = net.metrics(path_length_sample=60, seed=1)
    assert s1 == s2
    assert s1["avg_path_length"] == pytest.approx(exact, rel=0.1)
    assert net.metrics(path_length_sample=60, seed=2)["avg_path_length"] != exact
    with pytest.raises(ValueError, match="path_length_sample"):
        net.metrics(path_length_sample=0)


def test_network_metrics_matches_method() -> None:
    net = random_weighted(40, 0.2, seed=3, levels=10)
    i, j, w = net.edge_list()
    assert network_metrics(40, i, j, w) == net.metrics()
    assert network_metrics(40, i, j) == net.metrics()
