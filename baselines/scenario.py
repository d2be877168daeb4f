"""Scenarios: YAML files that say who plays, on which network, for how long.

A scenario is validated data (a frozen pydantic model, unknown keys are errors). It names an
environment id, a population of scripted agents, the network and the payoff parameters, and
the length of the run; :func:`build` turns it into an environment and one policy per agent.

.. code-block:: yaml

    name: baseline
    agents:
      - {type: honest, count: 3}
      - {type: opportunistic, count: 1}
      - {type: deceptive, count: 1}
    network: {topology: complete}
    payoff: {s_plus: 2.0, s_minus: 1.0, h: 2.0, theta: 0.5, rho_a: 0.0, rho_b: 0.0, w_rep: 1.0}
    simulation: {n_epochs: 10, steps_per_epoch: 10, seed: 42}

Agents are numbered in the order they are listed (``agent_0`` .. ``agent_{n-1}``); each agent's
type becomes its group label (per-group payoffs in the metrics), and adversarial agents share
team 1 (they are allies), everyone else has no team (-1).

Errors are :class:`ConfigError`: one line, ``<file>: <field.path>: <what is wrong>``.

Example:
    >>> s = Scenario.model_validate({
    ...     "name": "tiny", "agents": [{"type": "honest", "count": 2}],
    ...     "simulation": {"n_epochs": 1, "steps_per_epoch": 2}})
    >>> s.n_agents, s.agent_types()
    (2, ['honest', 'honest'])
    >>> try:
    ...     parse_scenario({"name": "x", "agents": [{"type": "honst", "count": 2}],
    ...                     "simulation": {"n_epochs": 1, "steps_per_epoch": 1}}, "x.yaml")
    ... except ConfigError as e:
    ...     print(e)
    x.yaml: agents[0].type: unknown agent type 'honst'; allowed: adversarial, deceptive, \
honest, opportunistic
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

import envs
from baselines.scripted import POLICIES, make_policy
from envs.core.network import NetworkConfig
from envs.core.payoff import PayoffConfig

__all__ = ["AgentSpec", "ConfigError", "Scenario", "SimulationSpec", "TEAMS", "build",
           "load_scenario", "parse_scenario"]

TEAMS: dict[str, int] = {"adversarial": 1}
"""Team id per agent type; types not listed play alone (team -1)."""

# SandboxConfig fields that a scenario sets itself, and where in the scenario they live.
_SET_BY_SCENARIO = {
    "n_agents": "agents", "n_epochs": "simulation", "steps_per_epoch": "simulation",
    "network": "network", "payoff": "payoff", "teams": "agents", "groups": "agents",
}
_NESTED = "nested_config"  # error type carrying a sub-path into a nested model


class ConfigError(ValueError):
    """A scenario that cannot be loaded: one line, ``<source>: <path>: <problem>``."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source, self.path, self.problem = str(source), path, problem
        parts = [self.source, path, problem] if path else [self.source, problem]
        super().__init__(": ".join(parts))

    @classmethod
    def from_validation_error(cls, err: ValidationError, source: str,
                              root: type[BaseModel] | None = None) -> ConfigError:
        """The first error of ``err`` (``(+N more)`` when there are more), as one line."""
        errors = err.errors()
        path, problem = describe_error(errors[0], root)
        if len(errors) > 1:
            problem += f" (+{len(errors) - 1} more)"
        return cls(source, path, problem)


# --------------------------------------------------------------------------- error text
def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unwrap(tp: Any) -> Any:
    """The model class inside ``X | None``, ``list[X]``, ``tuple[X, ...]`` (else ``tp``)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(tp):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return tp


def _model_at(root: type[BaseModel] | None, loc: Sequence[Any]) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) \
                or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _scalar(x: Any) -> bool:
    return x is None or isinstance(x, (str, int, float, bool))


def describe_error(error: Mapping[str, Any],
                   root: type[BaseModel] | None = None) -> tuple[str, str]:
    """One pydantic error dict -> ``(dotted.path[i], problem)``; ``root`` lists allowed keys."""
    loc = list(error["loc"])
    kind, msg = error["type"], error["msg"]
    if kind == _NESTED:
        ctx = error["ctx"]
        path = _dotted(loc)
        return (f"{path}.{ctx['sub']}" if path and ctx["sub"] else path or ctx["sub"],
                ctx["msg"])
    if kind == "missing":
        return _dotted(loc), "field required"
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        allowed = f"; allowed: {', '.join(sorted(model.model_fields))}" if model else ""
        return _dotted(loc), f"unknown key{allowed}"
    if kind == "value_error":
        return _dotted(loc), msg.removeprefix("Value error, ")
    if kind == "assertion_error":
        return _dotted(loc), msg.removeprefix("Assertion failed, ")
    if "input" in error and _scalar(error["input"]) and repr(error["input"]) not in msg:
        msg += f" (got {error['input']!r})"
    return _dotted(loc), msg


def _nested(sub: str, msg: str) -> PydanticCustomError:
    return PydanticCustomError(_NESTED, "{sub}: {msg}", {"sub": sub, "msg": msg})


def _first(err: ValidationError, root: type[BaseModel] | None) -> tuple[str, str]:
    errors = err.errors()
    path, msg = describe_error(errors[0], root)
    if len(errors) > 1:
        msg += f" (+{len(errors) - 1} more)"
    return path, msg


def _config_class(env_id: str) -> type[BaseModel] | None:
    """The pydantic config of a registered env: ``<module>.<Name>Config`` by convention."""
    spec = envs.registry.get(env_id)
    if spec is None:
        return None
    module = importlib.import_module(spec.entry_point.partition(":")[0])
    name = env_id.split("-v")[0].title().replace("_", "").replace("-", "") + "Config"
    cls = getattr(module, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


# --------------------------------------------------------------------------- schema
class AgentSpec(BaseModel):
    """``count`` agents of one scripted ``type``, all with the same ``params``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(description="scripted policy: a key of baselines.scripted.POLICIES")
    count: int = Field(ge=1, description="how many agents of this type")
    params: dict[str, Any] = Field(
        default_factory=dict, validate_default=True,
        description="the policy's parameters (checked against POLICIES[type].Params); "
        "defaults are filled in",
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in POLICIES:
            raise PydanticCustomError(
                "unknown_agent_type", "{msg}",
                {"msg": f"unknown agent type {v!r}; allowed: {', '.join(sorted(POLICIES))}"})
        return v

    @field_validator("params")
    @classmethod
    def _valid_params(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("type")
        if kind is None:  # the type itself was invalid; that error is reported
            return v
        params_model = POLICIES[kind].Params
        try:
            return params_model.model_validate(v).model_dump(mode="json")
        except ValidationError as e:
            raise _nested(*_first(e, params_model)) from None


class SimulationSpec(BaseModel):
    """How long a run lasts and how it is seeded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_epochs: int = Field(ge=1, description="epochs per run")
    steps_per_epoch: int = Field(ge=1, description="steps per epoch")
    seed: int | None = Field(
        None, ge=0,
        description="run seed (env reset and every policy's generator); None: fresh entropy",
    )


class Scenario(BaseModel):
    """A runnable scenario: environment, population, network, payoffs, length.

    ``governance`` is reserved for the governance levers of later issues: it is accepted and
    stored (and written to a run's ``config.yaml``) but **not applied yet**; the command line
    warns when it is non-empty.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="short id, used in run folder names (letters, digits, _.-)")
    description: str = Field("", description="what the scenario studies, for humans")
    env: str = Field("sandbox-v0", description="registered environment id (envs.registry)")
    agents: list[AgentSpec] = Field(
        min_length=1, description="the population, in agent order (agent_0 first)")
    network: NetworkConfig = Field(default_factory=NetworkConfig,
                                   description="topology and edge dynamics")
    payoff: PayoffConfig = Field(default_factory=PayoffConfig,
                                 description="soft payoff parameters")
    simulation: SimulationSpec = Field(description="run length and seed")
    env_params: dict[str, Any] = Field(
        default_factory=dict,
        description="any other field of the environment's config (e.g. max_neighbors), "
        "passed through to envs.make",
    )
    governance: dict[str, Any] | None = Field(
        None, description="reserved for governance levers; stored, not applied yet")

    @field_validator("env")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in envs.registry:
            raise PydanticCustomError(
                "unknown_env", "{msg}",
                {"msg": f"unknown environment id {v!r}; allowed: "
                        f"{', '.join(sorted(envs.registry))}"})
        return v

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.n_agents < 2:
            raise _nested("agents", f"needs at least 2 agents in total, got {self.n_agents}")
        for key in self.env_params:
            if key in _SET_BY_SCENARIO:
                raise _nested(f"env_params.{key}",
                              f"set by the scenario's '{_SET_BY_SCENARIO[key]}' block; "
                              "remove it here")
        config_cls = _config_class(self.env)
        if config_cls is None:
            return self
        unknown = sorted(set(self.env_params) - set(config_cls.model_fields))
        if unknown:
            allowed = sorted(set(config_cls.model_fields) - set(_SET_BY_SCENARIO))
            raise _nested(f"env_params.{unknown[0]}",
                          f"unknown key; allowed: {', '.join(allowed)}")
        try:
            config_cls.model_validate(self.env_config())
        except ValidationError as e:
            path, msg = _first(e, config_cls)
            head = path.split(".")[0].split("[")[0]
            if head in self.env_params:
                path = f"env_params.{path}"
            elif head in _SET_BY_SCENARIO:
                path = path if head in ("network", "payoff") else _SET_BY_SCENARIO[head]
            else:
                path = f"env_params{'.' + path if path else ''}"
            raise _nested(path, msg) from None
        return self

    @property
    def n_agents(self) -> int:
        return sum(a.count for a in self.agents)

    def agent_types(self) -> list[str]:
        """The type of each agent, in agent order."""
        return [a.type for a in self.agents for _ in range(a.count)]

    def env_config(self) -> dict[str, Any]:
        """The keyword arguments :func:`envs.make` receives (without ``event_log``)."""
        kinds = self.agent_types()
        return {
            "n_agents": len(kinds),
            "n_epochs": self.simulation.n_epochs,
            "steps_per_epoch": self.simulation.steps_per_epoch,
            "network": self.network,
            "payoff": self.payoff,
            "teams": tuple(TEAMS.get(k, -1) for k in kinds),
            "groups": tuple(kinds),
            **self.env_params,
        }


# --------------------------------------------------------------------------- loading
class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate loaded YAML (or any mapping) into a :class:`Scenario`, or raise ConfigError."""
    if not isinstance(data, Mapping):
        got = "an empty file" if data is None else type(data).__name__
        raise ConfigError(source, "top level", f"expected a mapping (key: value), got {got}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ConfigError.from_validation_error(e, source, Scenario) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; every problem is a one-line ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(source, "", "is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(source, "", f"cannot read: {e}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "top level"
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise ConfigError(source, where, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(source, "", f"YAML syntax error: {' '.join(str(e).split())}") \
            from None
    return parse_scenario(data, source)


# --------------------------------------------------------------------------- building
def _derive_seed(seed: int | None, index: int) -> int | None:
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint32)[0])


def build(scenario: Scenario, *, seed: int | None = None, event_log: Any = None,
          **env_overrides: Any) -> tuple[Any, dict[str, Any]]:
    """Build the environment and one policy per agent: ``(env, {agent_name: policy})``.

    ``seed`` (default: ``scenario.simulation.seed``) seeds the policies: the entry ``i`` of
    ``scenario.agents`` gets one policy instance, seeded from ``SeedSequence([seed, i])`` and
    shared by that entry's agents (scripted policies are batched and stateless). The env is
    seeded by its ``reset(seed=...)``, which the runner calls with the same seed.
    ``event_log`` (a path or an ``EventLog``) records the run; ``env_overrides`` replace
    config fields (say ``n_epochs=1`` for a smoke test) but not the population.

    Example:
        >>> s = Scenario.model_validate({
        ...     "name": "tiny", "agents": [{"type": "honest", "count": 2},
        ...                                {"type": "adversarial", "count": 1}],
        ...     "simulation": {"n_epochs": 1, "steps_per_epoch": 2, "seed": 0}})
        >>> env, policies = build(s)
        >>> sorted(policies), env.config.teams
        (['agent_0', 'agent_1', 'agent_2'], (-1, -1, 1))
    """
    fixed = sorted({"n_agents", "teams", "groups"} & env_overrides.keys())
    if fixed:
        raise ValueError(f"build: {', '.join(fixed)} follow from the scenario's agents and "
                         "cannot be overridden")
    if seed is None:
        seed = scenario.simulation.seed
    if seed is not None and seed < 0:
        raise ValueError(f"build: seed must be >= 0, got {seed}")
    env = envs.make(scenario.env, **{**scenario.env_config(), **env_overrides},
                    event_log=event_log)
    policies: dict[str, Any] = {}
    i = 0
    for index, spec in enumerate(scenario.agents):
        policy = make_policy(spec.type, _derive_seed(seed, index), **spec.params)
        for _ in range(spec.count):
            policies[f"agent_{i}"] = policy
            i += 1
    return env, policies
