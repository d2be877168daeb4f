"""Scripted sandbox policies: honest, opportunistic, deceptive, adversarial.

They follow the original soft-label sandbox's behaviour rules (restated, with where we depart
from them, in ``docs/reference.md``), expressed through the sandbox's actions — deception is
an action (low effort plus dressed-up signals), not a type the environment knows about. Every
policy is a vectorised function of the observation arrays and its own seeded generator; the
memory it needs (how often it has proposed, who trusts it, when it last proposed) is in the
observation, so one instance can drive any number of agents.

Beyond the four built-ins, :func:`resolve_policy` finds a user's own policy by import path
(``package.module:ClassName``) or installed entry point (group ``distsafe.policies``);
:func:`available_policies` lists the built-ins and the installed plug-ins.

=============  ===========================================================================
policy         behaviour
=============  ===========================================================================
honest         proposes with probability ``propose_prob`` to a random neighbour, full
               effort, no dressing, pays the lowest transfer on trades; accepts when
               ``trust_weight * trust + (1 - trust_weight) * p >= threshold`` (threshold
               ``accept_threshold`` -0.1 for collaborations, +0.1 for trades; trust is the
               mean ``p`` of what it accepted from the sender, 0.5 when unknown — with
               ``p = 0.5`` this is the original ``0.3 * trust + 0.35 >= 0.4`` rule)
opportunistic  cherry-picks the neighbour that trusts it most, free-rides (zero effort) with
               probability ``free_ride_prob``, else half effort; accepts any positive
               transfer, else a partner whose past mean ``p`` > 0.5, else with probability
               ``accept_prob`` when the expected payoff of accepting is positive
deceptive      honest for its first ``honest_interactions`` accepted proposals; once it has
               made more than ``exploit_after`` proposals and at least ``min_trusting``
               neighbours trust it above ``trust_level``, it exploits those trusted partners
               with zero effort and full dressing; accepts like honest
adversarial    attacks with probability ``attack_prob`` after a ``cooldown``: targets the
               highest-reputation neighbour that is not an ally, with zero effort, as a
               down-vote (``vote``) or a ``task``; accepts only from allies
=============  ===========================================================================
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from baselines.commons_policies import COMMONS_POLICIES
from baselines.policy import ObsBatch, Policy
from baselines.strategies import STRATEGY_POLICIES
from envs.core.records import InteractionType
from envs.sandbox import INBOX_FEATURES, NEIGHBOR_FEATURES, SELF_FEATURES

_S = {k: i for i, k in enumerate(SELF_FEATURES)}
_N = {k: i for i, k in enumerate(NEIGHBOR_FEATURES)}
_I = {k: i for i, k in enumerate(INBOX_FEATURES)}
_COLLAB = int(InteractionType.COLLABORATION)
_TRADE = int(InteractionType.TRADE)
_TASK = int(InteractionType.TASK)
_VOTE = int(InteractionType.VOTE)


class _Params(Policy.Params):
    """Base of the scripted policies' parameters (strict, frozen, no unknown keys)."""


def pick_slots(scores: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row, the valid column with the highest score (random tie-break); 0 if none valid."""
    noisy = np.where(valid, scores + 1e-6 * rng.random(scores.shape), -np.inf)
    return np.argmax(noisy, axis=1)


class ScriptedPolicy(Policy):
    """A policy made of a proposal rule and a response rule, both vectorised."""

    #: Axelrod-style properties: memory lives in the observation (counters, trust), so
    #: every policy is stateless and one instance drives any number of agents
    classifier: ClassVar[dict[str, Any]] = {"stochastic": True, "memory": "observation"}
    variants = ("sandbox",)

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        n = len(obs)
        act = np.zeros((n, len(obs.nvec)), dtype=np.int64)
        kind, slot, effort, dressing, transfer = self.propose(obs)
        can = obs.mask(0)[:, 1:].any(axis=1) & obs.neighbor_mask.any(axis=1)
        act[:, 0] = np.where(can, kind, 0)
        act[:, 1] = slot
        act[:, 2] = effort
        act[:, 3] = dressing
        act[:, 4] = transfer
        present = obs.inbox[:, :, _I["present"]] > 0
        act[:, 5:] = self.respond(obs) & present
        return act

    # -- pieces shared by the policies
    def _levels(self, obs: ObsBatch, dim: int, frac: np.ndarray | float) -> np.ndarray:
        """Index of the level nearest ``frac`` of the way up dimension ``dim``."""
        top = int(obs.nvec[dim]) - 1
        return np.rint(np.broadcast_to(frac, (len(obs),)) * top).astype(np.int64)

    def _random_kind(self, n: int, kinds: tuple[int, ...] = (0, 1, 2, 3)) -> np.ndarray:
        """A random interaction kind per row (action value = kind + 1)."""
        return np.asarray(kinds)[self.rng.integers(len(kinds), size=n)] + 1

    def _trade_price(self, obs: ObsBatch, kind: np.ndarray) -> np.ndarray:
        """Trades pay the smallest non-zero transfer level (if the env offers one)."""
        lowest_paid = min(1, int(obs.nvec[4]) - 1)
        return np.where(kind == _TRADE + 1, lowest_paid, 0)

    def propose(self, obs: ObsBatch) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def respond(self, obs: ObsBatch) -> np.ndarray:
        raise NotImplementedError


def _signal_trust_accept(obs: ObsBatch, trust_weight: float, threshold: float) -> np.ndarray:
    inbox = obs.inbox
    score = trust_weight * inbox[:, :, _I["sender_trust"]] + (1 - trust_weight) * inbox[
        :, :, _I["p"]]
    kind = inbox[:, :, _I["kind"]]
    thr = threshold + np.where(kind == _COLLAB, -0.1, 0.0) + np.where(kind == _TRADE, 0.1, 0.0)
    return score >= thr


class Honest(ScriptedPolicy):
    """Cooperative: full effort, honest signals; accepts on signals and trust."""

    name = "honest"
    classifier = {**ScriptedPolicy.classifier, "uses_signals": True, "uses_trust": True,
                  "dresses_signals": False, "effort": "full"}

    class Params(_Params):
        propose_prob: float = Field(0.5, ge=0, le=1, description="chance to propose a step")
        accept_threshold: float = Field(0.4, description="acceptance threshold on the score")
        trust_weight: float = Field(0.3, ge=0, le=1, description="weight of trust vs. p")

    def propose(self, obs: ObsBatch):
        n, prm = len(obs), self.params
        go = self.rng.random(n) < prm.propose_prob
        slot = pick_slots(np.zeros(obs.neighbor_mask.shape), obs.neighbor_mask > 0, self.rng)
        kind = np.where(go, self._random_kind(n), 0)
        return kind, slot, self._levels(obs, 2, 1.0), 0, self._trade_price(obs, kind)

    def respond(self, obs: ObsBatch) -> np.ndarray:
        return _signal_trust_accept(obs, self.params.trust_weight, self.params.accept_threshold)


class Opportunistic(ScriptedPolicy):
    """Payoff-maximising: cherry-picks partners, free-rides, accepts when it pays."""

    name = "opportunistic"
    classifier = {**ScriptedPolicy.classifier, "uses_signals": True, "uses_trust": True,
                  "dresses_signals": False, "effort": "half, zero when free-riding"}

    class Params(_Params):
        propose_prob: float = Field(0.7, ge=0, le=1, description="chance to propose a step")
        free_ride_prob: float = Field(0.3, ge=0, le=1, description="chance of zero effort")
        accept_prob: float = Field(0.6, ge=0, le=1, description="chance to accept otherwise")
        break_even_p: float = Field(1 / 3, ge=0, le=1,
                                    description="p above which accepting pays (s-/(s+ + s-))")

    def propose(self, obs: ObsBatch):
        n, prm = len(obs), self.params
        go = self.rng.random(n) < prm.propose_prob
        nb = obs.neighbors
        slot = pick_slots(nb[:, :, _N["trust_in_me"]] + 0.1 * nb[:, :, _N["reputation"]],
                          obs.neighbor_mask > 0, self.rng)
        free_ride = self.rng.random(n) < prm.free_ride_prob
        effort = np.where(free_ride, 0, self._levels(obs, 2, 0.5))
        kind = np.where(go, self._random_kind(n), 0)
        return kind, slot, effort, 0, 0

    def respond(self, obs: ObsBatch) -> np.ndarray:
        prm, inbox = self.params, obs.inbox
        paid = inbox[:, :, _I["transfer"]] > 0
        known_good = inbox[:, :, _I["sender_trust"]] > 0.5
        pays = inbox[:, :, _I["p"]] > prm.break_even_p
        lucky = self.rng.random(pays.shape) < prm.accept_prob
        return paid | known_good | (pays & lucky)


class Deceptive(Honest):
    """Builds trust honestly, then exploits trusted partners with dressed-up low effort.

    It accepts like :class:`Honest` (building the trust it later exploits).
    """

    name = "deceptive"
    classifier = {**ScriptedPolicy.classifier, "uses_signals": True, "uses_trust": True,
                  "dresses_signals": True, "effort": "full, then zero when exploiting"}

    class Params(Honest.Params):
        propose_prob: float = Field(0.6, ge=0, le=1, description="chance to propose a step")
        honest_interactions: int = Field(5, ge=0, description="accepted honest proposals "
                                         "before it may exploit")
        exploit_after: int = Field(10, ge=0, description="proposals made before exploiting")
        min_trusting: int = Field(2, ge=0, description="trusting partners needed to exploit")
        trust_level: float = Field(0.7, ge=0.5, le=1.0,
                                   description="trust in it that counts as trusting (a "
                                   "stranger's trust is 0.5)")
        dressing: float = Field(1.0, ge=0, le=1, description="dressing when exploiting")

    def exploiting(self, obs: ObsBatch) -> np.ndarray:
        prm = self.params
        s = obs.self_
        # trust_in_me is 0.5 until the neighbour has accepted something from it
        trusting = (obs.neighbors[:, :, _N["trust_in_me"]] > prm.trust_level) & (
            obs.neighbor_mask > 0)
        return ((s[:, _S["n_accepted_as_initiator"]] >= prm.honest_interactions)
                & (s[:, _S["n_initiated"]] > prm.exploit_after)
                & (trusting.sum(axis=1) >= prm.min_trusting))

    def propose(self, obs: ObsBatch):
        n, prm = len(obs), self.params
        go = self.rng.random(n) < prm.propose_prob
        exploit = self.exploiting(obs)
        trust_in_me = obs.neighbors[:, :, _N["trust_in_me"]]
        slot = np.where(exploit, pick_slots(trust_in_me, obs.neighbor_mask > 0, self.rng),
                        pick_slots(np.zeros_like(trust_in_me), obs.neighbor_mask > 0, self.rng))
        effort = np.where(exploit, 0, self._levels(obs, 2, 1.0))
        dressing = np.where(exploit, self._levels(obs, 3, prm.dressing), 0)
        kind = np.where(go, self._random_kind(n), 0)
        return kind, slot, effort, dressing, self._trade_price(obs, kind)


class Adversarial(ScriptedPolicy):
    """Targets the most reputable non-allies with harmful work; accepts only from allies."""

    name = "adversarial"
    classifier = {**ScriptedPolicy.classifier, "uses_signals": False, "uses_trust": False,
                  "dresses_signals": False, "effort": "zero", "coordinates": True}

    class Params(_Params):
        attack_prob: float = Field(0.6, ge=0, le=1, description="chance to attack a step")
        cooldown: int = Field(2, ge=0, description="steps to wait between attacks")
        vote_prob: float = Field(0.5, ge=0, le=1, description="share of attacks as down-votes")

    def propose(self, obs: ObsBatch):
        n, prm = len(obs), self.params
        ready = obs.self_[:, _S["steps_since_proposal"]] > prm.cooldown
        go = ready & (self.rng.random(n) < prm.attack_prob)
        nb = obs.neighbors
        target = (obs.neighbor_mask > 0) & (nb[:, :, _N["same_team"]] == 0)
        slot = pick_slots(nb[:, :, _N["reputation"]], target, self.rng)
        go &= target.any(axis=1)
        vote = self.rng.random(n) < prm.vote_prob
        kind = np.where(go, np.where(vote, _VOTE, _TASK) + 1, 0)
        return kind, slot, 0, 0, 0

    def respond(self, obs: ObsBatch) -> np.ndarray:
        return obs.inbox[:, :, _I["sender_same_team"]] > 0


#: every scripted sandbox policy, by name (Axelrod style: a plain table)
POLICIES: dict[str, type[ScriptedPolicy]] = {
    cls.name: cls for cls in (Honest, Opportunistic, Deceptive, Adversarial)
}

#: every built-in policy a scenario can name: the sandbox's scripted policies, the
#: dilemma's strategies (:data:`baselines.strategies.STRATEGY_POLICIES`) and the commons'
#: policies (:data:`baselines.commons_policies.COMMONS_POLICIES`)
BUILTIN: dict[str, type[Policy]] = {**POLICIES, **STRATEGY_POLICIES, **COMMONS_POLICIES}

#: entry-point group under which installed packages register policies (name -> class)
ENTRY_POINT_GROUP = "distsafe.policies"

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class PolicyLookupError(ValueError):
    """A policy name or import path that does not lead to a :class:`Policy` subclass."""


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _check_policy_class(obj: Any, what: str) -> type[Policy]:
    if not (isinstance(obj, type) and issubclass(obj, Policy)):
        kind = f"the class {obj.__name__}" if isinstance(obj, type) else \
            f"a {type(obj).__name__}"
        raise PolicyLookupError(f"{what} is {kind}, not a subclass of baselines.policy.Policy")
    if not (isinstance(obj.Params, type) and issubclass(obj.Params, BaseModel)):
        raise PolicyLookupError(f"{what}: its Params must be a pydantic model (subclass "
                                "Policy.Params)")
    return obj


def _import_module(module: str, name: str) -> Any:
    """Import ``module``; when it is not found, once more with the current folder on the path."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing_itself = e.name is not None and (module == e.name
                                                 or module.startswith(e.name + "."))
        cwd = os.getcwd()
        if missing_itself and cwd not in sys.path and "" not in sys.path:
            sys.path.append(cwd)  # as `python` does for scripts: modules beside the scenario
            importlib.invalidate_caches()
            return _import_module(module, name)
        if missing_itself:
            raise PolicyLookupError(
                f"cannot import module {module!r} for agent type {name!r}: no such module "
                "in the current folder or on PYTHONPATH") from None
        raise PolicyLookupError(f"cannot import module {module!r} for agent type {name!r}: "
                                f"{type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any error in the user's module is reported
        raise PolicyLookupError(f"cannot import module {module!r} for agent type {name!r}: "
                                f"{type(e).__name__}: {e}") from None


def _from_import_path(name: str) -> type[Policy]:
    if not _IMPORT_PATH.match(name):
        raise PolicyLookupError(f"agent type {name!r} is not an import path; expected "
                                "package.module:ClassName")
    module_name, _, attr = name.partition(":")
    obj: Any = _import_module(module_name, name)
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = module_name if i == 0 else f"{module_name}:{'.'.join(attr.split('.')[:i])}"
            found = sorted(k for k, v in vars(obj).items()
                           if isinstance(v, type) and issubclass(v, Policy) and v is not Policy)
            hint = f"; it defines: {', '.join(found)}" if found else \
                "; it defines no Policy subclass"
            raise PolicyLookupError(f"{name!r}: {where!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    return _check_policy_class(obj, repr(name))


def allowed_names(variant: str | None = None) -> str:
    """The names a scenario can use, for messages: the built-ins (and installed plug-ins)
    that play ``variant``, or every built-in grouped by variant when ``variant`` is None."""
    plugins = list(_entry_points())
    groups: dict[str, list[str]] = {}
    for name, cls in BUILTIN.items():
        for v in cls.variants or ("any variant",):
            groups.setdefault(v, []).append(name)
    if variant is not None:
        return ", ".join(sorted(set(groups.get(variant, []) + plugins)))
    parts = []
    for k, (v, names) in enumerate(groups.items()):
        names = names + plugins if k == 0 else names  # plug-ins: listed once, first
        parts.append(f"{', '.join(sorted(set(names)))} ({v})")
    return "; ".join(parts)


def resolve_policy(name: str, variant: str | None = None) -> type[Policy]:
    """The policy class a scenario's agent ``type`` names.

    Looked up, in order: a built-in policy (:data:`BUILTIN`: the sandbox's scripted
    policies, the dilemma's strategies and the commons' policies), an import path
    ``package.module:ClassName`` (the module is imported from ``sys.path``, or else from the
    current folder, which is then added to ``sys.path``), an installed entry point of group
    ``distsafe.policies``.

    Args:
        name: A policy name or import path.
        variant: The scenario's variant (e.g. ``"sandbox"``), to list only the names that
            play it when ``name`` is unknown.

    Returns:
        The :class:`Policy` subclass.

    Raises:
        PolicyLookupError: An unknown name (the message lists the allowed ones), a module that
            cannot be imported, a missing class, or an object that is not a Policy subclass.

    Example:
        >>> resolve_policy("honest").__name__, resolve_policy("baselines.scripted:Honest").name
        ('Honest', 'honest')
    """
    if not isinstance(name, str):
        raise PolicyLookupError(f"a policy is named by a string; got {type(name).__name__}")
    if name in BUILTIN:
        return BUILTIN[name]
    if name == "llm":  # imported on demand: litellm is an optional extra
        try:
            module = importlib.import_module("llm_policies.policy")
        except ImportError as e:
            raise PolicyLookupError(f"agent type 'llm' needs the LLM extra (pip install -e "
                                    f"'.[llm]'): {type(e).__name__}: {e}") from None
        return _check_policy_class(module.LLMPolicy, "agent type 'llm'")
    if name == "rl":  # imported on demand: torch and SB3 are an optional extra
        try:
            module = importlib.import_module("baselines.rl")
        except ImportError as e:  # pragma: no cover - baselines.rl imports no extra itself
            raise PolicyLookupError(f"agent type 'rl' needs the RL extra (pip install -e "
                                    f"'.[rl]'): {type(e).__name__}: {e}") from None
        return _check_policy_class(module.RLPolicy, "agent type 'rl'")
    if ":" in name:
        return _from_import_path(name)
    eps = _entry_points()
    if name in eps:
        try:
            obj = eps[name].load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in is reported, not raised
            raise PolicyLookupError(f"cannot load policy {name!r} (entry point "
                                    f"{eps[name].value!r}): {type(e).__name__}: {e}") from None
        return _check_policy_class(obj, f"entry point {name!r} ({eps[name].value})")
    raise PolicyLookupError(f"unknown agent type {name!r}; allowed: {allowed_names(variant)}")


def available_policies() -> dict[str, type[Policy]]:
    """Every policy that a name can select: the built-ins, then installed plug-ins.

    Plug-ins are the entry points of group ``distsafe.policies`` (in a package's
    ``pyproject.toml``: ``[project.entry-points."distsafe.policies"]`` ``name =
    "package.module:ClassName"``). A built-in's name cannot be taken by a plug-in; a plug-in
    that fails to load or is not a Policy subclass is left out with a warning.

    Returns:
        ``{name: Policy subclass}``, sorted by name.
    """
    out: dict[str, type[Policy]] = dict(BUILTIN)
    for name in _entry_points():
        if name in out:
            continue
        try:
            out[name] = resolve_policy(name)
        except PolicyLookupError as e:
            warnings.warn(f"distsafe: skipping policy plug-in {name!r}: {e}", stacklevel=2)
    return dict(sorted(out.items()))


def policy_label(cls: type[Policy]) -> str:
    """A policy class's group label: its ``name`` if it sets one, else its class name."""
    name = getattr(cls, "name", None)
    return name if isinstance(name, str) and name and name != Policy.name else cls.__name__


def make_policy(kind: str, seed: int | None = None, **params: Any) -> Policy:
    """Build a policy by name or import path, e.g. ``make_policy("honest", seed=0)``.

    Example:
        >>> make_policy("honest", seed=1, propose_prob=0.2)
        Honest(propose_prob=0.2, accept_threshold=0.4, trust_weight=0.3)
    """
    return resolve_policy(kind)(seed=seed, **params)
