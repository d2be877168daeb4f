"""Strategies of the iterated prisoner's dilemma, vectorised over many (player, opponent) pairs.

A strategy decides the next move of many pairs at once. Moves are small ints: ``C = 0``
(cooperate) and ``D = 1`` (defect). For ``n`` pairs a strategy reads

* ``my_moves``, ``their_moves``: ``(n, H)`` int arrays, the last ``H`` moves of the pair, the
  most recent in the last column. Only the last ``min(t, H)`` columns are real; the slots before
  them are padding (filled with ``C`` by :class:`History`, but a strategy never relies on them);
* ``t``: ``(n,)`` int array, how many rounds each pair has played so far (``0`` on the first);
* ``rng``: a ``numpy.random.Generator`` (stochastic strategies draw from it; ``None`` means
  the strategy's own seeded ``self.rng``);
* ``their_defected``: ``(n,)`` bool array, whether the opponent has *ever* defected in this
  match. It is the one piece of unbounded memory in the library (``GRIM`` needs it) and is kept
  by the caller as a per-pair flag, so the window ``H`` stays small. If a caller passes
  ``None``, a strategy that needs it derives it from the window, which is exact only while
  ``t <= H``.

and returns the ``(n,)`` int8 array of next moves. The window every strategy here needs is
:data:`HISTORY_DEPTH` (``= 2``: ``TF2T`` looks two moves back; everything else one or none);
:func:`history_depth` gives it for any list of strategies, and :class:`History` keeps the
window, ``t`` and the flag for a batch of pairs (``push`` one round, read it back from both
sides). Strategies hold no per-pair state, so one instance can drive any number of pairs.

Each strategy is a small declarative class, Axelrod style: a ``name``, a ``short`` name for the
classic seven, a ``classifier`` dict (``memory_depth``: how many past rounds it reads, ``inf``
for ``GRIM``; ``stochastic``; ``uses_own_history``; ``uses_their_defected``), a ``Params`` model
where it has parameters (validated like a policy's) and one vectorised :meth:`Strategy.decide`.

=======================  =====  ===========================================================
name                     short  behaviour
=======================  =====  ===========================================================
always_cooperate         AC     C always
always_defect            AD     D always
tit_for_tat              TFT    C first, then the opponent's last move
suspicious_tit_for_tat   STFT   D first, then the opponent's last move
grim_trigger             GRIM   C until the opponent's first D, then D forever
win_stay_lose_shift      WSLS   C first; repeat the last move after R or T, switch after S or
                                P (so: C iff both played the same last round); Pavlov
random                   RND    C with probability ``p`` (0.5)
tit_for_two_tats         TF2T   D only if the opponent defected in both of the last two rounds
generous_tit_for_tat     GTFT   TFT, but forgive a D (play C) with probability ``p`` (1/3)
alternator               ALT    C first, then the opposite of its own last move (C, D, C, ...)
=======================  =====  ===========================================================

Example:
    >>> import numpy as np
    >>> h = History(n_pairs=2)
    >>> tft, ad = make_strategy("TFT"), make_strategy("AD")
    >>> for _ in range(3):
    ...     a = tft.decide(h.my, h.their, h.t, their_defected=h.their_defected)
    ...     b = ad.decide(h.their, h.my, h.t, their_defected=h.my_defected)
    ...     h.push(a, b)
    >>> h.my[0].tolist(), h.their[0].tolist(), h.t.tolist()
    ([1, 1], [1, 1], [3, 3])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from baselines.policy import ObsBatch, Parametrised, Policy

C = 0
D = 1
MOVE_DTYPE = np.int8


class Strategy(Parametrised):
    """Base class of the prisoner's-dilemma strategies (see the module docstring).

    Subclasses set ``name``, ``short`` (optional), ``classifier``, ``Params`` (if they have
    parameters) and implement :meth:`decide`.
    """

    name: ClassVar[str] = "strategy"
    short: ClassVar[str | None] = None
    classifier: ClassVar[dict[str, Any]] = {
        "memory_depth": 0, "stochastic": False, "uses_own_history": False,
        "uses_their_defected": False,
    }

    class Params(Parametrised.Params):
        """A strategy's parameters (frozen, strict, unknown keys are errors)."""

    @property
    def label(self) -> str:
        """The short name where there is one, else the name."""
        return self.short or self.name

    def decide(self, my_moves: np.ndarray, their_moves: np.ndarray, t: np.ndarray,
               rng: np.random.Generator | None = None, *,
               their_defected: np.ndarray | None = None) -> np.ndarray:
        """The next move (``0`` = C, ``1`` = D) of every pair, ``(n,)`` int8."""
        raise NotImplementedError



def _classifier(memory_depth: float, *, stochastic: bool = False, own: bool = False,
                flag: bool = False) -> dict[str, Any]:
    return {"memory_depth": memory_depth, "stochastic": stochastic, "uses_own_history": own,
            "uses_their_defected": flag}


def _full(t: np.ndarray, move: int) -> np.ndarray:
    return np.full(np.shape(t), move, dtype=MOVE_DTYPE)


def _last(moves: np.ndarray) -> np.ndarray:
    return moves[:, -1].astype(MOVE_DTYPE, copy=False)


class AlwaysCooperate(Strategy):
    name = "always_cooperate"
    short = "AC"
    classifier = _classifier(0)

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        return _full(t, C)


class AlwaysDefect(Strategy):
    name = "always_defect"
    short = "AD"
    classifier = _classifier(0)

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        return _full(t, D)


class TitForTat(Strategy):
    name = "tit_for_tat"
    short = "TFT"
    classifier = _classifier(1)

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        return np.where(t > 0, _last(their_moves), C).astype(MOVE_DTYPE, copy=False)


class SuspiciousTitForTat(Strategy):
    name = "suspicious_tit_for_tat"
    short = "STFT"
    classifier = _classifier(1)

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        return np.where(t > 0, _last(their_moves), D).astype(MOVE_DTYPE, copy=False)


class GrimTrigger(Strategy):
    name = "grim_trigger"
    short = "GRIM"
    classifier = _classifier(math.inf, flag=True)

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        if their_defected is None:  # derive from the window: exact only while t <= H
            depth = their_moves.shape[1]
            real = np.arange(depth)[None, :] >= depth - np.asarray(t)[:, None]
            their_defected = ((their_moves == D) & real).any(axis=1)
        return np.asarray(their_defected, dtype=MOVE_DTYPE)


class WinStayLoseShift(Strategy):
    name = "win_stay_lose_shift"
    short = "WSLS"
    classifier = _classifier(1, own=True)

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        shift = _last(my_moves) != _last(their_moves)  # got S or P last round
        return np.where(t > 0, shift, C).astype(MOVE_DTYPE, copy=False)


class Random(Strategy):
    name = "random"
    short = "RND"
    classifier = _classifier(0, stochastic=True)

    class Params(Strategy.Params):
        p: float = Field(0.5, ge=0.0, le=1.0, description="probability of cooperating")

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        rng = self.rng if rng is None else rng
        return (rng.random(np.shape(t)) >= self.params.p).astype(MOVE_DTYPE)


class TitForTwoTats(Strategy):
    name = "tit_for_two_tats"
    short = "TF2T"
    classifier = _classifier(2)

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        both = (their_moves[:, -1] == D) & (their_moves[:, -2] == D)
        return (both & (t >= 2)).astype(MOVE_DTYPE)


class GenerousTitForTat(Strategy):
    name = "generous_tit_for_tat"
    short = "GTFT"
    classifier = _classifier(1, stochastic=True)

    class Params(Strategy.Params):
        p: float = Field(1 / 3, ge=0.0, le=1.0,
                         description="probability of forgiving a defection (playing C)")

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        rng = self.rng if rng is None else rng
        punish = (t > 0) & (their_moves[:, -1] == D)
        forgive = rng.random(np.shape(t)) < self.params.p
        return (punish & ~forgive).astype(MOVE_DTYPE)


class Alternator(Strategy):
    name = "alternator"
    short = "ALT"
    classifier = _classifier(1, own=True)

    def decide(self, my_moves, their_moves, t, rng=None, *, their_defected=None):
        return np.where(t > 0, 1 - _last(my_moves), C).astype(MOVE_DTYPE, copy=False)


STRATEGIES: list[type[Strategy]] = [
    AlwaysCooperate, AlwaysDefect, TitForTat, SuspiciousTitForTat, GrimTrigger,
    WinStayLoseShift, Random, TitForTwoTats, GenerousTitForTat, Alternator,
]
"""Every strategy class of the library."""

class StrategyPolicy(Policy):
    """A strategy as a :class:`~baselines.policy.Policy` of ``dilemma-v0``: one move per
    neighbour slot, each from that neighbour's history in the observation.

    The observation gives, per slot, the last ``H`` moves of both sides (``their_moves``,
    ``my_moves``), the rounds played (``neighbors[..., "rounds"]``) and whether the
    neighbour was ever seen to defect (``neighbors[..., "their_defected"]``): exactly what
    :meth:`Strategy.decide` reads, so the strategy runs once over every (agent, slot) pair
    and slots without a game play the no-op. The policy's parameters are the strategy's;
    stochastic strategies draw from the policy's generator. One class per strategy, named
    as the strategy (:data:`STRATEGY_POLICIES`).

    Example:
        >>> import envs
        >>> env = envs.make("dilemma-v0")                      # two agents, one game each
        >>> tft, ad = STRATEGY_POLICIES["tit_for_tat"](), STRATEGY_POLICIES["always_defect"]()
        >>> obs, _ = env.reset(seed=0)
        >>> for _ in range(3):
        ...     act = {"agent_0": tft.act(obs["agent_0"]), "agent_1": ad.act(obs["agent_1"])}
        ...     obs, rewards, *_ = env.step(act)
        >>> obs["agent_0"]["my_moves"][0].tolist()    # C, then D: TFT answers AD
        [0, 0, 0, 1, 1]
    """

    strategy_class: ClassVar[type[Strategy]] = Strategy
    variants = ("dilemma",)

    def __init__(self, seed: int | None = None, **params: Any) -> None:
        super().__init__(seed, **params)
        self.strategy = self.strategy_class(**self.params.model_dump())
        self._depth = history_depth([self.strategy_class])

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        from envs.dilemma import NEIGHBOR_FEATURES

        their, mine = obs.their_moves, obs.my_moves
        n, k, h = their.shape
        if h < self._depth:
            raise ValueError(f"{self.name} reads the last {self._depth} moves; the "
                             f"environment shows {h} (set history_length >= {self._depth})")
        features = obs.neighbors
        rounds = features[:, :, NEIGHBOR_FEATURES.index("rounds")].astype(np.int64)
        defected = features[:, :, NEIGHBOR_FEATURES.index("their_defected")] > 0
        moves = self.strategy.decide(mine.reshape(n * k, h), their.reshape(n * k, h),
                                     rounds.reshape(-1), self.rng,
                                     their_defected=defected.reshape(-1))
        allowed_d = obs.action_mask[:, 1::2] > 0   # D only where a game is played
        return np.where(allowed_d, moves.reshape(n, k), C).astype(np.int64)


BEHAVIOUR: dict[str, str] = {
    "always_cooperate": "C always.",
    "always_defect": "D always.",
    "tit_for_tat": "C first, then the opponent's last move.",
    "suspicious_tit_for_tat": "D first, then the opponent's last move.",
    "grim_trigger": "C until the opponent's first D, then D forever.",
    "win_stay_lose_shift": "C first; repeat the last move after R or T, switch after S or P.",
    "random": "C with probability p (0.5).",
    "tit_for_two_tats": "D only if the opponent defected in both of the last two rounds.",
    "generous_tit_for_tat": "TFT, but forgive a D (play C) with probability p (1/3).",
    "alternator": "C first, then the opposite of its own last move.",
}
"""One line per strategy: what it does (the table of the module docstring)."""


def _policy_class(cls: type[Strategy]) -> type[StrategyPolicy]:
    name = "".join(part.title() for part in cls.name.split("_")) + "Policy"
    doc = (f"{cls.short or cls.name}: {BEHAVIOUR.get(cls.name, '')} A dilemma-v0 policy, one "
           f"move per neighbour (see :class:`StrategyPolicy`).")
    return type(name, (StrategyPolicy,), {
        "__module__": __name__, "__qualname__": name, "__doc__": doc, "name": cls.name,
        "strategy_class": cls, "Params": cls.Params, "classifier": dict(cls.classifier)})


STRATEGY_POLICIES: dict[str, type[StrategyPolicy]] = {}
"""Every strategy as a dilemma policy, by the strategy's name (``tit_for_tat``, ...)."""
for _cls in STRATEGIES:
    _pol = _policy_class(_cls)
    globals()[_pol.__name__] = _pol  # importable and picklable by name
    STRATEGY_POLICIES[_cls.name] = _pol

CLASSIC: list[str] = ["AC", "AD", "TFT", "STFT", "GRIM", "WSLS", "RND"]
"""Short names of the classic seven."""

_BY_NAME: dict[str, type[Strategy]] = {}
for _cls in STRATEGIES:
    _BY_NAME[_cls.name] = _cls
    if _cls.short:
        _BY_NAME[_cls.short.lower()] = _cls


def strategy_class(name: str) -> type[Strategy]:
    """The strategy class of a name or short name (case-insensitive)."""
    try:
        return _BY_NAME[name.lower()]
    except KeyError:
        known = ", ".join(f"{c.name} ({c.short})" if c.short else c.name for c in STRATEGIES)
        raise ValueError(f"unknown strategy {name!r}; known: {known}") from None


def make_strategy(name: str, seed: int | None = None, **params: Any) -> Strategy:
    """A strategy by name or short name, e.g. ``make_strategy("GTFT", p=0.1)``."""
    return strategy_class(name)(seed=seed, **params)


def as_strategy(obj: Strategy | str | type[Strategy]) -> Strategy:
    """An instance from an instance, a class or a name."""
    if isinstance(obj, Strategy):
        return obj
    if isinstance(obj, type) and issubclass(obj, Strategy):
        return obj()
    if isinstance(obj, str):
        return make_strategy(obj)
    raise TypeError(f"not a strategy: {obj!r}")


HISTORY_DEPTH = 2
"""The window ``H`` every strategy of the library needs (unbounded memory goes through the
``their_defected`` flag)."""


def history_depth(strategies: list[Strategy] | list[type[Strategy]] | None = None) -> int:
    """The smallest window serving every given strategy (default: the whole library), at
    least 1. Infinite memory depths are served by the ``their_defected`` flag."""
    items = STRATEGIES if strategies is None else strategies
    depths = [s.classifier["memory_depth"] for s in items]
    return max([1, *(int(d) for d in depths if math.isfinite(d))])


class History:
    """The recent moves of a batch of pairs, as both sides see them.

    ``my`` and ``their`` are ``(n_pairs, depth)`` move windows (most recent last) from the
    first player's side, ``t`` the rounds played, ``my_defected`` / ``their_defected`` whether
    each side has ever defected. The second player's view is the same arrays swapped.
    """

    def __init__(self, n_pairs: int, depth: int = HISTORY_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"History: depth must be >= 1, got {depth}")
        self.my = np.zeros((n_pairs, depth), dtype=MOVE_DTYPE)
        self.their = np.zeros((n_pairs, depth), dtype=MOVE_DTYPE)
        self.t = np.zeros(n_pairs, dtype=np.int64)
        self.my_defected = np.zeros(n_pairs, dtype=bool)
        self.their_defected = np.zeros(n_pairs, dtype=bool)

    def push(self, my_move: np.ndarray, their_move: np.ndarray) -> None:
        """Record one round for every pair."""
        for window, move, flag in ((self.my, my_move, self.my_defected),
                                   (self.their, their_move, self.their_defected)):
            window[:, :-1] = window[:, 1:]
            window[:, -1] = move
            flag |= np.asarray(move) == D
        self.t += 1
