"""Reinforcement-learning players: trained Stable-Baselines3 models behind the Policy interface.

:class:`RLPolicy` plays a model that ``distsafe train`` saved (or any SB3 model of a
supported algorithm) in any scenario, mixed with scripted and LLM agents::

    agents:
      - {type: honest, count: 3}
      - {type: rl, count: 1, model: runs/train_adversary_sandbox/model.zip}

It acts for all its agents in one batched forward pass over their flat observations
(:class:`wrappers.flat.FlatLayout`: the same features it was trained on) and **honours the
action masks**: it plays the most likely *allowed* value of each action dimension
(``deterministic: true``, the default) or samples among the allowed values with its own
seeded generator (``deterministic: false``), so a run is a function of its seed. With
``masked: false`` it plays the raw choice and the environment counts every masked one
(``invalid_actions``).

A model file is SB3's zip with one more entry, ``distsafe.json``: the algorithm, the
environment it was trained on and the layout of its observations and actions, checked when
the model first acts (a model trained with another ``max_neighbors`` is refused with the
difference named, not run on shuffled features).

=================  ==================================  ===================================
``algorithm``      class                               action space
=================  ==================================  ===================================
``ppo``            ``stable_baselines3.PPO``           ``MultiDiscrete(nvec)``
``maskable_ppo``   ``sb3_contrib.MaskablePPO``         ``MultiDiscrete(nvec)``, masked
``a2c``            ``stable_baselines3.A2C``           ``MultiDiscrete(nvec)``
``dqn``            ``stable_baselines3.DQN``           ``Discrete(prod(nvec))`` (joint
                                                       actions: small spaces only, e.g. a
                                                       dilemma with few neighbours)
=================  ==================================  ===================================
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from baselines.policy import ObsBatch, Policy

__all__ = ["ALGORITHMS", "JOINT_LIMIT", "META_NAME", "RLPolicy", "algorithm_class",
           "read_meta", "save_model"]

#: the algorithms by name: (module, class, masks the policy's distribution, joint actions)
ALGORITHMS: dict[str, tuple[str, str, bool, bool]] = {
    "ppo": ("stable_baselines3", "PPO", False, False),
    "maskable_ppo": ("sb3_contrib", "MaskablePPO", True, False),
    "a2c": ("stable_baselines3", "A2C", False, False),
    "dqn": ("stable_baselines3", "DQN", False, True),
}
#: the largest joint action space (``prod(nvec)``) a ``Discrete`` algorithm may use
JOINT_LIMIT = 4096
#: the entry of a model zip that records what distsafe needs to play it
META_NAME = "distsafe.json"


def algorithm_class(name: str) -> type:
    """The SB3 class of an algorithm name (imported on demand: RL is an optional extra)."""
    import importlib

    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; allowed: {', '.join(ALGORITHMS)}")
    module, cls, _, _ = ALGORITHMS[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise ImportError(f"algorithm {name!r} needs {module} (pip install -e '.[rl]'): "
                          f"{e}") from None


def save_model(model: Any, path: str | Path, meta: dict[str, Any]) -> Path:
    """Save an SB3 model with distsafe's ``distsafe.json`` entry (written beside, then
    renamed: a reader never sees half a model)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as zf:
        zf.writestr(META_NAME, json.dumps(meta, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``distsafe.json`` entry of a model zip (``{}`` for a plain SB3 zip).

    Raises:
        ValueError: Not a zip file (naming the file).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            if META_NAME not in zf.namelist():
                return {}
            return json.loads(zf.read(META_NAME))
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not a model zip (Stable-Baselines3 saves models as zip "
                         "files)") from None


class RLPolicy(Policy):
    """A trained SB3 model as a policy (see the module docstring)."""

    name: ClassVar[str] = "rl"
    classifier: ClassVar[dict[str, Any]] = {"learned": True, "stochastic": "configurable"}

    class Params(Policy.Params):
        model: str | None = Field(None, description="path of the model zip (distsafe train's "
                                  "model.zip, or an SB3 zip with algorithm set), or of an "
                                  "RLlib training folder (train --backend rllib's rllib/)")
        algorithm: Literal["auto", "ppo", "maskable_ppo", "a2c", "dqn"] = Field(
            "auto", description="the SB3 algorithm; auto: the one the model file records")
        deterministic: bool = Field(True, description="play the most likely allowed value; "
                                    "false: sample among allowed values")
        masked: bool = Field(True, description="never play a value the action mask forbids")
        learn: bool = Field(False, description="the entry distsafe train trains (its model, "
                            "if given, is where training starts)")

        @field_validator("model")
        @classmethod
        def _exists(cls, v: str | None) -> str | None:
            if v is not None and not Path(v).exists():
                raise ValueError(f"no such model file {v!r} (paths are relative to the "
                                 "current folder)")
            return v

        @model_validator(mode="after")
        def _playable(self) -> RLPolicy.Params:
            if self.model is None and not self.learn:
                raise ValueError("an rl agent needs model: PATH (a model saved by distsafe "
                                 "train), or learn: true in a training config")
            return self

    def __init__(self, seed: int | None = None, **params: Any) -> None:
        super().__init__(seed=seed, **params)
        self.model: Any = None
        self.meta: dict[str, Any] = {}
        self._checked = False
        if self.params.model is not None:
            self.load(self.params.model)

    def load(self, path: str | Path, model: Any = None) -> None:
        """Play the model saved at ``path`` (or the in-memory ``model`` trained there).

        A folder is an RLlib training (``distsafe train --backend rllib``'s ``rllib/``, or
        its checkpoint): its shared policy plays, through
        :class:`baselines.rllib_backend.RLlibActor`."""
        if Path(path).is_dir():
            from baselines.rllib_backend import RLlibActor

            try:
                actor = RLlibActor.load(path)
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(f"{path}: cannot load it as an RLlib policy: {e}") from None
            self.model, self.meta, self.algorithm, self._joint = actor, actor.meta, "rllib", False
            self._checked = False
            return
        meta = read_meta(path)
        algo = self.params.algorithm if self.params.algorithm != "auto" else meta.get(
            "algorithm")
        if algo is None:
            raise ValueError(f"{path}: the model does not record its algorithm (not saved by "
                             f"distsafe train); set algorithm: one of "
                             f"{', '.join(ALGORITHMS)}")
        if algo not in ALGORITHMS:
            raise ValueError(f"{path}: unknown algorithm {algo!r}; allowed: "
                             f"{', '.join(ALGORITHMS)}")
        if model is None:
            try:
                model = algorithm_class(algo).load(path, device="cpu")
            except (ValueError, KeyError, RuntimeError, OSError) as e:
                raise ValueError(f"{path}: cannot load it as a {algo} model: "
                                 f"{type(e).__name__}: {e}") from None
        self.model, self.meta, self.algorithm = model, meta, algo
        self._joint = ALGORITHMS[algo][3]
        self._checked = False

    # ---------------------------------------------------------------- acting
    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("RLPolicy: no model to play (a learn: true entry plays only "
                               "once distsafe train has trained it)")
        from wrappers.flat import flatten_batch

        flat = flatten_batch(obs)
        nvec = np.asarray(obs.nvec, dtype=np.int64)
        if not self._checked:
            self._check_layout(flat.shape[1], nvec)
        scores = self._scores(flat)  # (n, sum(nvec)) logits / q-values, or joint (n, prod)
        mask = obs.action_mask.astype(bool) if self.params.masked else None
        if self._joint:
            if mask is not None:
                mask = _joint_mask(mask, nvec)
            deterministic = self.params.deterministic or self.algorithm == "dqn"
            pick = choose(scores, mask, deterministic, self.rng)
            return np.stack(np.unravel_index(pick, tuple(nvec)), axis=1).astype(np.int64)
        return choose_per_dimension(scores, nvec, mask, self.params.deterministic, self.rng)

    def _scores(self, flat: np.ndarray) -> np.ndarray:
        """The model's action logits (actor-critic) or q-values (DQN) for a batch."""
        import torch

        if self.algorithm == "rllib":
            return self.model.logits(flat)
        policy = self.model.policy
        with torch.no_grad():
            x = torch.as_tensor(flat, device=policy.device)
            if self.algorithm == "dqn":
                return policy.q_net(x).cpu().numpy()
            features = policy.extract_features(x, policy.pi_features_extractor)
            latent = policy.mlp_extractor.forward_actor(features)
            return policy.action_net(latent).cpu().numpy().astype(np.float64)

    def _check_layout(self, size: int, nvec: np.ndarray) -> None:
        if self.algorithm == "rllib":
            actor = self.model
            if actor.size != size or actor.nvec.tolist() != nvec.tolist():
                raise ValueError(f"RLlib policy {self.params.model} takes {actor.size} "
                                 f"features and acts in {actor.nvec.tolist()}; this "
                                 f"environment gives {size} and {nvec.tolist()}")
            self._checked = True
            return
        space = self.model.observation_space
        want = int(np.prod(space.shape))
        where = f"model {self.params.model or '(in memory)'}"
        trained = self.meta.get("env")
        on = f" (trained on {trained})" if trained else ""
        if want != size:
            raise ValueError(f"{where}{on} expects {want} observation features, this "
                             f"environment gives {size}: different max_neighbors, inbox_size "
                             "or history_length?")
        act = self.model.action_space
        expected = (np.asarray(act.nvec) if hasattr(act, "nvec")
                    else np.asarray([int(act.n)]))
        if self._joint:
            ok = int(np.prod(nvec)) == int(expected.prod())
        else:
            ok = expected.shape == nvec.shape and bool((expected == nvec).all())
        if not ok:
            raise ValueError(f"{where}{on} acts in {expected.tolist()}, this environment's "
                             f"action space is MultiDiscrete({nvec.tolist()})")
        self._checked = True


def choose(scores: np.ndarray, mask: np.ndarray | None, deterministic: bool,
           rng: np.random.Generator | None) -> np.ndarray:
    """Per row of ``(n, k)`` scores (logits): the best column among the allowed ones
    (``mask``, bool; ``None``: all), or one sampled from their softmax with ``rng``."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    if deterministic:
        return np.argmax(scores, axis=1)
    z = scores - scores.max(axis=1, keepdims=True)
    cdf = np.cumsum(np.exp(z), axis=1)
    u = rng.random(len(cdf)) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), scores.shape[1] - 1)


def choose_per_dimension(scores: np.ndarray, nvec: np.ndarray, mask: np.ndarray | None,
                         deterministic: bool,
                         rng: np.random.Generator | None) -> np.ndarray:
    """``(n, len(nvec))`` actions from flat ``(n, sum(nvec))`` logits and masks: each action
    dimension chosen by :func:`choose` on its own columns (what a MultiDiscrete policy plays,
    masks honoured)."""
    seg = np.concatenate([[0], np.cumsum(nvec)])
    out = np.empty((len(scores), len(nvec)), dtype=np.int64)
    for d in range(len(nvec)):
        lo, hi = seg[d], seg[d + 1]
        out[:, d] = choose(scores[:, lo:hi], None if mask is None else mask[:, lo:hi],
                           deterministic, rng)
    return out


def _joint_mask(mask: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """The ``(n, prod(nvec))`` mask of joint actions from per-dimension flat masks."""
    seg = np.concatenate([[0], np.cumsum(nvec)])
    out = mask[:, seg[0]:seg[1]]
    for d in range(1, len(nvec)):
        part = mask[:, seg[d]:seg[d + 1]]
        out = (out[:, :, None] & part[:, None, :]).reshape(len(mask), -1)
    return out
