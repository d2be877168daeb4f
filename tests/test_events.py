"""Tests of envs.core.events: writing, reading, replay, truncation and resume."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from envs.core.events import (
    BaseEvent,
    EpochEnd,
    EventLog,
    Governance,
    Interactions,
    LogError,
    RunEnd,
    RunStart,
    event_types,
    read_events,
    replay,
    to_interactions,
    truncate_to_epoch,
)
from envs.core.network import Network, NetworkConfig
from envs.core.records import BATCH_DTYPES, InteractionBatch

N_AGENTS = 6
EPOCHS = 3
STEPS = 4  # per epoch
VERSIONS = {"python": "3.x", "numpy": "x"}


BOUNDED = {"effort": (0, 1), "dressing": (0, 1), "p": (0, 1), "task_progress": (-1, 1),
           "engagement": (-1, 1), "v_hat": (-1, 1), "weight": (0, 1)}


def random_batch(rng: np.random.Generator, n: int, step: int, epoch: int) -> InteractionBatch:
    """Valid interactions with extreme float magnitudes wherever the schema allows them."""
    cols = {}
    for name, dtype in BATCH_DTYPES.items():
        if name in BOUNDED:
            lo, hi = BOUNDED[name]
            cols[name] = lo + (hi - lo) * rng.random(n) ** rng.integers(1, 300, n)
        elif dtype is np.float64:
            cols[name] = rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)
        elif dtype is np.bool_:
            cols[name] = rng.random(n) < 0.5
        else:
            cols[name] = rng.integers(0, 6, n)
    cols["initiator"] = rng.integers(0, N_AGENTS, n)
    cols["counterparty"] = rng.integers(0, N_AGENTS, n)
    cols["kind"] = rng.integers(0, 5, n)
    cols["v"] = rng.choice([-1, 1], n)
    for name in ("payoff_a", "payoff_b"):  # a rejected interaction pays nothing
        cols[name] = np.where(cols["accepted"], cols[name], 0.0)
    cols["step"] = np.full(n, step)
    cols["epoch"] = np.full(n, epoch)
    return InteractionBatch.from_columns(cols)


def epoch_lines(rng: np.random.Generator, log: EventLog, net: Network, epoch: int,
                batches: list[InteractionBatch]) -> None:
    for s in range(STEPS):
        step = epoch * STEPS + s
        n = 0 if s == 1 else int(rng.integers(1, 9))  # one empty step per epoch
        batch = random_batch(rng, n, step, epoch)
        batches.append(batch)
        log.interactions(step, epoch, batch)
        if s == 2:
            log.governance(step, epoch, "audit", {"audited": np.array([1, 3]), "rate": 0.1})
    net.strengthen(np.arange(0, len(net.indices), 3))
    net.end_epoch()
    log.epoch_end(epoch, epoch * STEPS + STEPS - 1, edges=net,
                  state={"reputation": rng.normal(size=N_AGENTS), "note": "ok"})


def write_run(path: Path, seed: int = 0, epochs: int = EPOCHS) -> list[InteractionBatch]:
    rng = np.random.default_rng(seed)
    net = Network.from_config(NetworkConfig(topology="small_world", dynamic=True), N_AGENTS,
                              seed=seed)
    batches: list[InteractionBatch] = []
    with EventLog(path) as log:
        log.run_start("sandbox", NetworkConfig(topology="small_world"), seed=seed,
                      agents=[f"agent_{i}" for i in range(N_AGENTS)],
                      groups=["honest"] * (N_AGENTS - 1) + ["deceptive"], versions=VERSIONS)
        for epoch in range(epochs):
            epoch_lines(rng, log, net, epoch, batches)
        log.run_end(epochs * STEPS, epochs)
    return batches


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# ---------------------------------------------------------------------- round trip
def test_round_trip_exact(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    batches = write_run(path)
    expected = InteractionBatch.concat(batches)
    got = to_interactions(path)
    assert got.equals(expected)
    for name in InteractionBatch.FIELDS:
        assert getattr(got, name).dtype == BATCH_DTYPES[name]
    floats = [k for k, dt in BATCH_DTYPES.items() if dt is np.float64]
    for name in floats:  # bit-exact, extreme magnitudes included
        assert np.array_equal(getattr(got, name).view(np.int64),
                              getattr(expected, name).view(np.int64))

    r = replay(path)
    assert r.interactions().equals(expected)
    assert to_interactions(r).equals(expected)
    assert to_interactions(r.events).equals(expected)
    assert r.run_start.agents == [f"agent_{i}" for i in range(N_AGENTS)]
    assert r.run_start.groups[-1] == "deceptive"
    assert r.run_start.config["topology"] == "small_world"
    assert r.complete and r.last_complete_epoch == EPOCHS - 1
    assert [e.epoch for e in r.epoch_ends] == list(range(EPOCHS))
    assert len(r.governance) == EPOCHS and r.governance[0].data["audited"] == [1, 3]
    by_epoch = r.by_epoch()
    assert sorted(by_epoch) == list(range(EPOCHS))
    for epoch in range(EPOCHS):
        want = InteractionBatch.concat(batches[epoch * STEPS:(epoch + 1) * STEPS])
        assert by_epoch[epoch].equals(want)
    # edges rebuild the network exactly
    last = r.epoch_ends[-1]
    net = Network.from_edge_list(N_AGENTS, last.edges["i"], last.edges["j"], last.edges["w"])
    assert net.n_edges == len(last.edges["i"])
    assert isinstance(last.state["reputation"], list)


def test_empty_batches_are_not_written(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    batches = write_run(path)
    types = [json.loads(line)["type"] for line in lines(path)]
    assert types.count("interactions") == sum(len(b) > 0 for b in batches)
    assert types[0] == "run_start" and types[-1] == "run_end"
    assert types.count("epoch_end") == EPOCHS


def test_byte_identical(tmp_path: Path) -> None:
    write_run(tmp_path / "a.jsonl", seed=5)
    write_run(tmp_path / "b.jsonl", seed=5)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    write_run(tmp_path / "c.jsonl", seed=6)
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()


def test_line_format(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    first = lines(path)[0].decode()
    assert first.startswith('{"type":"run_start","env":"sandbox",')
    assert first.endswith("\n") and ", " not in first and '": ' not in first
    inter = next(ln for ln in lines(path) if b'"interactions"' in ln).decode()
    assert inter.startswith('{"type":"interactions","step":0,"epoch":0,"columns":{')


def test_extreme_floats_round_trip_and_nan_is_refused_when_read(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    batch = InteractionBatch.empty(3)
    batch.counterparty[:] = 1
    batch.tau[:] = [0.1 + 0.2, 5e-324, 1.7976931348623157e308]
    with EventLog(path) as log:
        log.run_start("x", {}, seed=None, agents=["a", "b"], versions={})
        log.interactions(0, 0, batch)
        log.epoch_end(0, 0, state={"score": float("nan")})
    got = to_interactions(path)
    assert np.array_equal(got.tau, batch.tau)
    assert np.isnan(replay(path).epoch_ends[0].state["score"])  # summaries may hold NaN
    batch.p[1] = np.nan  # a NaN label is written as NaN, and refused when read
    with EventLog(path) as log:
        log.run_start("x", {}, seed=None, agents=["a", "b"], versions={})
        log.interactions(0, 0, batch)
    with pytest.raises(LogError, match=r"run.jsonl:2: columns.p: must lie in \[0.0, 1.0\], "
                                       r"got nan \(row 1\)"):
        replay(path)


# ---------------------------------------------------------------------- crashes
def test_truncated_last_line_is_ignored_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    full = lines(path)
    # crash while writing epoch 2's epoch_end: keep half of that line
    idx = max(k for k, ln in enumerate(full) if b'"epoch_end"' in ln)
    path.write_bytes(b"".join(full[:idx]) + full[idx][: len(full[idx]) // 2])
    with pytest.warns(RuntimeWarning, match="truncated"):
        r = replay(path)
    assert len(r.events) == idx
    assert not r.complete and r.last_complete_epoch == EPOCHS - 2


def test_malformed_middle_line_raises(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    full = lines(path)
    full[2] = b'{"type":"interactions","step":\n'
    path.write_bytes(b"".join(full))
    with pytest.raises(ValueError, match=rf"{path}:3: malformed"):
        replay(path)
    full[2] = b'{"type":"teleport","step":1}\n'
    path.write_bytes(b"".join(full))
    with pytest.raises(ValueError, match=rf"{path}:3: .*teleport"):
        list(read_events(path))
    full[2] = b'{"type":"run_end","step":"soon","epoch":0}\n'
    path.write_bytes(b"".join(full))
    with pytest.raises(ValueError, match=rf"{path}:3:"):
        list(read_events(path))


def test_malformed_complete_last_line_raises(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    with open(path, "ab") as fh:
        fh.write(b"{oops}\n")
    n = len(lines(path))
    with pytest.raises(ValueError, match=rf"{path}:{n}:"):
        replay(path)


def test_no_run_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with EventLog(path) as log:
        log.run_end(0, 0)
    with pytest.raises(ValueError, match="run_start"):
        replay(path)


# ---------------------------------------------------------------------- resume
def test_truncate_to_epoch_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path)
    full = lines(path)
    ends = [k for k, ln in enumerate(full) if b'"epoch_end"' in ln]
    # simulate a crash mid-epoch-2 with a partial line
    path.write_bytes(b"".join(full[: ends[1] + 3]) + b'{"type":"inter')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = replay(path)
    assert r.last_complete_epoch == 1 and not r.complete

    kept = truncate_to_epoch(path, r.last_complete_epoch)
    assert kept == ends[1] + 1
    assert lines(path) == full[: ends[1] + 1]
    assert replay(path).last_complete_epoch == 1
    assert not list(tmp_path.glob("*.tmp"))

    # resume: re-run epoch 2 from the same state and append; the result equals a clean run
    rng = np.random.default_rng(0)
    net = Network.from_config(NetworkConfig(topology="small_world", dynamic=True), N_AGENTS,
                              seed=0)
    scratch: list[InteractionBatch] = []
    with EventLog(tmp_path / "scratch.jsonl") as tmp_log:
        for epoch in range(2):
            epoch_lines(rng, tmp_log, net, epoch, scratch)
    with EventLog(path, mode="a") as log:
        epoch_lines(rng, log, net, 2, scratch)
        log.run_end(EPOCHS * STEPS, EPOCHS)
    assert lines(path) == full


def test_truncate_to_epoch_errors(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_run(path, epochs=2)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"epoch=7.*\[0, 1\]"):
        truncate_to_epoch(path, 7)
    with pytest.raises(ValueError, match="epoch"):
        truncate_to_epoch(path, -1)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))
    assert truncate_to_epoch(path, 0) < len(before.splitlines())


def test_append_mode_cuts_partial_tail(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with EventLog(path) as log:
        log.run_start("x", {}, agents=["a"], versions={})
    with open(path, "ab") as fh:
        fh.write(b'{"type":"run_e')
    with pytest.warns(RuntimeWarning, match="truncated"), EventLog(path, mode="a") as log:
        log.run_end(1, 0)
    r = replay(path)
    assert r.complete and len(r.events) == 2


def test_last_complete_epoch_none(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with EventLog(path) as log:
        log.run_start("x", {}, agents=["a"], versions={})
        log.interactions(0, 0, InteractionBatch.empty(2))
    r = replay(path)
    assert r.last_complete_epoch == -1 and not r.complete
    assert sorted(r.by_epoch()) == [0] and len(r.by_epoch()[0]) == 2


# ---------------------------------------------------------------------- API details
def test_write_dicts_and_models(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with EventLog(path) as log:
        log.write({"type": "run_start", "env": "x", "agents": ["a"], "versions": {}})
        log.write(Governance(step=0, epoch=0, lever="tax", data={"collected": 1.5}))
        log.write({"type": "epoch_end", "epoch": 0, "step": 0})
        with pytest.raises(ValueError, match="unknown event type"):
            log.write({"type": "nope"})
        with pytest.raises(ValueError):
            log.write({"type": "run_end", "step": 1})  # epoch missing
        with pytest.raises(ValueError, match="batch"):
            log.interactions(0, 0, {"p": [0.5]})  # type: ignore[arg-type]
        assert log.n_written == 3
    with pytest.raises(ValueError, match="closed"):
        log.run_end(0, 0)
    events = list(read_events(path))
    assert [type(e) for e in events] == [RunStart, Governance, EpochEnd]


def test_event_validation() -> None:
    with pytest.raises(ValueError, match="groups"):
        RunStart(env="x", agents=["a", "b"], groups=["g"], versions={})
    with pytest.raises(ValueError, match="edges"):
        EpochEnd(epoch=0, step=0, edges={"i": [0], "j": [1]})
    with pytest.raises(ValueError, match="one length"):
        EpochEnd(epoch=0, step=0, edges={"i": [0], "j": [1], "w": []})
    with pytest.raises(ValueError, match="unknown fields"):
        Interactions(step=0, epoch=0, columns={"bogus": [1]})
    with pytest.raises(ValueError):
        RunEnd(step=0, epoch=0, extra=1)
    with pytest.raises(ValueError, match="mode"):
        EventLog("/tmp/never.jsonl", mode="x")


def test_versions_recorded(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with EventLog(path) as log:
        log.run_start("x", {}, agents=["a"])
    versions = replay(path).run_start.versions
    assert set(versions) == {"python", "numpy", "pettingzoo", "gymnasium", "networkx",
                             "pydantic", "distsafe"}
    assert versions["numpy"] == np.__version__
    assert all(isinstance(v, str) and v for v in versions.values())


def test_new_event_type_is_one_class(tmp_path: Path) -> None:
    class Snapshot(BaseEvent):
        type: Literal["test_snapshot"] = "test_snapshot"
        step: int
        values: list[float]

    assert event_types()["test_snapshot"] is Snapshot
    path = tmp_path / "run.jsonl"
    with EventLog(path) as log:
        log.run_start("x", {}, agents=[], versions={})
        log.write(Snapshot(step=2, values=[0.1, 0.2]))
        log.write({"type": "test_snapshot", "step": 3, "values": []})
    events = replay(path).events
    assert events[1] == Snapshot(step=2, values=[0.1, 0.2])
    assert isinstance(events[2], Snapshot)
    with pytest.raises(TypeError, match="already registered"):
        class Impostor(BaseEvent):  # noqa: F841
            type: Literal["run_end"] = "run_end"


def test_large_step_write_is_fast(tmp_path: Path) -> None:
    batch = random_batch(np.random.default_rng(0), 10_000, 0, 0)
    with EventLog(tmp_path / "big.jsonl") as log:
        log.run_start("x", {}, agents=[f"agent_{i}" for i in range(N_AGENTS)], versions={})
        t0 = time.perf_counter()
        log.interactions(0, 0, batch)
        elapsed = time.perf_counter() - t0
    assert elapsed < 1.0  # one json.dumps of the columns; ~0.1 s on a slow machine
    assert to_interactions(tmp_path / "big.jsonl").equals(batch)


def test_a_log_of_several_episodes_replays_each_one(tmp_path):
    """An env reset again with the same log appends an episode; replay picks one."""
    from baselines.runner import metrics_from_events, rollout
    from baselines.scripted import make_policy
    from envs.sandbox import parallel_env

    path = tmp_path / "events.jsonl"
    env = parallel_env(n_agents=5, n_epochs=2, steps_per_epoch=4, event_log=path)
    pols = {a: make_policy("honest", seed=0) for a in env.possible_agents}
    live = [rollout(env, pols, seed=1), rollout(env, pols, seed=None)]
    env.close()
    with pytest.raises(ValueError, match="holds 2 episodes; choose one with episode=0..1"):
        replay(path)
    for k in (0, 1):
        rep = replay(path, episode=k)
        assert rep.run_start.episode == k and rep.complete
        assert repr(metrics_from_events(path, episode=k)) == repr(live[k])
    assert replay(path, episode=0).run_start.seed == 1
    assert replay(path, episode=-1).run_start.seed is None
    with pytest.raises(ValueError, match="no episode 2"):
        replay(path, episode=2)
