"""The base of every governance lever: a wrapper that only registers hooks on the seam.

A lever subclasses :class:`GovernanceWrapper`, declares its parameters as a pydantic
``Params`` model (validated like a scenario: strict types, no ``nan``/``inf``, no unknown
keys) and implements ``_install(seam)``, registering hooks on the environment's
:class:`~envs.core.governance.GovernanceSeam`. It overrides neither ``step`` nor
``step_arrays``: both doors run the environment's kernel, where the hooks fire, so a stack
of levers governs ``env.step`` and ``env.step_arrays`` alike (``step_arrays`` and every
other public attribute reach the environment through the wrapper).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pettingzoo.utils import BaseParallelWrapper
from pydantic import BaseModel, ConfigDict

from envs.core.governance import GovernanceSeam

__all__ = ["GovernanceWrapper", "LeverParams", "occurrence"]


class LeverParams(BaseModel):
    """Parameters of a lever: frozen, strict, finite, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class GovernanceWrapper(BaseParallelWrapper):
    """A governance lever over any environment that implements the governance seam."""

    lever: ClassVar[str] = "lever"
    Params: ClassVar[type[LeverParams]] = LeverParams
    #: the variants it applies to (``None``: every variant), and why not elsewhere
    variants: ClassVar[tuple[str, ...] | None] = None
    acts_on: ClassVar[str] = ""

    def __init__(self, env: Any, **params: Any) -> None:
        super().__init__(env)
        self.params = self.Params(**params)
        seam = env.unwrapped
        if not isinstance(seam, GovernanceSeam):
            raise TypeError(f"{type(self).__name__}: {type(seam).__name__} does not implement "
                            "the governance seam (envs.core.governance.GovernanceSeam)")
        self.seam = seam
        problem = self.refuses(getattr(seam, "env_id", ""))
        if problem:
            raise ValueError(f"{type(self).__name__}: {problem}")
        self._install(seam)

    @classmethod
    def refuses(cls, env_id: str) -> str | None:
        """Why the lever does not apply to the environment ``env_id`` (``None``: it does)."""
        variant = env_id.rsplit("-v", 1)[0]
        if cls.variants is None or not variant or variant in cls.variants:
            return None
        return (f"{cls.lever} acts on {cls.acts_on}, which {env_id} does not have; it "
                f"applies to {', '.join(cls.variants)}")

    def _install(self, seam: Any) -> None:
        raise NotImplementedError

    def lever_config(self) -> dict[str, Any]:
        """The lever's name and parameters (what a YAML ``governance:`` block holds)."""
        return {self.lever: self.params.model_dump(mode="json")}

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})<{self.env}>"


def occurrence(keys: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows have the same key (0 for a key's first row).

    Example:
        >>> occurrence(np.array([4, 2, 4, 4, 2])).tolist()
        [0, 0, 1, 2, 1]
    """
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")  # rows of one key stay in row order
    sorted_keys = keys[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    idx = np.arange(len(keys))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = idx - np.maximum.accumulate(np.where(first, idx, 0))
    return rank
