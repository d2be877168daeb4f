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

An agent ``type`` is a scripted policy's name, an installed plug-in's name (entry point group
``distsafe.policies``) or the import path of your own :class:`~baselines.policy.Policy`
subclass, ``package.module:ClassName`` (the module is imported from ``sys.path`` or the current
folder); its ``params`` are validated against the class's ``Params`` either way, and its group
label is the class's ``name`` (else the class name).

Errors are :class:`ConfigError`: every problem found, one line each,
``<file>: <field.path>: <what is wrong>``. Loading checks the schema (types are strict: no
``"3"`` for an int, no ``nan``/``inf``, ...); :func:`preflight` also builds the environment,
checks its memory needs and takes two test steps, so a scenario it accepts runs.

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

import re
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
from baselines.policy import Policy
from baselines.scripted import PolicyLookupError, allowed_names, policy_label, resolve_policy
from envs.core.api import CONFIG_PROBLEMS, config_problems
from envs.core.network import NetworkConfig, NetworkMemoryError
from wrappers.stack import GovernanceConfig, governance_stack

__all__ = ["AgentSpec", "ConfigError", "EvalSpec", "Scenario", "SimulationSpec", "TEAMS",
           "TrainSpec", "build", "load_scenario", "parse_scenario", "preflight"]

TEAMS: dict[str, int] = {"adversarial": 1}
"""Team id per agent type; types not listed play alone (team -1)."""

# SandboxConfig fields that a scenario sets itself, and where in the scenario they live.
_SET_BY_SCENARIO = {
    "n_agents": "agents", "n_epochs": "simulation", "steps_per_epoch": "simulation",
    "network": "network", "payoff": "payoff", "teams": "agents", "groups": "agents",
}
_NESTED = CONFIG_PROBLEMS  # error type carrying sub-paths into a nested model
_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class ConfigError(ValueError):
    """A scenario that cannot be loaded or run: every problem found, one line each.

    ``str(error)`` is the lines joined by newlines, each ``<source>: <path>: <problem>``
    (``<source>: <problem>`` when the problem has no field path).

    Attributes:
        source: The file (or other source) the scenario came from.
        problems: ``(dotted.path, problem)`` pairs, in the order found.
        path: The first problem's path.
        problem: The first problem's text.
    """

    def __init__(self, source: str, path: str = "", problem: str = "", *,
                 problems: Sequence[tuple[str, str]] | None = None) -> None:
        self.source = str(source)
        self.problems: list[tuple[str, str]] = (
            [(str(p), str(q)) for p, q in problems] if problems else [(path, problem)])
        self.path, self.problem = self.problems[0]
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem: ``<source>: <path>: <problem>``."""
        return [": ".join([self.source, p, q] if p else [self.source, q])
                for p, q in self.problems]

    @classmethod
    def from_validation_error(cls, err: ValidationError, source: str,
                              root: type[BaseModel] | None = None) -> ConfigError:
        """Every error of ``err``, one problem each (``root``: the model, for allowed keys)."""
        problems = [item for error in err.errors() for item in describe_errors(error, root)]
        return cls(source, problems=problems or [("", str(err))])


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


def _join(path: str, sub: str) -> str:
    if not path or not sub:
        return path or sub
    return f"{path}{sub}" if sub.startswith("[") else f"{path}.{sub}"


def describe_errors(error: Mapping[str, Any],
                    root: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    """One pydantic error dict -> its ``(dotted.path[i], problem)`` pairs (several when it
    carries the problems of a nested model); ``root`` lists allowed keys."""
    if error["type"] == _NESTED:
        path = _dotted(error["loc"])
        return [(_join(path, sub), msg) for sub, msg in error["ctx"]["problems"]]
    return [describe_error(error, root)]


def describe_error(error: Mapping[str, Any],
                   root: type[BaseModel] | None = None) -> tuple[str, str]:
    """One pydantic error dict -> ``(dotted.path[i], problem)``; ``root`` lists allowed keys.

    An error carrying several problems (see :func:`describe_errors`) gives its first.
    """
    loc = list(error["loc"])
    kind, msg = error["type"], error["msg"]
    if kind == _NESTED:
        return describe_errors(error, root)[0]
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


def _all(err: ValidationError, root: type[BaseModel] | None) -> list[tuple[str, str]]:
    return [item for error in err.errors() for item in describe_errors(error, root)]


def _config_class(env_id: str) -> type[BaseModel] | None:
    """The pydantic config of a registered env (see :func:`envs.config_class`)."""
    return envs.config_class(env_id)


# --------------------------------------------------------------------------- schema
class AgentSpec(BaseModel):
    """``count`` agents of one policy ``type``, all with the same ``params``."""

    model_config = _STRICT

    type: str = Field(description="policy: a scripted policy's name (baselines.scripted."
                      "POLICIES), an installed plug-in's name, or an import path "
                      "package.module:ClassName of a baselines.policy.Policy subclass")
    count: int = Field(ge=1, description="how many agents of this type")
    params: dict[str, Any] = Field(
        default_factory=dict, validate_default=True,
        description="the policy's parameters (checked against the policy class's Params); "
        "defaults are filled in",
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str, info: ValidationInfo) -> str:
        try:  # the scenario's variant (parse_scenario passes it) narrows the names listed
            resolve_policy(v, (info.context or {}).get("variant"))
        except PolicyLookupError as e:
            raise PydanticCustomError("unknown_agent_type", "{msg}", {"msg": str(e)}) from None
        return v

    @field_validator("params")
    @classmethod
    def _valid_params(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("type")
        if kind is None:  # the type itself was invalid; that error is reported
            return v
        params_model = resolve_policy(kind).Params
        try:
            return params_model.model_validate(v).model_dump()
        except ValidationError as e:
            raise config_problems(_all(e, params_model)) from None

    @model_validator(mode="before")
    @classmethod
    def _policy_block(cls, data: Any) -> Any:
        """``type: llm`` agents take their parameters in an ``llm:`` block (model, persona or
        strategy, temperature, max_tokens, concurrency, ...) and ``type: rl`` agents in an
        ``rl:`` block or as ``model:`` / ``learn:`` beside ``type``: it is their ``params``."""
        if not isinstance(data, dict):
            return data
        if "llm" in data or "rl" in data:
            block = "llm" if "llm" in data else "rl"
            if data.get("type") != block:
                raise ValueError(f"an {block}: block belongs to type: {block} agents, not "
                                 f"type: {data.get('type')!r}")
            if data.get("params"):
                raise ValueError(f"give an {block} agent's parameters in its {block}: block "
                                 "or in params:, not both")
            out = {k: v for k, v in data.items() if k != block}
            out["params"] = data[block]
            data = out
        short = [k for k in ("model", "learn") if k in data]
        if short:
            if data.get("type") != "rl":
                raise ValueError(f"{short[0]}: belongs to type: rl agents, not type: "
                                 f"{data.get('type')!r}")
            params = dict(data.get("params") or {})
            for k in short:
                if k in params:
                    raise ValueError(f"{k} is given twice: beside type and in the rl "
                                     "parameters")
                params[k] = data[k]
            data = {k: v for k, v in data.items() if k not in short}
            data["params"] = params
        return data

    def policy_class(self) -> type[Policy]:
        """The :class:`~baselines.policy.Policy` subclass that ``type`` names."""
        return resolve_policy(self.type)

    @property
    def label(self) -> str:
        """The group label of these agents: the policy class's ``name`` (else class name);
        for ``type: llm``, ``llm_<persona, strategy or role>`` when the entry sets one, so
        that LLM agents told different things are reported apart (``payoff_llm_TFT``,
        ``payoff_llm_saboteur``)."""
        base = policy_label(self.policy_class())
        if self.type == "llm":
            told = (self.params.get("persona") or self.params.get("strategy")
                    or self.params.get("role"))
            if told:
                return f"{base}_{told}"
        return base


class SimulationSpec(BaseModel):
    """How long a run lasts and how it is seeded."""

    model_config = _STRICT

    n_epochs: int = Field(ge=1, description="epochs per run")
    steps_per_epoch: int = Field(ge=1, description="steps per epoch")
    seed: int | None = Field(
        None, ge=0,
        description="run seed (env reset and every policy's generator); None: fresh entropy",
    )


class EvalSpec(BaseModel):
    """How ``distsafe train`` evaluates the trained agent: in the learner's place, against
    the scripted players that could take it, over ``seeds`` seeds under the same governance."""

    model_config = _STRICT

    seeds: int = Field(10, ge=2, le=100_000, description="evaluation seeds (run k: the "
                       "scenario's seed + 1000 + k, never a training seed)")
    against: tuple[str, ...] = Field(
        ("deceptive", "adversarial"), min_length=1,
        description="scripted policies evaluated in the learner's place (the best of them "
        "is the bar the trained agent must clear)")
    deterministic: bool = Field(True, description="the trained agent plays its most likely "
                                "allowed action")

    @field_validator("against", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v


class TrainSpec(BaseModel):
    """A training config's ``train:`` block (``distsafe train``): which algorithm, how long,
    how many copies of the environment, the seed, the algorithm's hyperparameters."""

    model_config = _STRICT

    algorithm: typing.Literal["ppo", "maskable_ppo", "a2c", "dqn"] = Field(
        "maskable_ppo", description="SB3 algorithm (maskable_ppo: sb3-contrib's MaskablePPO)")
    total_timesteps: int = Field(ge=1, le=10**10, description="learner steps to train for "
                                 "(one per learning agent per environment step)")
    copies: int = Field(8, ge=1, le=4096, description="independent copies of the "
                        "environment stepped side by side (the VecEnv has copies x learners "
                        "slots)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="training seed (model, environment "
                      "copies, other agents)")
    net_arch: tuple[int, ...] = Field((64, 64), min_length=1, description="hidden layers of "
                                      "the policy and value networks")
    hyperparams: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the algorithm (e.g. n_steps, "
        "batch_size, learning_rate, ent_coef), checked against its constructor")
    harm_bonus: float = Field(
        0.0, ge=0.0, le=1e6, description="the learner's objective beyond its payoff: added to "
        "its reward for each accepted interaction it initiated that was harmful (hidden truth "
        "v = -1): a harm-seeking adversary (0: payoff only)")
    eval: EvalSpec = Field(default_factory=EvalSpec)

    @field_validator("net_arch", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("hyperparams")
    @classmethod
    def _finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        import math

        def bad(x: Any) -> bool:
            if isinstance(x, float):
                return not math.isfinite(x)
            if isinstance(x, dict):
                return any(bad(y) for y in x.values())
            if isinstance(x, (list, tuple)):
                return any(bad(y) for y in x)
            return False

        nonfinite = [k for k, x in v.items() if bad(x)]
        if nonfinite:
            raise ValueError(f"{nonfinite[0]}: must be finite (not nan or inf), got "
                             f"{v[nonfinite[0]]!r}")
        return v


class Scenario(BaseModel):
    """A runnable scenario: environment, population, network, payoffs, length.

    ``governance`` turns governance levers on (:class:`wrappers.stack.GovernanceConfig`);
    :func:`build` wraps the environment in them, in the stack's fixed order.
    """

    model_config = _STRICT

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="short id, used in run folder names (letters, digits, _.-)")
    description: str = Field("", description="what the scenario studies, for humans")
    env: str = Field("sandbox-v0", description="registered environment id (envs.registry)")
    agents: list[AgentSpec] = Field(
        min_length=1, description="the population, in agent order (agent_0 first)")
    network: NetworkConfig = Field(default_factory=NetworkConfig,
                                   description="topology and edge dynamics")
    payoff: dict[str, Any] | None = Field(
        None, description="the environment's payoff parameters (sandbox: s_plus, s_minus, h, "
        "theta, rho_a, rho_b, w_rep; dilemma: T, R, P, S or a preset), checked against its "
        "config; absent: its defaults")
    simulation: SimulationSpec = Field(description="run length and seed")
    env_params: dict[str, Any] = Field(
        default_factory=dict,
        description="any other field of the environment's config (e.g. max_neighbors), "
        "passed through to envs.make",
    )
    governance: GovernanceConfig | None = Field(
        None, description="governance levers and their parameters (absent: none); see "
        "wrappers/stack.py")
    train: TrainSpec | None = Field(
        None, description="a training config's training (distsafe train): the entry with "
        "learn: true learns")

    @field_validator("env")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in envs.registry:
            raise PydanticCustomError(
                "unknown_env", "{msg}",
                {"msg": f"unknown environment id {v!r}; allowed: "
                        f"{', '.join(sorted(envs.registry))}"})
        return v

    @field_validator("payoff")
    @classmethod
    def _valid_payoff(cls, v: dict[str, Any] | None,
                      info: ValidationInfo) -> dict[str, Any] | None:
        """Checked against the environment's payoff model; returned in full (defaults and
        presets filled in)."""
        env = info.data.get("env", "")
        model = envs.payoff_model(env)
        if v is None or model is None:
            if v is not None and env in envs.registry:
                raise ValueError(f"{env} has no payoff parameters")
            return v
        try:
            return model.model_validate(v).model_dump(mode="json")
        except ValidationError as e:
            raise config_problems(_all(e, model)) from None

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        problems: list[tuple[str, str]] = []
        if self.n_agents < 2:
            problems.append(("agents", f"needs at least 2 agents in total, got {self.n_agents}"))
        if self.governance is not None:
            from wrappers.stack import LEVERS

            for lever in self.governance.enabled():
                problem = LEVERS[lever].refuses(self.env)
                if problem:
                    problems.append((f"governance.{lever}", problem))
        if (self.governance is not None and self.governance.reputation_disconnect is not None
                and not self.network.dynamic):
            problems.append(("governance.reputation_disconnect",
                             "cuts edges, so it needs a dynamic network (network.dynamic: "
                             "true)"))
        variant = envs.variant(self.env)
        for index, spec in enumerate(self.agents):
            plays = spec.policy_class().variants
            if plays is not None and variant not in plays:
                problems.append((f"agents[{index}].type", (
                    f"{spec.type!r} plays {', '.join(plays)}, not {variant} (env "
                    f"{self.env}); allowed for {variant}: {allowed_names(variant)}")))
        learners = [i for i, spec in enumerate(self.agents) if spec.params.get("learn")]
        if len(learners) > 1:
            problems.append((f"agents[{learners[1]}].params.learn", (
                f"one entry learns (agents[{learners[0]}] already does); give the learning "
                "agents one entry with a count")))
        if self.train is None:
            for i in learners:
                if not self.agents[i].params.get("model"):
                    problems.append((f"agents[{i}].params.learn", (
                        "learn: true is trained by distsafe train (a config with a train: "
                        "block); to play a trained agent give model: PATH")))
        elif not learners:
            problems.append(("train", "needs an agents entry that learns: {type: rl, count: "
                                      "N, learn: true}"))
        if self.train is not None:
            for j, name in enumerate(self.train.eval.against):
                try:
                    cls = resolve_policy(name, variant)
                except PolicyLookupError as e:
                    problems.append((f"train.eval.against[{j}]", str(e)))
                    continue
                if cls.variants is not None and variant not in cls.variants:
                    problems.append((f"train.eval.against[{j}]", (
                        f"{name!r} plays {', '.join(cls.variants)}, not {variant}; allowed: "
                        f"{allowed_names(variant)}")))
        config_cls = _config_class(self.env)
        known = set(config_cls.model_fields) if config_cls is not None else None
        allowed = sorted((known or set()) - set(_SET_BY_SCENARIO))
        bad_keys = set()
        for key in self.env_params:
            if key in _SET_BY_SCENARIO:
                problems.append((f"env_params.{key}",
                                 f"set by the scenario's '{_SET_BY_SCENARIO[key]}' block; "
                                 "remove it here"))
                bad_keys.add(key)
            elif known is not None and key not in known:
                problems.append((f"env_params.{key}",
                                 f"unknown key; allowed: {', '.join(allowed)}"))
                bad_keys.add(key)
        if config_cls is not None and self.n_agents >= 2:
            # teams and groups follow from the agents list, one entry per agent: leave them
            # out here (building them for a huge population would exhaust memory at load)
            config = {k: v for k, v in self.env_config(per_agent=False).items()
                      if k not in bad_keys}
            try:
                validated = config_cls.model_validate(config)
            except ValidationError as e:
                problems += [(self._scenario_path(path), msg) for path, msg in _all(e, config_cls)]
            else:  # no payoff block: the env's defaults, in full, as the env uses them
                resolved = getattr(validated, "payoff", None)
                if self.payoff is None and isinstance(resolved, BaseModel):
                    self.__dict__["payoff"] = resolved.model_dump(mode="json")
        if problems:
            raise config_problems(problems)
        return self

    def _scenario_path(self, path: str) -> str:
        """Where a field of the environment's config is set in the scenario."""
        head = path.split(".")[0].split("[")[0]
        if head in self.env_params:
            return f"env_params.{path}"
        if head in ("network", "payoff"):
            return path
        if head in ("n_epochs", "steps_per_epoch"):
            return f"simulation.{path}"
        if head in _SET_BY_SCENARIO:
            return _SET_BY_SCENARIO[head]
        return f"env_params{'.' + path if path else ''}"

    @property
    def n_agents(self) -> int:
        return sum(a.count for a in self.agents)

    def agent_types(self) -> list[str]:
        """The type of each agent, in agent order."""
        return [a.type for a in self.agents for _ in range(a.count)]

    def agent_groups(self) -> list[str]:
        """The group label of each agent, in agent order (see :attr:`AgentSpec.label`)."""
        return [label for a in self.agents for label in [a.label] * a.count]

    def env_config(self, per_agent: bool = True) -> dict[str, Any]:
        """The keyword arguments :func:`envs.make` receives (without ``event_log``).

        Args:
            per_agent: Include ``teams`` and ``groups`` (one entry per agent).
        """
        per: dict[str, Any] = {}
        if per_agent:
            per = {"groups": tuple(self.agent_groups())}
            config_cls = _config_class(self.env)
            if config_cls is None or "teams" in config_cls.model_fields:
                per["teams"] = tuple(TEAMS.get(k, -1) for k in self.agent_types())
        payoff = {} if self.payoff is None else {"payoff": self.payoff}
        return {
            "n_agents": self.n_agents,
            "n_epochs": self.simulation.n_epochs,
            "steps_per_epoch": self.simulation.steps_per_epoch,
            "network": self.network,
            **payoff,
            **per,
            **self.env_params,
        }


# --------------------------------------------------------------------------- loading
class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping, and reads an exponent
    without a dot (``1e-3``) as the number it is (YAML 1.1 would leave it a string)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."))


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate loaded YAML (or any mapping) into a :class:`Scenario`.

    Raises:
        ConfigError: With every problem found (one line each).
    """
    if not isinstance(data, Mapping):
        got = "an empty file" if data is None else type(data).__name__
        raise ConfigError(source, "top level", f"expected a mapping (key: value), got {got}")
    if "fork" in data:  # what distsafe fork writes: its changes start at a round
        fork = data["fork"] if isinstance(data["fork"], Mapping) else {}
        raise ConfigError(source, "fork", (
            f"this is the config of a fork of {fork.get('from', '?')} at round "
            f"{fork.get('at_round', '?')}: a run from round 0 would not be that fork; "
            "re-create it with `distsafe fork RUN_DIR --at-round R --set ...`, or delete "
            "the fork: block to run these settings from the start"))
    env = data.get("env", Scenario.model_fields["env"].default)
    context = {"variant": envs.variant(env)} if isinstance(env, str) and env in envs.registry \
        else None
    try:
        return Scenario.model_validate(data, context=context)
    except ValidationError as e:
        raise ConfigError.from_validation_error(e, source, Scenario) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file.

    Raises:
        ConfigError: An unreadable file, a YAML syntax error, or every schema problem found.
    """
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
    ``scenario.agents`` (a built-in, a plug-in or an import-path policy alike) gets one
    policy instance, seeded from ``SeedSequence([seed, i])`` and
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
    env = governance_stack(env, scenario.governance)
    policies: dict[str, Any] = {}
    i = 0
    for index, spec in enumerate(scenario.agents):
        policy = spec.policy_class()(seed=_derive_seed(seed, index), **spec.params)
        for _ in range(spec.count):
            policies[f"agent_{i}"] = policy
            i += 1
    return env, policies


# --------------------------------------------------------------------------- preflight
def _env_default(config_cls: type[BaseModel] | None, config: Mapping[str, Any], name: str,
                 fallback: int) -> int:
    if name in config:
        return int(config[name])
    field = config_cls.model_fields.get(name) if config_cls is not None else None
    return int(field.default) if field is not None and isinstance(field.default, int) \
        else fallback


def preflight(scenario: Scenario, source: str) -> None:
    """Check that ``scenario`` runs: everything a run would stumble on, before it starts.

    Beyond the schema (checked when the scenario was loaded): the network's memory need is
    estimated and refused when it exceeds the memory available now (before anything is
    allocated); every policy is constructed; the environment is built, reset with seed 0
    (network generation) and stepped twice with random valid actions (a proposal made and
    resolved) with numpy's floating-point errors raised, and the rewards must be finite.

    Args:
        scenario: A loaded scenario.
        source: Where it came from, for the messages (e.g. the file name).

    Raises:
        ConfigError: With every problem found, one line each; a memory refusal has the path
            ``network.topology``.

    Example:
        >>> s = parse_scenario({"name": "t", "agents": [{"type": "honest", "count": 3}],
        ...                     "simulation": {"n_epochs": 1, "steps_per_epoch": 2}})
        >>> preflight(s, "t.yaml")   # runs: nothing to report
        >>> big = s.model_copy(update={"agents": [AgentSpec(type="honest", count=10**6)]})
        >>> try:
        ...     preflight(big, "big.yaml")
        ... except ConfigError as e:
        ...     print(e.path, "|", e.problem.split(";")[1])
        network.topology |  use topology small_world or scale_free, or fewer agents
    """
    config_cls = _config_class(scenario.env)
    config = scenario.env_config(per_agent=False)
    n = scenario.n_agents
    k = _env_default(config_cls, config, "max_neighbors", 8)
    m = _env_default(config_cls, config, "inbox_size", 4)
    try:
        scenario.network.check_memory(n, k, extra_bytes=256 * n * m)
    except NetworkMemoryError as e:
        raise ConfigError(source, "network.topology", str(e)) from None

    problems: list[tuple[str, str]] = []
    for index, spec in enumerate(scenario.agents):
        try:
            spec.policy_class()(seed=0, **spec.params)
        except PolicyLookupError as e:
            problems.append((f"agents[{index}].type", str(e)))
        except ValidationError as e:
            problems += [(_join(f"agents[{index}].params", p), q)
                         for p, q in _all(e, spec.policy_class().Params)]
        except Exception as e:  # noqa: BLE001 - a user's policy may fail in any way
            problems.append((f"agents[{index}].type",
                             f"constructing {spec.type!r} failed: {type(e).__name__}: {e}"))
    if problems:
        raise ConfigError(source, problems=problems)

    try:
        env, policies = build(scenario, seed=0)
        for policy in set(policies.values()):  # never a paid call in a check: dry
            policy.bind_run(None, dry_run=True)
    except ValidationError as e:
        raise ConfigError.from_validation_error(e, source, config_cls) from None
    except (ValueError, OverflowError, MemoryError) as e:
        raise ConfigError(source, "", f"cannot build the environment: "
                                      f"{' '.join(str(e).split())}") from None
    try:
        _test_steps(env)
        _test_policies(scenario, env, policies, source)
    except ConfigError:
        raise
    except NetworkMemoryError as e:
        raise ConfigError(source, "network.topology", str(e)) from None
    except (ValueError, OverflowError, FloatingPointError, ZeroDivisionError,
            MemoryError) as e:
        raise ConfigError(source, "", f"a test run of this scenario fails: "
                                      f"{type(e).__name__}: {' '.join(str(e).split())}") \
            from None
    finally:
        env.close()


def _test_policies(scenario: Scenario, env: Any, policies: Mapping[str, Any],
                   source: str) -> None:
    """Every entry's policy acts once on the first observation of its agents (after a
    fresh reset), through the door the runner will use; what fails names the entry."""
    from baselines.policy import ObsBatch
    from baselines.runner import _checked_actions

    base = env.unwrapped
    obs, infos = env.reset(seed=0)
    problems: list[tuple[str, str]] = []
    first = 0
    for index, spec in enumerate(scenario.agents):
        rows = np.arange(first, first + spec.count)
        first += spec.count
        names = [base.possible_agents[i] for i in rows]
        policy = policies[names[0]]
        if spec.params.get("learn") and not spec.params.get("model"):
            continue  # the entry a training config trains: nothing to play yet
        try:
            if policy.batched():
                out = policy.act_arrays(ObsBatch.from_env(base, rows))
            else:
                out = policy.act_batch([obs[a] for a in names], [infos[a] for a in names])
            _checked_actions(out, policy, names, np.asarray(base.nvec), 0)
        except Exception as e:  # noqa: BLE001 - a policy may fail in any way
            problems.append((f"agents[{index}].type",
                             f"{spec.type!r} fails on the first observation of {scenario.env}: "
                             f"{type(e).__name__}: {' '.join(str(e).split())}"))
    if problems:
        raise ConfigError(source, problems=problems)


def _test_steps(env: Any) -> None:
    """Reset with seed 0 and take two steps with random valid actions; rewards must be finite."""
    rng = np.random.default_rng(0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        env.reset(seed=0)
        for _ in range(min(2, getattr(env, "max_steps", 2))):
            if getattr(env, "episode_over", False):  # e.g. the commons collapsed at once
                break
            if hasattr(env, "sample_actions") and hasattr(env, "step_arrays"):
                rewards = env.step_arrays(env.sample_actions(rng))
            else:  # every agent takes its no-op action
                rewards = np.asarray(list(env.step({})[1].values()), dtype=np.float64)
            if not np.all(np.isfinite(rewards)):
                raise FloatingPointError("the rewards of a test step are not finite; check "
                                         "the payoff and cost magnitudes")
