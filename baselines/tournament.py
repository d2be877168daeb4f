"""Matches and round-robin tournaments of the iterated prisoner's dilemma, vectorised.

A tournament is ONE simulation: every match (each pair of players, self-play included) times
every repetition is a row of a few arrays, and the only Python loop is over turns (plus, inside
a turn, one :meth:`~baselines.strategies.Strategy.decide` call per player, on the contiguous
slice of rows where that player moves). The rows are stacked from both sides (``2 × matches ×
repetitions`` player-rows, sorted by player so each player's rows are a view), each with the
index of its opponent's row.

Payoffs are ``(R, S, T, P)``: reward for mutual cooperation, sucker's payoff, temptation,
punishment for mutual defection; :data:`PAYOFF_PRESETS` names the classic ``(3, 0, 5, 1)``,
the LLM study's ``(2, -1, 3, 0)`` (CC 2/2, CD −1/3, DC 3/−1, DD 0/0) and its prison-years
framing ``(-1, -10, 0, -5)``: the presets of ``dilemma-v0``, in this order.

Noise flips every played move independently with probability ``noise``; the flipped move is
what both players record and what is scored (as in the Axelrod library). All randomness (noise
and stochastic strategies) comes from one ``numpy.random.default_rng(seed)``, so a run is a
function of its arguments.

Example:
    >>> m = play_match("TFT", "AD", turns=6)
    >>> m.moves_a.tolist(), m.moves_b.tolist(), m.scores
    ([0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], (5.0, 10.0))
    >>> r = round_robin(["TFT", "AD", "AC"], turns=10, repetitions=2)
    >>> r.names, float(r.payoff_matrix[0][2]), r.ranked_names
    (['TFT', 'AD', 'AC'], 3.0, ['AD', 'TFT', 'AC'])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from baselines.strategies import MOVE_DTYPE, D, Strategy, as_strategy, history_depth
from envs.dilemma import PAYOFF_PRESETS as DILEMMA_PRESETS
from envs.dilemma import DilemmaPayoff

PAYOFF_PRESETS: dict[str, tuple[float, float, float, float]] = {
    name: DilemmaPayoff(preset=name).rstp() for name in DILEMMA_PRESETS}
"""Named ``(R, S, T, P)`` payoffs, the presets of ``dilemma-v0`` (one table,
:data:`envs.dilemma.PAYOFF_PRESETS`): ``classic`` (Axelrod's ``(3, 0, 5, 1)``), ``llm_study``
(CC 2/2, CD −1/3, DC 3/−1, DD 0/0) and ``prison_years`` (minus the years in prison of the
study's prompt: ``(-1, -10, 0, -5)``)."""

DEFAULT_PAYOFFS = PAYOFF_PRESETS["classic"]

Payoffs = tuple[float, float, float, float] | str


def resolve_payoffs(payoffs: Payoffs) -> tuple[float, float, float, float]:
    """``(R, S, T, P)`` from a tuple or a preset name."""
    if isinstance(payoffs, str):
        try:
            return PAYOFF_PRESETS[payoffs]
        except KeyError:
            raise ValueError(f"unknown payoff preset {payoffs!r}; known: "
                             f"{sorted(PAYOFF_PRESETS)}") from None
    values = tuple(float(v) for v in payoffs)
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ValueError(f"payoffs must be four finite numbers (R, S, T, P), got {payoffs!r}")
    return values  # type: ignore[return-value]


def parse_payoffs(text: str) -> tuple[float, float, float, float]:
    """``(R, S, T, P)`` from a preset name or four comma-separated numbers ``"R,S,T,P"``
    (what the command line takes).

    Example:
        >>> parse_payoffs("llm_study"), parse_payoffs("4, 0, 6, 1")
        ((2.0, -1.0, 3.0, 0.0), (4.0, 0.0, 6.0, 1.0))
    """
    text = text.strip()
    if text in PAYOFF_PRESETS:
        return PAYOFF_PRESETS[text]
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ValueError(f"expected a preset ({', '.join(PAYOFF_PRESETS)}) or four finite "
                         f"numbers R,S,T,P; got {text!r}")
    return values  # type: ignore[return-value]


def _payoff_table(payoffs: Payoffs) -> np.ndarray:
    r, s, t, p = resolve_payoffs(payoffs)
    return np.array([[r, s], [t, p]], dtype=np.float64)  # [my move][their move] -> my payoff


@dataclass
class _Sim:
    score: np.ndarray        # (rows,) total payoff of each player-row
    coop: np.ndarray         # (rows,) number of C moves
    moves: np.ndarray | None  # (turns, rows) if recorded


def _simulate(players: Sequence[Strategy], side_a: np.ndarray, side_b: np.ndarray, *,
              turns: int, noise: float, rng: np.random.Generator, payoffs: Payoffs,
              record: bool = False) -> tuple[_Sim, np.ndarray]:
    """Play matches ``side_a[k]`` vs ``side_b[k]`` (player indices) for ``turns`` turns.

    Returns the simulation's per-player-row totals and ``where``: ``(2, n_matches)`` the row of
    each match's A side and B side.
    """
    if turns < 0:
        raise ValueError(f"turns must be >= 0, got {turns}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    table = _payoff_table(payoffs)
    m = len(side_a)
    owner = np.concatenate([side_a, side_b])           # player of each unsorted row
    order = np.argsort(owner, kind="stable")           # sorted row k is unsorted row order[k]
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    opp_unsorted = np.concatenate([np.arange(m, 2 * m), np.arange(m)])
    opp = inv[opp_unsorted[order]]                     # sorted row of each row's opponent
    sorted_owner = owner[order]
    bounds = np.searchsorted(sorted_owner, np.arange(len(players) + 1))
    slices = [(players[i], slice(bounds[i], bounds[i + 1])) for i in range(len(players))
              if bounds[i + 1] > bounds[i]]

    n = 2 * m
    depth = history_depth(players)
    my = np.zeros((n, depth), dtype=MOVE_DTYPE)
    their = np.zeros((n, depth), dtype=MOVE_DTYPE)
    their_defected = np.zeros(n, dtype=bool)
    t = np.zeros(n, dtype=np.int64)
    moves = np.empty(n, dtype=MOVE_DTYPE)
    score = np.zeros(n, dtype=np.float64)
    coop = np.zeros(n, dtype=np.int64)
    log = np.empty((turns, n), dtype=MOVE_DTYPE) if record else None
    for turn in range(turns):
        for player, sl in slices:
            moves[sl] = player.decide(my[sl], their[sl], t[sl], rng,
                                      their_defected=their_defected[sl])
        if noise > 0.0:
            moves ^= (rng.random(n) < noise).astype(MOVE_DTYPE)
        opp_moves = moves[opp]
        score += table[moves, opp_moves]
        coop += moves == 0
        if depth > 1:
            my[:, :-1] = my[:, 1:]
            their[:, :-1] = their[:, 1:]
        my[:, -1] = moves
        their[:, -1] = opp_moves
        their_defected |= opp_moves == D
        t += 1
        if log is not None:
            log[turn] = moves
    where = inv[np.stack([np.arange(m), np.arange(m, 2 * m)])]
    return _Sim(score, coop, log), where


@dataclass
class MatchResult:
    """One match: the played moves (after noise) and total payoffs of both sides."""

    names: tuple[str, str]
    moves_a: np.ndarray      # (turns,) 0 = C, 1 = D
    moves_b: np.ndarray
    scores: tuple[float, float]  # totals over the match
    turns: int

    @property
    def per_turn(self) -> tuple[float, float]:
        """Mean payoff per turn of each side."""
        n = max(self.turns, 1)
        return self.scores[0] / n, self.scores[1] / n

    @property
    def cooperation(self) -> tuple[float, float]:
        """Fraction of turns each side cooperated."""
        n = max(self.turns, 1)
        return float((self.moves_a == 0).sum()) / n, float((self.moves_b == 0).sum()) / n


def play_match(a: Strategy | str, b: Strategy | str, turns: int = 200, noise: float = 0.0,
               seed: int | None = 0, payoffs: Payoffs = DEFAULT_PAYOFFS) -> MatchResult:
    """Play one match of ``a`` against ``b`` (instances, classes or names)."""
    pa, pb = as_strategy(a), as_strategy(b)
    sim, where = _simulate([pa, pb], np.array([0]), np.array([1]), turns=turns, noise=noise,
                           rng=np.random.default_rng(seed), payoffs=payoffs, record=True)
    ra, rb = int(where[0, 0]), int(where[1, 0])
    assert sim.moves is not None
    return MatchResult((pa.label, pb.label), sim.moves[:, ra].copy(), sim.moves[:, rb].copy(),
                       (float(sim.score[ra]), float(sim.score[rb])), turns)


@dataclass
class TournamentResult:
    """A round robin's results; ``i``, ``j`` index ``names``.

    * ``payoff_matrix[i][j]``: mean per-turn payoff of ``i`` against ``j`` (over repetitions;
      on the diagonal, over both sides of the self-play match);
    * ``match_payoffs[i, j, r]``: the same for repetition ``r`` alone;
    * ``cooperation_matrix[i][j]``: the fraction of turns ``i`` cooperated against ``j``;
    * ``mean_payoff[i]``, ``cooperation_rate[i]``: means over the opponents ``j != i``
      (self-play excluded; with a single player, its self-play);
    * ``ranking``: player indices by ``mean_payoff``, best first (ties by index);
    * ``wins[i]``: matches (over opponents ``j != i`` and repetitions) where ``i`` scored more.
    """

    names: list[str]
    payoff_matrix: np.ndarray
    match_payoffs: np.ndarray
    cooperation_matrix: np.ndarray
    mean_payoff: np.ndarray
    cooperation_rate: np.ndarray
    ranking: list[int]
    wins: np.ndarray
    turns: int
    repetitions: int
    noise: float
    payoffs: tuple[float, float, float, float]
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ranked_names(self) -> list[str]:
        return [self.names[i] for i in self.ranking]

    def csv_text(self) -> str:
        """The ranked table as CSV: rank, strategy, mean_payoff, cooperation, wins, then one
        column per opponent (the payoff matrix row of the strategy), full precision.

        Example:
            >>> r = round_robin(["AC", "AD"], turns=10, repetitions=1)
            >>> print(r.csv_text(), end="")
            rank,strategy,mean_payoff,cooperation,wins,AC,AD
            1,AD,5.0,0.0,1,5.0,1.0
            2,AC,0.0,1.0,0,3.0,0.0
        """
        lines = [",".join(["rank", "strategy", "mean_payoff", "cooperation", "wins",
                           *self.names])]
        for rank, i in enumerate(self.ranking, 1):
            row = [str(rank), self.names[i], repr(float(self.mean_payoff[i])),
                   repr(float(self.cooperation_rate[i])), str(int(self.wins[i])),
                   *(repr(float(v)) for v in self.payoff_matrix[i])]
            lines.append(",".join(row))
        return "\n".join(lines) + "\n"

    def matrix_csv_text(self) -> str:
        """The payoff matrix as CSV, in the order of ``names``: row ``i``, column ``j`` is the
        mean per-turn payoff of ``i`` against ``j``.

        Example:
            >>> r = round_robin(["AC", "AD"], turns=10, repetitions=1)
            >>> print(r.matrix_csv_text(), end="")
            strategy,AC,AD
            AC,3.0,0.0
            AD,5.0,1.0
        """
        lines = [",".join(["strategy", *self.names])]
        for name, row in zip(self.names, self.payoff_matrix):
            lines.append(",".join([name, *(repr(float(v)) for v in row)]))
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """Write a heatmap of the payoff matrix (rows and columns in ranking order, every
        cell annotated) to ``path`` (PNG). Needs matplotlib (``distsafe[analysis]``)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        order = self.ranking
        names = [self.names[i] for i in order]
        matrix = self.payoff_matrix[np.ix_(order, order)]
        k = len(names)
        size = 1.6 + 0.75 * k
        fig = Figure(figsize=(size + 1.2, size))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        image = ax.imshow(matrix, cmap="viridis")
        fig.colorbar(image, ax=ax, label="mean payoff per turn")
        ax.set_xticks(range(k), names, rotation=45, ha="right")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("opponent")
        ax.set_ylabel("strategy (ranked)")
        middle = (float(matrix.min()) + float(matrix.max())) / 2
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if matrix[i, j] > middle else "white")
        r, s, t, p = self.payoffs
        ax.set_title(f"payoff of row vs column: {self.turns} turns, {self.repetitions} "
                     f"repetitions, noise {self.noise:g}\n(R, S, T, P) = ({r:g}, {s:g}, {t:g}, "
                     f"{p:g})", fontsize=9)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=110)
        return path

    def save(self, out: str | Path, plot: bool = False) -> list[Path]:
        """Write ``tournament.csv`` (:meth:`csv_text`), ``payoff_matrix.csv``
        (:meth:`matrix_csv_text`) and, with ``plot``, ``payoff_matrix.png`` (:meth:`plot`)
        into the folder ``out`` (created if missing; these files are replaced)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "tournament.csv", out / "payoff_matrix.csv"]
        for path, text in zip(written, (self.csv_text(), self.matrix_csv_text())):
            tmp = path.with_name(f".{path.name}.tmp")  # beside, then renamed into place
            tmp.write_text(text, newline="")
            os.replace(tmp, path)
        if plot:
            written.append(self.plot(out / "payoff_matrix.png"))
        return written

    def table(self, digits: int = 3) -> str:
        """A Markdown table: rank, name, mean payoff, cooperation, wins, then the matrix."""
        head = ["rank", "strategy", "mean payoff", "cooperation", "wins", *self.names]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for rank, i in enumerate(self.ranking, 1):
            row = [str(rank), self.names[i], f"{self.mean_payoff[i]:.{digits}f}",
                   f"{self.cooperation_rate[i]:.{digits}f}", str(int(self.wins[i])),
                   *(f"{v:.{digits}f}" for v in self.payoff_matrix[i])]
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines)


def round_robin(strategies: Sequence[Strategy | str], turns: int = 200, repetitions: int = 10,
                noise: float = 0.0, seed: int | None = 0,
                payoffs: Payoffs = DEFAULT_PAYOFFS) -> TournamentResult:
    """Every player against every player (self-play included), ``repetitions`` times, as one
    vectorised simulation. Players are instances, classes or names; names in the result are
    their short names (or names), suffixed ``#k`` where a label repeats."""
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    players = [as_strategy(s) for s in strategies]
    k = len(players)
    if k == 0:
        raise ValueError("round_robin: need at least one strategy")
    labels = [p.label for p in players]
    names = [lab if labels.count(lab) == 1 else f"{lab}#{labels[:i].count(lab)}"
             for i, lab in enumerate(labels)]
    ii, jj = np.triu_indices(k)                        # i <= j: self-play included
    side_a = np.repeat(ii, repetitions)               # match (pair p, rep r) is row p*reps + r
    side_b = np.repeat(jj, repetitions)
    sim, where = _simulate(players, side_a, side_b, turns=turns, noise=noise,
                           rng=np.random.default_rng(seed), payoffs=payoffs)
    n_pairs = ii.size
    denom = max(turns, 1)
    score_a = (sim.score[where[0]] / denom).reshape(n_pairs, repetitions)
    score_b = (sim.score[where[1]] / denom).reshape(n_pairs, repetitions)
    coop_a = (sim.coop[where[0]] / denom).reshape(n_pairs, repetitions).mean(axis=1)
    coop_b = (sim.coop[where[1]] / denom).reshape(n_pairs, repetitions).mean(axis=1)

    match_payoffs = np.zeros((k, k, repetitions))
    coop = np.zeros((k, k))
    wins = np.zeros(k, dtype=np.int64)
    off = ii != jj
    match_payoffs[ii[off], jj[off]] = score_a[off]
    match_payoffs[jj[off], ii[off]] = score_b[off]
    diag = ~off
    match_payoffs[ii[diag], ii[diag]] = (score_a[diag] + score_b[diag]) / 2
    coop[ii[off], jj[off]] = coop_a[off]
    coop[jj[off], ii[off]] = coop_b[off]
    coop[ii[diag], ii[diag]] = (coop_a[diag] + coop_b[diag]) / 2
    np.add.at(wins, ii[off], (score_a[off] > score_b[off]).sum(axis=1))
    np.add.at(wins, jj[off], (score_b[off] > score_a[off]).sum(axis=1))

    payoff_matrix = match_payoffs.mean(axis=2)
    if k > 1:
        others = ~np.eye(k, dtype=bool)
        mean_payoff = (payoff_matrix * others).sum(axis=1) / (k - 1)
        cooperation_rate = (coop * others).sum(axis=1) / (k - 1)
    else:
        mean_payoff, cooperation_rate = payoff_matrix[:, 0].copy(), coop[:, 0].copy()
    ranking = sorted(range(k), key=lambda i: (-mean_payoff[i], i))
    return TournamentResult(names, payoff_matrix, match_payoffs, coop, mean_payoff,
                            cooperation_rate, ranking, wins, turns, repetitions, noise,
                            resolve_payoffs(payoffs), seed)
