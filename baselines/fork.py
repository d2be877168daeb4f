"""``distsafe fork``: restore a run at round R, change a setting, play on into a new folder.

``distsafe fork RUN_DIR --at-round R [--set KEY=VALUE ...] [--out DIR] [--overwrite]``

Runs are deterministic, so a run's state at round (step) ``R`` is restored by simulating it
again: the run's resolved scenario (``RUN_DIR/config.yaml``, seed included) is built and its
first ``R`` steps are played and checked against ``RUN_DIR/events.jsonl`` — the new log up to
``R`` must equal the original's line for line (and the interactions buffered for a columnar
chunk row for row); a difference (code or config changed since) is refused naming the first
epoch that differs. Then the settings change, from round ``R`` on, and the run plays on.
A fork without ``--set`` reproduces the original entirely.

Settings (``--set``, repeatable; the value is YAML):

- ``agents[k].type=NAME``, ``agents[k].params.X=V`` (anything but ``count``): the agents of
  entry ``k`` are driven by a new policy from round ``R`` on, seeded from the run's seed,
  ``k`` and ``R``. The agents keep their group labels of the original run (the log's
  ``run_start`` is the original's); the fork's ``config.yaml`` names the new policy.
- ``env.FIELD=V`` for the base environment's ``LIVE_FIELDS`` (the commons defines them; a
  variant without ``LIVE_FIELDS`` has none): the config is updated in place from round R on,
  after the new value is validated with the config model.
- ``governance.LEVER.PARAM=V``: a lever's parameter changes from round R on (a parameter that
  sized the lever's state at reset, such as ``circuit_breaker.window``, is refused); a lever
  the run does not have is added (its hooks registered, its reset hook run with its own
  generator, seeded from the run's seed and R) when it comes after every lever the run has in
  the stack's order (so its hooks run where a fresh stack would run them); removing a lever is
  refused.

The new folder (default ``RUN_DIR-fork<R>``) holds ``config.yaml`` (the fork's scenario, plus
``fork: {from, at_round, set, earlier}``), ``events.jsonl`` (whose ``run_start`` is the
original's, identity included), ``events.interactions/`` and ``metrics.csv``; an LLM run's
response cache is copied first, so the replay makes no provider calls. Everything is written
in a hidden folder beside and moved in at the end, so a refused fork leaves nothing. A fork
can be forked again: its earlier changes are replayed at their rounds.

Errors are ``distsafe: error: ...`` lines with exit status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["ForkPlan", "cmd_fork", "fork", "plan_fork", "register"]

#: lever parameters that only take effect at reset (they size the lever's state)
_RESET_BOUND = {"circuit_breaker": ("window",), "monitoring": ("detector", "llm")}
_AGENT_FIXED = ("count",)
_NOT_ENV = ("n_agents", "n_epochs", "steps_per_epoch", "network", "groups", "teams")


def _cli() -> Any:
    import baselines.cli

    return baselines.cli


def _fail(message: str) -> Exception:
    return _cli()._Failure(message)


# --------------------------------------------------------------------------- the plan
@dataclass
class _Change:
    """The settings changed at one round: the new agents entries, env fields and levers."""

    at_round: int
    sets: list[str]
    agents: dict[int, Any] = field(default_factory=dict)    # entry -> AgentSpec
    env: dict[str, Any] = field(default_factory=dict)       # field -> validated value
    lever_params: dict[str, Any] = field(default_factory=dict)  # lever -> Params
    lever_new: dict[str, Any] = field(default_factory=dict)     # lever -> Params


@dataclass
class ForkPlan:
    """Everything a fork does, checked before anything is written."""

    run_dir: Path
    at_round: int
    sets: list[str]
    root: Any                 # the original (root) scenario
    seed: int
    scenario: Any             # the fork's scenario
    changes: list[_Change]    # earlier changes (a fork of a fork) then this one
    earlier: list[dict]
    identity: dict | None
    log_format: str
    original_log: Path
    last_step: int


def _read_config(path: Path) -> tuple[dict, dict | None]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(f"{path}: no such file (not a run folder?)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise _fail(f"{path}: cannot read: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise _fail(f"{path}: expected a mapping (a run's resolved scenario)")
    data = dict(data)
    record = data.pop("fork", None)
    return data, record


def _split_set(text: str) -> tuple[str, list, Any]:
    """``KEY=VALUE`` -> (key, path tokens, value), with :mod:`baselines.sweep`'s parsing."""
    from baselines.sweep import SweepConfigError, parse_param, split_path

    try:
        path, values = parse_param(text)
    except SweepConfigError as e:
        lines = [line.replace("--param", "--set", 1).replace("PATH=V1,V2,...", "KEY=VALUE")
                 .replace("0,0.1,0.25", "0.25") for line in e.problem_lines]
        raise _fail("\n".join(lines)) from None
    if len(values) != 1:
        raise _fail(f"--set {text}: expected one value (KEY=VALUE), got {len(values)}")
    return path, split_path(path), values[0]


_ALLOWED = ("agents[k].type", "agents[k].params.X", "env.FIELD (a live field)",
            "governance.LEVER.PARAM")


def _scenario_path(key: str, tokens: list, value: Any, live: Sequence[str],
                   env_id: str) -> str:
    """The scenario path a ``--set`` key writes, after checking what may change mid-run."""
    head = tokens[0]
    where = f"--set {key}"
    if head == "agents":
        if len(tokens) < 3 or not isinstance(tokens[1], int):
            raise _fail(f"{where}: give an entry and a field, e.g. agents[0].type=NAME or "
                        "agents[0].params.X=V")
        if tokens[2] in _AGENT_FIXED:
            raise _fail(f"{where}: an entry's count cannot change mid-run (the agents are "
                        "fixed); allowed: agents[k].type, agents[k].params.X")
        return key
    if head == "env":
        if len(tokens) < 2 or not isinstance(tokens[1], str):
            raise _fail(f"{where}: give a field, env.FIELD; allowed fields of {env_id}: "
                        f"{', '.join(live) or 'none (the variant defines no LIVE_FIELDS)'}")
        name = tokens[1]
        if name not in live:
            raise _fail(f"{where}: {name} cannot change mid-run; allowed fields of {env_id}: "
                        f"{', '.join(live) or 'none (the variant defines no LIVE_FIELDS)'}")
        rest = key.split(".", 1)[1]
        return rest if name == "payoff" else f"env_params.{rest}"
    if head == "governance":
        if len(tokens) < 2:
            raise _fail(f"{where}: give a lever, governance.LEVER.PARAM=V")
        return key
    raise _fail(f"{where}: {head} cannot change mid-run; allowed: {', '.join(_ALLOWED)}")


def _apply_sets(dump: dict, sets: Sequence[str], live: Sequence[str], env_id: str) -> dict:
    from baselines.sweep import SweepConfigError, apply

    parsed = [_split_set(text) for text in sets]
    # a new type starts from its own defaults: types first (their params cleared), then the
    # rest, so agents[k].params.X=V given beside agents[k].type=NAME sets the new policy's X
    new_type = [p for p in parsed if len(p[1]) == 3 and p[1][0] == "agents"
                and isinstance(p[1][1], int) and p[1][2] == "type"]
    for _key, tokens, _value in new_type:
        agents = dump.get("agents")
        if isinstance(agents, list) and tokens[1] < len(agents) \
                and isinstance(agents[tokens[1]], dict):
            dump = copy.deepcopy(dump)
            dump["agents"][tokens[1]]["params"] = {}
    for key, tokens, value in new_type + [p for p in parsed if p not in new_type]:
        path = _scenario_path(key, tokens, value, live, env_id)
        try:
            dump = apply(dump, path, value)
        except SweepConfigError as e:
            raise _fail("\n".join(f"--set {key}: {line}" for line in e.problem_lines)) \
                from None
    return dump


def _live_fields(env: Any) -> tuple[str, ...]:
    return tuple(getattr(env.unwrapped, "LIVE_FIELDS", ()) or ())


def _change(prev: Any, new: Any, at_round: int, sets: list[str], base_env: Any,
            source: str) -> _Change:
    """What differs between two scenarios, as live operations; refuses what cannot change."""
    from wrappers.stack import LEVERS, ORDER

    ch = _Change(at_round, list(sets))
    for k, (a, b) in enumerate(zip(prev.agents, new.agents)):
        if a != b:
            try:  # built now, so that a policy that cannot start is refused up front
                b.policy_class()(seed=0, **b.params)
            except Exception as e:  # noqa: BLE001 - any failure of a user's policy
                raise _fail(f"{source}: agents[{k}]: the policy {b.type!r} cannot be built: "
                            f"{type(e).__name__}: {' '.join(str(e).split())}") from None
            ch.agents[k] = b
    config = base_env.unwrapped.config
    cls = type(config)
    new_cfg = new.env_config()
    old_cfg = prev.env_config()
    changed = [f for f in _live_fields(base_env)
               if json.dumps(_jsonable(new_cfg.get(f)), sort_keys=True)
               != json.dumps(_jsonable(old_cfg.get(f)), sort_keys=True)]
    if changed:
        from pydantic import ValidationError

        data = config.model_dump()
        for f in changed:
            data[f] = new_cfg.get(f)
        try:
            validated = cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                                 for err in e.errors())
            raise _fail(f"{source}: env: {problems}") from None
        ch.env = {f: getattr(validated, f) for f in changed}
    old_gov = prev.governance
    new_gov = new.governance
    for lever_cls in ORDER:
        name = lever_cls.lever
        a = getattr(old_gov, name, None) if old_gov is not None else None
        b = getattr(new_gov, name, None) if new_gov is not None else None
        if a == b:
            continue
        if b is None:
            raise _fail(f"{source}: governance.{name}: a lever cannot be removed mid-run "
                        "(its hooks stay registered); change its parameters instead")
        if a is None:
            present = [c.lever for c in ORDER
                       if old_gov is not None and getattr(old_gov, c.lever) is not None]
            later = [p for p in present if ORDER.index(LEVERS[p]) > ORDER.index(lever_cls)]
            if later:
                raise _fail(f"{source}: governance.{name}: cannot be added mid-run before "
                            f"{', '.join(later)} (a fresh stack runs its hooks first); "
                            f"levers that can be added: those after "
                            f"{', '.join(present)} in {', '.join(c.lever for c in ORDER)}")
            ch.lever_new[name] = b
            continue
        bound = [p for p in _RESET_BOUND.get(name, ())
                 if getattr(a, p) != getattr(b, p)]
        live = getattr(lever_cls, "LIVE_PARAMS", None)
        if live is not None:
            bound += [p for p in type(a).model_fields
                      if p not in live and getattr(a, p) != getattr(b, p) and p not in bound]
        if bound:
            allowed = [p for p in type(a).model_fields
                       if p not in _RESET_BOUND.get(name, ()) and (live is None or p in live)]
            raise _fail(f"{source}: governance.{name}.{bound[0]}: is fixed when the lever "
                        "starts (it sizes or builds the lever's state), so it cannot change "
                        f"mid-run; allowed: {', '.join(allowed)}")
        ch.lever_params[name] = b
    return ch


def _jsonable(x: Any) -> Any:
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json")
    return json.loads(json.dumps(x, default=str))


def plan_fork(run_dir: str | Path, at_round: int, sets: Sequence[str]) -> ForkPlan:
    """Read and check a run folder and the changes; nothing is written.

    Raises:
        baselines.cli._Failure: anything that makes the fork impossible (named).
    """
    from baselines.scenario import ConfigError, build, parse_scenario
    from envs.core.events import LogError, replay

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _fail(f"{run_dir}: no such run folder")
    config_path = run_dir / "config.yaml"
    events = run_dir / "events.jsonl"
    data, record = _read_config(config_path)
    if not events.is_file():
        raise _fail(f"{events}: no such file (the run logged nothing)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a torn last line
            rep = replay(events, episode=0)
    except LogError as e:
        raise _fail(f"cannot fork: {e}") from None
    identity = rep.run_start.identity
    earlier: list[dict] = []
    if record is not None:  # a fork: the root scenario is the one its log's identity names
        if not isinstance(record, dict) or not identity:
            raise _fail(f"{config_path}: fork: the fork record needs the log's identity")
        root_data = identity["scenario"]
        earlier = list(record.get("earlier", [])) + [
            {"at_round": record.get("at_round"), "set": list(record.get("set", []))}]
    else:
        root_data = data
    try:
        root = parse_scenario(root_data, str(config_path))
    except ConfigError as e:
        raise _fail(str(e)) from None
    if root.simulation.seed is None:
        raise _fail(f"{config_path}: simulation.seed: the run's seed is not recorded")
    seed = root.simulation.seed
    if identity and record is None:
        from baselines.runfolder import identity_differences, run_identity

        diffs = identity_differences(identity, run_identity(root.model_dump(mode="json"), seed,
                                                             str(identity.get("log_format"))))
        diffs = [d for d in diffs if not d.startswith("distsafe:")]
        if diffs:
            raise _fail(f"{config_path}: does not describe the run its log records; "
                        f"{'; '.join(diffs[:3])}")
    fmt = identity.get("log_format", "arrow") if identity else _guess_format(rep)
    # the range: rounds 0 .. the last step the log holds complete
    if rep.run_end is not None:
        last = rep.run_end.step
    elif rep.epoch_ends:
        last = rep.epoch_ends[-1].step
    else:
        raise _fail(f"{events}: the run has no complete epoch to fork from")
    if isinstance(at_round, bool) or not isinstance(at_round, int) or not \
            0 <= at_round <= last:
        raise _fail(f"--at-round: {at_round} lies outside the run; allowed: 0 .. {last} "
                    f"(the run played rounds 0 .. {last})")
    env, _ = build(root, seed=seed)  # no log: a probe for the live fields and levers
    try:
        live = _live_fields(env)
        changes: list[_Change] = []
        current = root
        for ch in earlier:
            r = ch.get("at_round")
            if not isinstance(r, int) or r > at_round:
                continue
            nxt = _parse(_apply_sets(current.model_dump(mode="json"), ch["set"], live,
                                     root.env), f"{config_path}: fork")
            changes.append(_change(current, nxt, r, ch["set"], env, f"{config_path}: fork"))
            current = nxt
        kept_earlier = [{"at_round": c.at_round, "set": c.sets} for c in changes]
        Failure = _cli()._Failure
        parsed_together = False
        try:  # all together (settings may depend on each other: detector and its llm)
            new = _parse(_apply_sets(current.model_dump(mode="json"), sets, live, root.env),
                         "--set")
            parsed_together = True
            if sets:
                changes.append(_change(current, new, at_round, list(sets), env, "--set"))
        except Failure as together:
            problems = []
            for text in sets:  # then each alone: every problem, named by its --set
                try:
                    alone = _parse(_apply_sets(current.model_dump(mode="json"), [text],
                                               live, root.env), f"--set {text}")
                except Failure as e:
                    if not parsed_together:  # a value that is wrong on its own
                        problems.append(str(e))
                    continue
                try:
                    _change(current, alone, at_round, [text], env, f"--set {text}")
                except Failure as e:
                    problems.append(str(e))
            raise _fail("\n".join(problems) if problems else str(together)) from None
    finally:
        env.close()
    return ForkPlan(run_dir, at_round, list(sets), root, seed, new, changes, kept_earlier,
                    identity, fmt, events, last)


def _parse(dump: dict, source: str) -> Any:
    from baselines.scenario import ConfigError, parse_scenario

    try:
        return parse_scenario(dump, source)
    except ConfigError as e:  # an env field is named as it was set: env.FIELD
        lines = [line.replace(": env_params.", ": env.") for line in e.lines()]
        if source.startswith("--set env.payoff"):
            lines = [line.replace(": payoff.", ": env.payoff.", 1) for line in lines]
        raise _fail("\n".join(lines)) from None


def _guess_format(rep: Any) -> str:
    from envs.core.events import InteractionChunk

    for ev in rep.events:
        if isinstance(ev, InteractionChunk):
            return "parquet" if ev.file.endswith(".parquet") else "arrow"
    return "jsonl"


# --------------------------------------------------------------------------- playing
class _Switch:
    """A policy of the run that a fork may replace at a round: it acts through the
    original policy until then (so the replay is the original's), then through the new."""

    def __init__(self, policy: Any, fork: _Forker) -> None:
        self.current = policy
        self.fork = fork
        self.io_bound = bool(getattr(policy, "io_bound", False))

    @property
    def name(self) -> str:
        return getattr(self.current, "name", type(self.current).__name__)

    def batched(self) -> bool:
        return self.fork.batched

    def reset(self, seed: int | None = None) -> None:
        self.current.reset(seed=seed)

    def act_arrays(self, obs: Any) -> Any:
        self.fork.before_act()
        return self.current.act_arrays(obs)

    def act_batch(self, observations: Any, infos: Any = None) -> Any:
        self.fork.before_act()
        return self.current.act_batch(observations, infos)

    def pop_turns(self) -> list[dict]:
        return self.current.pop_turns() if hasattr(self.current, "pop_turns") else []

    def pop_messages(self) -> dict:
        return self.current.pop_messages() if hasattr(self.current, "pop_messages") else {}

    def usage(self) -> Any:
        return self.current.usage() if hasattr(self.current, "usage") else None

    def __getattr__(self, name: str) -> Any:  # anything else the runner may ask
        if name == "current":
            raise AttributeError(name)
        return getattr(self.current, name)


class _Forker:
    """Applies the plan's changes at their rounds and checks the replay at the fork round."""

    def __init__(self, plan: ForkPlan, env: Any, policies: dict[str, Any], out: Path,
                 log: Any, dry_run: bool) -> None:
        self.plan, self.env, self.base = plan, env, env.unwrapped
        self.out, self.log, self.dry_run = out, log, dry_run
        self.pending = sorted({c.at_round for c in plan.changes})
        self.checked = False
        # one switch per scenario entry (the entry's agents share one policy)
        self.entries: list[tuple[int, list[str]]] = []
        first = 0
        for index, spec in enumerate(plan.root.agents):
            self.entries.append((index, [f"agent_{i}" for i in range(first,
                                                                      first + spec.count)]))
            first += spec.count
        self.switches: dict[int, _Switch] = {}
        wrapped: dict[int, _Switch] = {}
        self.policies: dict[str, Any] = {}
        for index, names in self.entries:
            pol = policies[names[0]]
            sw = wrapped.get(id(pol))
            if sw is None:
                sw = wrapped[id(pol)] = _Switch(pol, self)
            self.switches[index] = sw
            for a in names:
                self.policies[a] = sw
        news = [spec for c in plan.changes for spec in c.agents.values()]
        self.batched = all(type(p).batched() for p in {id(p): p for p in
                                                        policies.values()}.values()) and \
            all(spec.policy_class().batched() for spec in news)

    def before_act(self) -> None:
        t = self.base.t
        while self.pending and self.pending[0] <= t:
            self._at(self.pending.pop(0))
        if not self.checked and t >= self.plan.at_round:
            self.checked = True
            self.check()

    def on_step(self, done: int, total: int) -> None:
        # a round where no policy acted (every agent gone): the changes still come in
        if not self.checked and done > self.plan.at_round:
            self.before_act()

    def _at(self, round_: int) -> None:
        if round_ == self.plan.at_round and not self.checked:
            self.checked = True
            self.check()  # the replay must equal the original before anything changes
        for ch in self.plan.changes:
            if ch.at_round == round_:
                self._apply(ch)

    def _apply(self, ch: _Change) -> None:
        from wrappers.stack import LEVERS, levers

        seed = self.plan.seed
        for k, spec in ch.agents.items():
            pol_seed = int(np.random.SeedSequence([seed, k, ch.at_round]).generate_state(
                1, np.uint32)[0])
            policy = spec.policy_class()(seed=pol_seed, **spec.params)
            if hasattr(policy, "bind_run"):
                policy.bind_run(self.out, dry_run=self.dry_run)
            self.switches[k].current = policy
        if ch.env:
            self.base.config = self.base.config.model_copy(update=ch.env)
        present = {w.lever: w for w in levers(self.env)}
        present.update(getattr(self, "added", {}))
        for name, params in ch.lever_params.items():
            present[name].params = params
        if ch.lever_new:
            self.added = getattr(self, "added", {})
            for name, params in ch.lever_new.items():
                wrapper = LEVERS[name](self.env, **params.model_dump())
                self.added[name] = wrapper
                # its reset hook runs now, with its own generator (from the seed and R)
                state = np.random.SeedSequence([seed, 0x60F, ch.at_round,
                                                list(LEVERS).index(name)])
                for hook in [h for h in self.base._reset_hooks
                             if getattr(h, "__self__", None) is wrapper]:
                    hook(np.random.default_rng(state))

    def check(self) -> None:
        """The replay so far equals the original log (lines, and buffered interactions)."""
        log = self.log
        log.sync()
        new_lines = self.log.path.read_bytes().splitlines(keepends=True)
        orig_lines = _read_lines(self.plan.original_log, len(new_lines) + 1)
        R = self.plan.at_round
        for k, line in enumerate(new_lines):
            if k >= len(orig_lines) or orig_lines[k] != line:
                raise _Mismatch(self._epoch_of(line, k), k + 1)
            if '"interaction_chunk"' in line.decode("utf-8", "replace"):
                self._check_chunk(json.loads(line))
        if len(orig_lines) > len(new_lines):
            extra = orig_lines[len(new_lines)]
            obj = _safe_json(extra)
            step = obj.get("step", obj.get("last_step")) if obj.get("type") != \
                "interaction_chunk" else None
            if isinstance(step, int) and step < R and obj.get("type") != "run_end":
                raise _Mismatch(obj.get("epoch"), len(new_lines) + 1)
        if getattr(log, "_buffer", None):
            self._check_buffer()

    def _epoch_of(self, line: bytes, k: int) -> Any:
        obj = _safe_json(line)
        return obj.get("epoch", 0 if k == 0 else None)

    def _check_chunk(self, obj: dict) -> None:
        from envs.core.events import _read_chunk, _table_columns

        a = _table_columns(_read_chunk(self.out / obj["file"]))
        b = _table_columns(_read_chunk(self.plan.original_log.parent / obj["file"]))
        if not _same_columns(a, b):
            raise _Mismatch(obj.get("epoch"), None, obj["file"])

    def _check_buffer(self) -> None:
        from envs.core.events import replay
        from envs.core.records import InteractionBatch

        buffered = InteractionBatch.concat(self.log._buffer)
        epoch = int(buffered.epoch[0]) if len(buffered) else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rep = replay(self.plan.original_log, episode=0)
        orig = rep.by_epoch().get(epoch) if epoch is not None else None
        if orig is None:
            raise _Mismatch(epoch, None)
        sel = np.flatnonzero(orig.step < self.plan.at_round)
        a = {k: getattr(buffered, k) for k in _batch_fields()}
        o = orig.select(sel)
        b = {k: getattr(o, k) for k in _batch_fields()}
        if not _same_columns(a, b):
            raise _Mismatch(epoch, None)


def _batch_fields() -> list[str]:
    from envs.core.records import BATCH_DTYPES

    return list(BATCH_DTYPES)


def _same_columns(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if set(a) != set(b):
        return False
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.shape != y.shape:
            return False
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            if not np.array_equal(x, y, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def _safe_json(line: bytes) -> dict:
    try:
        obj = json.loads(line)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _read_lines(path: Path, n: int) -> list[bytes]:
    out = []
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            out.append(line)
            if len(out) >= n:
                break
    return out


class _Mismatch(Exception):
    def __init__(self, epoch: Any, line: int | None, chunk: str | None = None) -> None:
        self.epoch, self.line, self.chunk = epoch, line, chunk
        super().__init__(f"epoch {epoch}")


def _remove_stale_temps(out: Path) -> None:
    """Remove the hidden folders earlier forks into ``out`` left beside it when they were
    killed (SIGKILL leaves no chance to clean up). Called with ``out``'s lock held, so no
    live fork into ``out`` owns one; the name must be exactly what ``mkdtemp`` made."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.fork-[a-z0-9_]{{8}}")
    for p in out.parent.iterdir():
        if p.is_dir() and not p.is_symlink() and pattern.fullmatch(p.name):
            shutil.rmtree(p, ignore_errors=True)


def _default_out(run_dir: Path, at_round: int) -> Path:
    return run_dir.parent / f"{run_dir.name}-fork{at_round}"


def fork(plan: ForkPlan, out: Path, *, overwrite: bool = False, quiet: bool = True,
         dry_run: bool = False) -> list[dict]:
    """Play the fork into ``out`` (written beside, moved in at the end); its metric rows."""
    from baselines.runfolder import RunFolder, RunFolderError
    from baselines.runner import PolicyError, metrics_csv_text, rollout
    from baselines.scenario import build
    from envs.core.events import EventLog

    out = Path(out)
    if out.resolve() == plan.run_dir.resolve():
        raise _fail(f"--out {out}: is the run being forked; choose another folder")
    folder = RunFolder(out)
    existed = out.exists()
    try:
        if overwrite and out.is_dir():  # emptied only once the fork is done
            folder.check_is_run_folder()
            folder.lock()
        else:
            folder.create()
    except RunFolderError as e:
        raise _fail(str(e)) from None
    _remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.fork-", dir=out.parent))
    try:
        cache = plan.run_dir / "llm_cache"
        if cache.is_dir():
            shutil.copytree(cache, tmp / "llm_cache")
        env, policies = build(plan.root, seed=plan.seed)
        log = EventLog(tmp / "events.jsonl", format=plan.log_format, identity=plan.identity,
                       background=True)
        env.unwrapped.event_log = log
        forker = _Forker(plan, env, policies, tmp, log, dry_run)
        for pol in {id(p): p for p in policies.values()}.values():
            pol.bind_run(tmp, dry_run=dry_run)
        table = None if quiet else _cli().MetricsTable(sys.stdout)
        held: list[dict] = []

        def on_epoch(row: dict) -> None:  # the replay's rows are shown once it checks out
            if table is None:
                return
            held.append(row)
            if forker.checked:
                for r in held:
                    table(r)
                held.clear()
        try:
            try:
                rows = rollout(env, forker.policies, seed=plan.seed, on_epoch=on_epoch,
                               on_step=forker.on_step, use_arrays=None if forker.batched
                               else False)
                if not forker.checked:
                    forker.before_act()
            except PolicyError as e:
                if isinstance(e.__cause__, _Mismatch):
                    raise e.__cause__ from None
                raise _cli()._Stop(1, f"{' '.join(str(e).split())}; nothing was "
                                      "written") from None
            if table is not None:
                for r in held:
                    table(r)
        except _Mismatch as e:
            _cli()._close_quietly(env)
            where = f" (line {e.line})" if e.line else (f" ({e.chunk})" if e.chunk else "")
            raise _fail(f"{plan.original_log}: cannot fork: epoch {e.epoch} of the log "
                        f"differs{where} from a re-run of {plan.run_dir / 'config.yaml'} "
                        "(config or code changed?)") from None
        except BaseException:
            _cli()._close_quietly(env)
            raise
        env.close()
        record = {"from": str(plan.run_dir), "at_round": plan.at_round, "set": plan.sets,
                  "earlier": plan.earlier}
        config = plan.scenario.model_dump(mode="json")
        config["fork"] = record
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False),
                                         encoding="utf-8")
        (tmp / "metrics.csv").write_text(metrics_csv_text(rows), encoding="utf-8",
                                         newline="")
        usage = {}
        for index, sw in forker.switches.items():
            rep = sw.usage()
            if rep is not None:
                usage[f"agents[{index}] {plan.scenario.agents[index].label}"] = rep
        if usage:
            (tmp / "usage.json").write_text(json.dumps(usage, indent=2, sort_keys=True)
                                            + "\n", encoding="utf-8")
        folder.clear()
        for p in sorted(tmp.iterdir()):
            os.replace(p, out / p.name)
        return rows
    except BaseException:
        if not existed:
            folder.release()
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        folder.release()


# --------------------------------------------------------------------------- CLI
def cmd_fork(args: argparse.Namespace) -> int:
    cli = _cli()
    plan = plan_fork(args.run_dir, args.at_round, args.set or [])
    out = Path(args.out) if args.out else _default_out(plan.run_dir, plan.at_round)
    import signal

    previous = signal.signal(signal.SIGTERM, cli._sigterm)  # stop like Ctrl-C, cleaned up
    try:
        fork(plan, out, overwrite=args.overwrite, quiet=args.quiet, dry_run=args.dry_run)
    except KeyboardInterrupt:
        raise cli._Stop(130, "interrupted; nothing was written") from None
    except OSError as e:
        raise cli._Stop(1, f"{e.filename or out}: {e.strerror or e}; nothing was "
                           "written") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(out)
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``fork`` command to ``distsafe``'s subparsers; returns its parser."""
    cli = _cli()
    p = subparsers.add_parser(
        "fork", help="restore a run at round R (by re-running it, checked against its log), "
                     "change settings and play on into a new run folder",
        description="Re-run RUN_DIR's first R rounds (checked against its event log), apply "
                    "the --set changes from round R on, and play on into a new folder.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    p.add_argument("--at-round", type=cli._seed, required=True, metavar="R",
                   help="the round (step) from which the changes apply (0 .. the run's last)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="agents[k].type=NAME, agents[k].params.X=V, env.FIELD=V (a live "
                        "field), governance.LEVER.PARAM=V; repeatable")
    p.add_argument("--out", metavar="DIR",
                   help="the new run folder (default: RUN_DIR-fork<R>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the new folder whole if it already holds a run")
    p.add_argument("--quiet", action="store_true", help="no table; print only the folder")
    p.add_argument("--dry-run", action="store_true",
                   help="call no LLM provider (llm agents take their fallback action): "
                        "the way to fork a run that was made with --dry-run")
    p.set_defaults(func=cmd_fork)
    return p
