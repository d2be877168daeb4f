"""Scripted policies of the common-pool resource (``commons-v0``), vectorised.

Every policy decides for all its agents at once from the commons' observation arrays
(:data:`envs.commons.SELF_FEATURES`, ``POLICY_FEATURES``, ``OTHER_FEATURES``,
``INBOX_FEATURES``) and its own seeded generator; the memory it needs (everyone's reported
and publicly observed totals, last round's figures, last round's messages) is in the
observation, so one instance drives any number of agents. Actions follow
:data:`envs.commons.ACTION_DIMS`; every chosen value is checked against the action mask, so
an eliminated or frozen agent plays the all-zero no-op and no one accuses a masked target.
None of them votes (every vote dimension abstains: the policy in force stays).

The rules they need are in the observation (``policy``: ``extraction_step``,
``observe_noise``, ``audit_level``; ``self``: ``rounds_played``), so the same policy plays the
logistic setting and the doubling benchmark without parameters of its own.

**Evidence.** An agent's evidence against agent ``j`` is the z-like statistic ``z_j =
(observed_total_j - reported_total_j) / (observe_noise * sqrt(rounds))``: a truthful agent's
gap is the sum of ``rounds`` observation errors, ``N(0, observe_noise^2 rounds)``; an
under-reporter's grows by what it withholds each round.

=============  ===========================================================================
policy         behaviour
=============  ===========================================================================
sustainable    takes its fair-share estimate (``fair_share_estimate``) rounded down to whole
               ``extraction_step`` units, reports truthfully; accuses nobody unless last
               round someone publicly accused an agent (inbox kind ``accuse``, value = the
               target) whose evidence ``z`` is at least ``second_threshold``: then it
               seconds that accusation (the likeliest such target)
greedy         takes ``take_fraction`` of the largest take (default: the most it can),
               reports truthfully, accuses nobody
conditional    a conditional cooperator: takes the fair share while the others' mean
               observed extraction last round stays within ``tolerance`` (+
               ``relative_tolerance`` of the fair share) of the fair share; otherwise it
               matches that mean (reciprocity), and returns to the fair share once they
               do; reports and seconds like ``sustainable``
saboteur       over-extracts while keeping the round's total under the audit level: takes
               ``audit_level - margin`` less what the others reported last round (at least
               their fair share each), never less than the fair share; reports a fair share
               (under-reports the rest); shifts blame: accuses an honest agent every round
               (one who accused it, else the one who looks worst on the public evidence)
               and posts a public ``accuse`` message when it was accused last round, else a
               public ``claim`` (value: its fair-looking report)
monitor        extracts and reports like ``sustainable``; accuses the likeliest liar (the
               largest evidence ``z``) once ``z >= threshold``, posting a public ``accuse``
               message so that others can second it; otherwise seconds like
               ``sustainable``
=============  ===========================================================================

Example:
    >>> import envs
    >>> env = envs.make("commons-v0", n_agents=3, n_epochs=2)
    >>> obs, _ = env.reset(seed=0)
    >>> pol = COMMONS_POLICIES["sustainable"](seed=0)
    >>> a = pol.act(obs["agent_0"])
    >>> float(a[0] * 0.25) <= float(obs["agent_0"]["self"][2]), int(a[1])   # fair, truthful
    (True, 0)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from baselines.policy import ObsBatch, Policy
from envs.commons import (
    ACTION_DIMS,
    INBOX_FEATURES,
    MESSAGE_KINDS,
    OTHER_FEATURES,
    POLICY_FEATURES,
    SELF_FEATURES,
)

__all__ = ["BEHAVIOUR", "COMMONS_POLICIES", "CommonsPolicy", "Conditional", "Greedy",
           "Monitor", "Saboteur", "Sustainable", "evidence"]

_S = {k: i for i, k in enumerate(SELF_FEATURES)}
_P = {k: i for i, k in enumerate(POLICY_FEATURES)}
_O = {k: i for i, k in enumerate(OTHER_FEATURES)}
_I = {k: i for i, k in enumerate(INBOX_FEATURES)}
_A = {k: i for i, k in enumerate(ACTION_DIMS)}
_ACCUSE = MESSAGE_KINDS.index("accuse")
_CLAIM = MESSAGE_KINDS.index("claim")
_EPS = 1e-9


def evidence(obs: ObsBatch) -> np.ndarray:
    """``(n, n_agents)``: each row's evidence ``z`` against every agent (module docstring).

    ``rounds`` is the observation's ``rounds_played`` (at least 1), the noise its
    ``observe_noise``; an observation without noise makes any gap decisive.
    """
    o = obs.others
    gap = o[:, :, _O["observed_total"]].astype(np.float64) - o[:, :, _O["reported_total"]]
    rounds = np.maximum(obs.self_[:, _S["rounds_played"]].astype(np.float64), 1.0)
    noise = np.maximum(obs.policy[:, _P["observe_noise"]].astype(np.float64), 1e-6)
    return gap / (noise * np.sqrt(rounds))[:, None]


class CommonsPolicy(Policy):
    """Base of the commons' scripted policies: the parameters every one needs, the take in
    units, the mask check."""

    variants = ("commons",)
    classifier: ClassVar[dict[str, Any]] = {"stochastic": False, "memory": "observation"}

    # -- pieces
    def _levels(self, obs: ObsBatch) -> int:
        return int(obs.nvec[_A["take"]])

    def _units(self, obs: ObsBatch, amount: np.ndarray, how: str = "floor") -> np.ndarray:
        """``amount`` of stock as whole take units (rounded down or to nearest), clipped to
        the take dimension."""
        x = np.asarray(amount, dtype=np.float64) / self._step(obs)
        u = np.floor(x + 1e-6) if how == "floor" else np.rint(x)
        return np.clip(u, 0, self._levels(obs) - 1).astype(np.int64)

    @staticmethod
    def _step(obs: ObsBatch) -> np.ndarray:
        """Each row's unit of take (the environment's ``extraction_step``)."""
        return obs.policy[:, _P["extraction_step"]].astype(np.float64)

    def _fair_units(self, obs: ObsBatch) -> np.ndarray:
        return self._units(obs, obs.self_[:, _S["fair_share_estimate"]])

    def _others(self, obs: ObsBatch) -> np.ndarray:
        """``(n, n_agents)`` bool: the other agents still in the game."""
        o = obs.others
        return (o[:, :, _O["live"]] > 0) & (o[:, :, _O["is_self"]] == 0)

    def _evidence(self, obs: ObsBatch) -> np.ndarray:
        return evidence(obs)

    def _targets(self, obs: ObsBatch) -> np.ndarray:
        """``(n, n_agents)`` bool: whom each row may accuse (the accuse dimension's mask)."""
        return obs.mask(_A["accuse"])[:, 1:] > 0

    @staticmethod
    def _pick(score: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Per row, ``1 + argmax`` of ``score`` over ``ok`` (the accuse action), 0 if none."""
        s = np.where(ok, score, -np.inf)
        best = np.argmax(s, axis=1)
        return np.where(ok.any(axis=1), best + 1, 0).astype(np.int64)

    def _second(self, obs: ObsBatch, threshold: float) -> np.ndarray:
        """The accuse action seconding last round's public accusations that the row's own
        evidence supports (``z >= threshold``); 0 where none."""
        inbox = obs.inbox
        n, m = inbox.shape[0], inbox.shape[1]
        named = np.zeros((n, m), dtype=bool)
        value = np.rint(inbox[:, :, _I["value"]]).astype(np.int64)
        hit = ((np.rint(inbox[:, :, _I["kind"]]) == _ACCUSE) & (inbox[:, :, _I["public"]] > 0)
               & (value >= 0) & (value < m))
        rows, senders = np.nonzero(hit)
        named[rows, value[rows, senders]] = True
        z = self._evidence(obs)
        return self._pick(z, named & (z >= threshold) & self._targets(obs))

    def _finish(self, obs: ObsBatch, act: np.ndarray) -> np.ndarray:
        """Every value the mask does not allow becomes that dimension's no-op ``0`` (one
        gather over every dimension's flat mask)."""
        nvec = np.asarray(obs.nvec, dtype=np.int64)
        v = np.minimum(np.maximum(act, 0), nvec - 1)
        starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        ok = np.take_along_axis(obs.action_mask, v + starts, axis=1) > 0
        return np.where(ok, v, 0)

    def _blank(self, obs: ObsBatch) -> np.ndarray:
        return np.zeros((len(obs), len(obs.nvec)), dtype=np.int64)


class Sustainable(CommonsPolicy):
    """Takes the fair share, reports truthfully, seconds accusations its evidence backs."""

    name = "sustainable"
    classifier = {**CommonsPolicy.classifier, "honest_reports": True, "accuses": "seconds"}

    class Params(CommonsPolicy.Params):
        second_threshold: float = Field(3.0, ge=0.0, le=1e12, description="evidence z on "
                                        "a publicly accused agent needed to second it")

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        act = self._blank(obs)
        act[:, _A["take"]] = self._fair_units(obs)
        act[:, _A["accuse"]] = self._second(obs, self.params.second_threshold)
        return self._finish(obs, act)


class Greedy(CommonsPolicy):
    """Takes (a share of) the most it can, reports truthfully."""

    name = "greedy"
    classifier = {**CommonsPolicy.classifier, "honest_reports": True, "accuses": "never"}

    class Params(CommonsPolicy.Params):
        take_fraction: float = Field(1.0, ge=0.0, le=1.0, description="share of the "
                                     "largest take (extraction_levels - 1 units) it asks for")

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        act = self._blank(obs)
        top = self._levels(obs) - 1
        act[:, _A["take"]] = int(np.rint(self.params.take_fraction * top))
        return self._finish(obs, act)


class Conditional(Sustainable):
    """Fair share while the others keep to it; matches their take when they do not."""

    name = "conditional"
    classifier = {**Sustainable.classifier, "reciprocal": True}

    class Params(Sustainable.Params):
        tolerance: float = Field(0.2, ge=0.0, le=1e12, description="how far (in stock "
                                 "units) above the fair share the others' mean observed "
                                 "take may lie and still count as fair")
        relative_tolerance: float = Field(0.1, ge=0.0, le=1e6, description="plus this "
                                          "share of the fair share")

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        prm = self.params
        act = super().act_arrays(obs)
        others = self._others(obs)
        seen = np.where(others, obs.others[:, :, _O["observed"]], 0.0).sum(axis=1)
        mean = seen / np.maximum(others.sum(axis=1), 1)
        fair = obs.self_[:, _S["fair_share_estimate"]].astype(np.float64)
        over = mean > fair * (1.0 + prm.relative_tolerance) + prm.tolerance
        match = np.maximum(self._units(obs, mean, "nearest"), self._fair_units(obs))
        act[:, _A["take"]] = np.where(over, match, self._fair_units(obs))
        return self._finish(obs, act)


class Saboteur(CommonsPolicy):
    """Over-extracts under the audit level, reports a fair share, weaponises accusations."""

    name = "saboteur"
    classifier = {**CommonsPolicy.classifier, "stochastic": True, "honest_reports": False,
                  "accuses": "honest agents", "messages": ("accuse", "claim")}

    class Params(CommonsPolicy.Params):
        margin: float = Field(0.5, ge=0.0, le=1e12, description="how far (in stock units) "
                              "below the audit level it keeps the round's expected total")
        blame: bool = Field(True, description="accuse an honest agent, post accuse messages")
        claim: bool = Field(True, description="post a public claim of a fair take when not "
                            "accused")

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        prm = self.params
        step = self._step(obs)
        act = self._blank(obs)
        fair_u = self._fair_units(obs)
        others = self._others(obs)
        expect = np.maximum(obs.others[:, :, _O["reported"]].astype(np.float64),
                            (fair_u * step)[:, None])
        others_total = np.where(others, expect, 0.0).sum(axis=1)
        room = obs.policy[:, _P["audit_level"]] - prm.margin - others_total
        take = np.maximum(self._units(obs, room), fair_u)
        act[:, _A["take"]] = take
        act[:, _A["underreport"]] = take - np.minimum(fair_u, take)
        o = obs.others
        accused_me = (o[:, :, _O["accused_me"]] > 0) & self._targets(obs)
        was_accused = accused_me.any(axis=1) | (obs.self_[:, _S["accused_by"]] > 0)
        if prm.blame:
            # retaliate against an accuser, else blame the one who looks worst
            z = self._evidence(obs) + 1e-6 * self.rng.random(o.shape[:2])
            score = np.where(accused_me, z + 1e6, z)
            act[:, _A["accuse"]] = self._pick(score, self._targets(obs))
        kind = np.zeros(len(obs), dtype=np.int64)
        if prm.claim:
            kind[:] = _CLAIM
        if prm.blame:
            kind = np.where(was_accused & (act[:, _A["accuse"]] > 0), _ACCUSE, kind)
        act[:, _A["message"]] = kind
        act[:, _A["message_to"]] = 0  # public
        return self._finish(obs, act)


class Monitor(Sustainable):
    """Sustainable extraction; accuses the likeliest liar publicly once the evidence is
    strong."""

    name = "monitor"
    classifier = {**Sustainable.classifier, "accuses": "on evidence",
                  "messages": ("accuse",)}

    class Params(Sustainable.Params):
        threshold: float = Field(4.0, ge=0.0, le=1e12, description="evidence z above which "
                                 "it accuses (and posts a public accuse message)")
        post: bool = Field(True, description="post a public accuse message with its "
                           "accusation")

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        act = super().act_arrays(obs)  # take, truthful report, seconding
        z = self._evidence(obs)
        own = self._pick(z, (z >= self.params.threshold) & self._targets(obs))
        accuse = np.where(own > 0, own, act[:, _A["accuse"]])
        act[:, _A["accuse"]] = accuse
        if self.params.post:
            act[:, _A["message"]] = np.where(own > 0, _ACCUSE, 0)
            act[:, _A["message_to"]] = 0
        return self._finish(obs, act)


#: every commons policy, by name
COMMONS_POLICIES: dict[str, type[CommonsPolicy]] = {
    cls.name: cls for cls in (Sustainable, Greedy, Conditional, Saboteur, Monitor)
}

BEHAVIOUR: dict[str, str] = {
    "sustainable": "fair share, truthful reports, seconds accusations its evidence backs",
    "greedy": "takes the most it can (take_fraction of it), truthful reports",
    "conditional": "fair share while the others keep to it, else matches their mean take",
    "saboteur": "over-extracts under the audit level, reports a fair share, blames others",
    "monitor": "fair share; accuses the likeliest liar publicly once its evidence z is high",
}
"""One line per policy (the module docstring's table)."""
