"""distsafe environments: PettingZoo ``ParallelEnv`` variants on one soft-label core.

Create an environment by id, Gymnasium style::

    >>> import envs
    >>> env = envs.make("sandbox-v0", n_agents=4, n_epochs=1, steps_per_epoch=2)
    >>> obs, infos = env.reset(seed=0)
    >>> sorted(obs["agent_0"])
    ['action_mask', 'inbox', 'neighbor_mask', 'neighbors', 'self']

or with the module factory, PettingZoo style: ``envs.sandbox.parallel_env(**config)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EnvSpec:
    """A registered environment: its id, its factory's import path and its defaults."""

    id: str
    entry_point: str
    kwargs: dict[str, Any]

    def load(self) -> Callable[..., Any]:
        import importlib

        module, _, attr = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), attr)


registry: dict[str, EnvSpec] = {}


def register(id: str, entry_point: str, **kwargs: Any) -> None:
    """Register an environment id (``name-vN``) with a ``module:factory`` entry point."""
    if "-v" not in id:
        raise ValueError(f"environment ids carry a version, like 'sandbox-v0'; got {id!r}")
    registry[id] = EnvSpec(id=id, entry_point=entry_point, kwargs=dict(kwargs))


def make(id: str, **config: Any) -> Any:
    """Build a registered environment; ``config`` overrides the registered defaults."""
    try:
        spec = registry[id]
    except KeyError:
        raise ValueError(f"unknown environment id {id!r}; registered: {sorted(registry)}") \
            from None
    return spec.load()(**{**spec.kwargs, **config})


def config_class(id: str) -> Any:
    """The pydantic config model of a registered environment (``None`` if it has none).

    By convention the factory's module defines ``<Name>Config`` for an id ``name-vN``
    (``sandbox-v0`` -> ``SandboxConfig``, ``dilemma-v0`` -> ``DilemmaConfig``).

    Example:
        >>> config_class("dilemma-v0").__name__
        'DilemmaConfig'
    """
    import importlib

    from pydantic import BaseModel

    spec = registry.get(id)
    if spec is None:
        return None
    module = importlib.import_module(spec.entry_point.partition(":")[0])
    name = id.split("-v")[0].title().replace("_", "").replace("-", "") + "Config"
    cls = getattr(module, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def payoff_model(id: str) -> Any:
    """The pydantic model of a registered environment's ``payoff`` block (``None`` if its
    config has none): ``PayoffConfig`` for the sandbox, ``DilemmaPayoff`` for the dilemma."""
    from pydantic import BaseModel

    cls = config_class(id)
    field = cls.model_fields.get("payoff") if cls is not None else None
    model = field.annotation if field is not None else None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def metric_columns(id: str) -> Any:
    """A registered environment's extra per-epoch metric columns: its module's
    ``metric_columns(state) -> dict`` over the ``epoch_end`` state it logs (``None`` when it
    has none). The runner and ``replay`` both call it, so the columns agree."""
    import importlib

    spec = registry.get(id)
    if spec is None:
        return None
    module = importlib.import_module(spec.entry_point.partition(":")[0])
    fn = getattr(module, "metric_columns", None)
    return fn if callable(fn) else None


def variant(id: str) -> str:
    """The variant of an environment id: its name without the version (``dilemma-v0`` ->
    ``dilemma``)."""
    return id.rsplit("-v", 1)[0]


register("sandbox-v0", "envs.sandbox:parallel_env")
register("dilemma-v0", "envs.dilemma:parallel_env")
register("commons-v0", "envs.commons:parallel_env")

__all__ = ["EnvSpec", "config_class", "make", "metric_columns", "payoff_model", "register",
           "registry", "variant"]
