"""Evolutionary dynamics of prisoner's-dilemma strategies: the Moran process and imitation.

Both dynamics read one payoff matrix ``A``: ``A[i, j]`` is the mean per-turn payoff of
strategy ``i`` against strategy ``j``, the :attr:`~baselines.tournament.TournamentResult.
payoff_matrix` of ONE :func:`~baselines.tournament.round_robin` over the given strategies,
played once, before the dynamics start, with the same ``turns``, ``repetitions``, ``noise``,
``payoffs`` and ``seed``. It is the *expected* payoff of a match (for stochastic strategies or
noise, estimated by the mean over ``repetitions``): individuals do not play fresh matches at
every step. ``A[i, i]`` (self-play) is what two different individuals of the same strategy get
against each other.

**Moran process** (:func:`moran_process`, :func:`moran_fixation`): a well-mixed population of
``N`` individuals. An individual of strategy ``i`` has payoff
``pi_i = (sum_j A[i, j] n_j - A[i, i]) / (N - 1)`` (``n_j`` individuals of strategy ``j``): its
mean payoff against every *other* individual. Its fitness is

    ``f_i = 1 - w + w (pi_i - m)``, with ``m = min(0, min A)``,

``w`` the intensity of selection ``selection`` in ``[0, 1]`` (``1``: fitness is the payoff;
``0``: neutral drift). The shift ``m`` is zero when no payoff is negative (the ``classic``
preset) and otherwise moves the smallest payoff of the matrix to zero (the ``llm_study`` preset,
``S = -1``: every payoff is raised by 1), so no fitness is negative. One step (birth-death,
Moran 1958 as in Nowak's *Evolutionary Dynamics*): one individual is chosen to reproduce with
probability proportional to its fitness (uniformly if every fitness is zero), one individual
is chosen uniformly among all ``N`` to die (it may be the parent itself; the step then changes
nothing), and the offspring, of the parent's strategy, takes its place. With ``mutation``
``mu > 0`` the offspring is, with probability ``mu``, of another strategy (uniform among the
others). Choosing the dying individual among the ``N - 1`` others instead would only rescale
time: the ratio of the down- and up-step probabilities, hence every fixation probability, is
the same (:func:`fixation_probability` gives them exactly for two strategies).

**Imitation dynamics** (:func:`imitation_dynamics`): agents on a network
(:class:`envs.core.network.Network`; edge weights are ignored, each edge counts once). Every
generation, each agent's payoff is the *sum* over its neighbours of ``A[own, neighbour's]``
(so better-connected agents earn more, as in Santos and Pacheco's scale-free studies); then
every agent at once either compares itself with one uniformly chosen neighbour and copies its
strategy with the Fermi probability ``1 / (1 + exp(-beta (pi_j - pi_i)))`` (``rule="fermi"``),
or copies its best-scoring neighbour if that neighbour earned strictly more than itself
(``rule="best"``; ties among the best neighbours are broken at random). Agents without
neighbours keep their strategy.

Every function is a function of its arguments: the same arguments and ``seed`` give the same
result (the round robin uses ``seed``; the dynamics draw from a stream derived from it).

Example:
    >>> r = moran_process(["AD", "AC"], [1, 9], seed=3)
    >>> r.fixated, r.shares.shape[1], r.shares[0].tolist()
    ('AD', 2, [0.1, 0.9])
    >>> bool(np.allclose(r.shares.sum(axis=1), 1.0))
    True
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from baselines.strategies import Strategy, strategy_class
from baselines.tournament import Payoffs, resolve_payoffs, round_robin
from envs.core.network import Network, NetworkConfig

__all__ = [
    "FixationResult",
    "ImitationResult",
    "MoranResult",
    "RULES",
    "agent_payoffs",
    "fixation_probability",
    "imitation_dynamics",
    "moran_fixation",
    "moran_process",
]

RULES = ("fermi", "best")
"""The update rules of :func:`imitation_dynamics`."""

_DYNAMICS_STREAM = 1  # spawn key of the dynamics' random stream (the round robin uses seed)


# --------------------------------------------------------------------------- argument checks
def _count(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int ``>= minimum`` (ints only: no bools, floats or strings)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}; received {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {value!r}") from None
    if out < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {out}")
    return int(out)


def _unit(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1]``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1]; received {value!r}") from None
    if isinstance(value, bool) or not 0.0 <= out <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; received {value!r}")
    return out


def _seed(seed: Any) -> int | None:
    return None if seed is None else _count(seed, "seed", 0)


def _check_strategies(strategies: Any) -> list[Strategy | str | type[Strategy]]:
    """The strategies as a list, each a known name, a class or an instance."""
    if isinstance(strategies, (str, bytes)) or not isinstance(strategies, Sequence):
        raise ValueError("strategies must be a list of strategy names, classes or instances; "
                         f"received {strategies!r}")
    if len(strategies) == 0:
        raise ValueError("strategies must name at least one strategy; received []")
    out = list(strategies)
    for pos, s in enumerate(out):
        if isinstance(s, str):
            try:
                strategy_class(s)
            except ValueError as e:
                raise ValueError(f"strategies[{pos}]: {e}") from None
        elif not (isinstance(s, Strategy) or (isinstance(s, type) and issubclass(s, Strategy))):
            raise ValueError(f"strategies[{pos}] must be a strategy name, class or instance; "
                             f"received {s!r}")
    return out


def _check_counts(counts: Any, k: int, name: str = "counts") -> np.ndarray:
    """One non-negative integer per strategy, as an int64 array."""
    if isinstance(counts, (str, bytes)) or not isinstance(counts, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a list of {k} non-negative integers (one per "
                         f"strategy); received {counts!r}")
    values = list(counts)
    if len(values) != k:
        raise ValueError(f"{name} must give one count per strategy ({k}); received "
                         f"{len(values)} values")
    return np.array([_count(v, f"{name}[{pos}]", 0) for pos, v in enumerate(values)],
                    dtype=np.int64)


def _payoff_matrix(strategies: list, *, turns: Any, repetitions: Any, noise: Any,
                   payoffs: Payoffs, seed: int | None) -> tuple[list[str], np.ndarray]:
    """Names and payoff matrix of one round robin (arguments checked, named on error)."""
    turns = _count(turns, "turns", 1)
    repetitions = _count(repetitions, "repetitions", 1)
    noise = _unit(noise, "noise")
    try:
        resolve_payoffs(payoffs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"payoffs: {e}") from None
    result = round_robin(strategies, turns=turns, repetitions=repetitions, noise=noise,
                         seed=seed, payoffs=payoffs)
    return result.names, result.payoff_matrix


def _dynamics_rng(seed: int | None) -> np.random.Generator:
    """The dynamics' random stream: independent of the round robin's ``default_rng(seed)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_DYNAMICS_STREAM,)))


def _fitness_shift(matrix: np.ndarray) -> float:
    """``m = min(0, min A)``: subtracted from payoffs so that no fitness is negative."""
    return min(0.0, float(np.min(matrix)))


# --------------------------------------------------------------------------- Moran process
@dataclass
class MoranResult:
    """One run of the Moran process (see :func:`moran_process`).

    Attributes:
        names: the strategies' labels (as in the round robin).
        counts: ``(k,)`` the initial number of individuals of each strategy.
        shares: ``(steps + 1, k)`` the population share of each strategy before the first
            step (row 0) and after every step; each row sums to 1.
        fixated: the strategy that took the whole population, or ``None`` (none did within
            ``max_steps``, or ``mutation > 0``, where no state is final).
        fixation_step: the step at which it did (``0``: the population started fixated).
        payoff_matrix: ``(k, k)`` the round robin's mean per-turn payoffs ``A``.
        fitness_shift: ``m = min(0, min A)``, subtracted from every payoff.
        selection: the intensity of selection ``w``.
        mutation: the mutation probability per birth.
    """

    names: list[str]
    counts: np.ndarray
    shares: np.ndarray
    fixated: str | None
    fixation_step: int | None
    payoff_matrix: np.ndarray
    fitness_shift: float
    selection: float
    mutation: float

    @property
    def steps(self) -> int:
        """How many steps were taken."""
        return int(self.shares.shape[0] - 1)

    @property
    def population(self) -> int:
        """The number of individuals ``N``."""
        return int(self.counts.sum())

    def summary(self) -> str:
        """One line: who fixated when, or the final shares."""
        if self.fixated is not None:
            return f"{self.fixated} fixated after {self.fixation_step} steps"
        final = ", ".join(f"{n} {s:.3f}" for n, s in zip(self.names, self.shares[-1]))
        return f"no fixation after {self.steps} steps; final shares: {final}"


@dataclass
class FixationResult:
    """Many independent Moran runs from the same start (see :func:`moran_fixation`).

    Attributes:
        names: the strategies' labels.
        counts: ``(k,)`` the initial counts (the same in every run).
        runs: how many independent runs.
        winners: ``(runs,)`` index of the strategy that fixated in each run, ``-1`` if none
            did within ``max_steps``.
        fixation_steps: ``(runs,)`` the step of each run's fixation, ``-1`` if none.
        probabilities: ``(k,)`` the fraction of runs each strategy fixated in (over all runs,
            unfixed ones included).
        stderr: ``(k,)`` the binomial standard error ``sqrt(p (1 - p) / runs)`` of each.
        payoff_matrix, fitness_shift, selection: as in :class:`MoranResult`.
    """

    names: list[str]
    counts: np.ndarray
    runs: int
    winners: np.ndarray
    fixation_steps: np.ndarray
    probabilities: np.ndarray
    stderr: np.ndarray
    payoff_matrix: np.ndarray
    fitness_shift: float
    selection: float

    @property
    def population(self) -> int:
        """The number of individuals ``N``."""
        return int(self.counts.sum())

    @property
    def neutral(self) -> np.ndarray:
        """The fixation probabilities of neutral drift: the initial shares ``n_i / N``."""
        return self.counts / self.counts.sum()

    @property
    def unfixed(self) -> int:
        """Runs in which no strategy fixated within ``max_steps``."""
        return int((self.winners < 0).sum())

    @property
    def mean_fixation_step(self) -> np.ndarray:
        """``(k,)`` the mean step of fixation of the runs each strategy won (``nan``: none)."""
        out = np.full(len(self.names), np.nan)
        for i in range(len(self.names)):
            won = self.winners == i
            if won.any():
                out[i] = float(self.fixation_steps[won].mean())
        return out

    def table(self, digits: int = 3) -> str:
        """A Markdown table: strategy, initial count, fixation probability ± SE, neutral."""
        lines = ["| strategy | initial | fixation probability | stderr | neutral |",
                 "|---|---|---|---|---|"]
        for i, name in enumerate(self.names):
            lines.append(f"| {name} | {int(self.counts[i])} | {self.probabilities[i]:.{digits}f}"
                         f" | {self.stderr[i]:.{digits}f} | {self.neutral[i]:.{digits}f} |")
        return "\n".join(lines)


def _moran_steps(matrix: np.ndarray, counts: np.ndarray, *, selection: float, mutation: float,
                 max_steps: int, rng: np.random.Generator, record: bool
                 ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """Run independent Moran processes, one per row of ``counts`` (``(runs, k)``, changed in
    place), all steps at once over the runs still going.

    Returns ``(winner, step)`` per run (``-1``: no fixation) and, with ``record``, the counts
    of run 0 before the first step and after every step.
    """
    runs, k = counts.shape
    n = int(counts[0].sum())
    shift = _fitness_shift(matrix)
    diag = np.diag(matrix)
    winner = np.full(runs, -1, dtype=np.int64)
    step_of = np.full(runs, -1, dtype=np.int64)
    if mutation == 0.0:
        done = counts.max(axis=1) == n
        winner[done] = counts[done].argmax(axis=1)
        step_of[done] = 0
        active = np.flatnonzero(~done)
    else:
        active = np.arange(runs)
    history = [counts[0].copy()] if record else None
    draws = 4 if mutation > 0.0 else 2
    for step in range(1, max_steps + 1):
        if active.size == 0:
            break
        c = counts[active]
        payoff = (c @ matrix.T - diag) / (n - 1)            # (m, k) of an individual of type i
        weight = c * (1.0 - selection + selection * (payoff - shift))
        cum = np.cumsum(weight, axis=1)
        flat = cum[:, -1] <= 0.0                            # every fitness zero: uniform
        if flat.any():
            cum[flat] = np.cumsum(c[flat], axis=1)
        total = cum[:, -1]
        u = rng.random((active.size, draws))
        x = np.minimum(u[:, 0] * total, np.nextafter(total, 0.0))
        parent = (cum <= x[:, None]).sum(axis=1)
        dead = (np.cumsum(c, axis=1) <= np.floor(u[:, 1] * n)[:, None]).sum(axis=1)
        child = parent
        if draws == 4:
            other = (parent + 1 + np.floor(u[:, 3] * (k - 1)).astype(np.int64)) % k
            child = np.where(u[:, 2] < mutation, other, parent)
        counts[active, child] += 1
        counts[active, dead] -= 1
        if history is not None:
            history.append(counts[0].copy())
        if mutation == 0.0:
            fixed = counts[active, child] == n
            winner[active[fixed]] = child[fixed]
            step_of[active[fixed]] = step
            active = active[~fixed]
    return winner, step_of, history


def _moran_setup(strategies: Any, counts: Any, *, turns: Any, repetitions: Any, noise: Any,
                 payoffs: Payoffs, seed: Any, max_steps: Any, selection: Any
                 ) -> tuple[list[str], np.ndarray, np.ndarray, int, float, int | None]:
    items = _check_strategies(strategies)
    c = _check_counts(counts, len(items))
    n = int(c.sum())
    if n < 2:
        raise ValueError(f"counts must add up to a population of at least 2; received "
                         f"{c.tolist()}")
    w = _unit(selection, "selection")
    steps = 100 * n * n if max_steps is None else _count(max_steps, "max_steps", 0)
    seed = _seed(seed)
    names, matrix = _payoff_matrix(items, turns=turns, repetitions=repetitions, noise=noise,
                                   payoffs=payoffs, seed=seed)
    return names, matrix, c, steps, w, seed


def moran_process(strategies: Sequence[Strategy | str], counts: Sequence[int], *,
                  turns: int = 200, repetitions: int = 10, noise: float = 0.0,
                  payoffs: Payoffs = "classic", seed: int | None = 0,
                  max_steps: int | None = None, mutation: float = 0.0,
                  selection: float = 1.0) -> MoranResult:
    """One run of the Moran birth-death process on a well-mixed population.

    The payoff matrix is ``round_robin(strategies, turns, repetitions, noise, seed,
    payoffs).payoff_matrix``; fitness and the step are defined in the module docstring.

    Args:
        strategies: the strategy types (names such as ``"TFT"``, classes or instances).
        counts: the initial number of individuals of each type (a type may start at 0 and
            only appear by mutation); ``N = sum(counts) >= 2``.
        turns, repetitions, noise, payoffs: the round robin's settings (``turns >= 1``).
        seed: seeds the round robin and the process (``None``: fresh entropy).
        max_steps: stop after this many steps (default ``100 N**2``, far beyond the expected
            fixation time, which is of order ``N**2`` steps under neutral drift).
        mutation: probability that an offspring is of another type (uniform among the others);
            with ``mutation > 0`` the run always takes ``max_steps`` steps.
        selection: the intensity of selection ``w`` in ``[0, 1]``.

    Returns:
        A :class:`MoranResult` (shares over time, who fixated and when, the matrix used).

    Raises:
        ValueError: an unknown strategy, counts that do not match the strategies, a
            population below 2, ``turns`` or ``repetitions`` below 1, ``noise``,
            ``mutation`` or ``selection`` outside ``[0, 1]``, unknown payoffs.

    Example:
        >>> r = moran_process(["TFT", "AD"], [9, 1], seed=0)
        >>> r.fixated, r.fixation_step, r.shares[-1].tolist()
        ('TFT', 5, [1.0, 0.0])
    """
    names, matrix, c, steps, w, seed = _moran_setup(
        strategies, counts, turns=turns, repetitions=repetitions, noise=noise,
        payoffs=payoffs, seed=seed, max_steps=max_steps, selection=selection)
    mu = _unit(mutation, "mutation")
    if mu > 0.0 and len(names) < 2:
        raise ValueError("mutation > 0 needs at least two strategies to mutate between")
    state = c[None, :].copy()
    winner, step_of, history = _moran_steps(matrix, state, selection=w, mutation=mu,
                                            max_steps=steps, rng=_dynamics_rng(seed),
                                            record=True)
    assert history is not None
    shares = np.array(history, dtype=np.float64) / c.sum()
    won = int(winner[0])
    return MoranResult(names, c, shares, names[won] if won >= 0 else None,
                       int(step_of[0]) if won >= 0 else None, matrix, _fitness_shift(matrix),
                       w, mu)


def moran_fixation(strategies: Sequence[Strategy | str], counts: Sequence[int], *,
                   runs: int = 1000, turns: int = 200, repetitions: int = 10,
                   noise: float = 0.0, payoffs: Payoffs = "classic", seed: int | None = 0,
                   max_steps: int | None = None, selection: float = 1.0) -> FixationResult:
    """Fixation probabilities of the Moran process, from ``runs`` independent runs at once.

    Every run starts from ``counts`` and uses the same payoff matrix (one round robin); the
    runs are rows of arrays advanced together, one vectorised step for all runs still going
    (no loop over runs). Without mutation every run ends in fixation, with probability 1,
    unless it reaches ``max_steps`` first.

    Args:
        strategies, counts, turns, repetitions, noise, payoffs, seed, max_steps, selection:
            as in :func:`moran_process`.
        runs: the number of independent runs, >= 1.

    Returns:
        A :class:`FixationResult`: per strategy, the fraction of runs it fixated in and the
        standard error, plus each run's winner and fixation step.

    Example:
        >>> f = moran_fixation(["AD", "AC"], [1, 19], runs=400, seed=1)
        >>> f.names, bool(f.probabilities[0] > 5 * f.neutral[0])   # AD invades AC
        (['AD', 'AC'], True)
        >>> float(f.probabilities.sum()), f.unfixed
        (1.0, 0)
    """
    runs = _count(runs, "runs", 1)
    names, matrix, c, steps, w, seed = _moran_setup(
        strategies, counts, turns=turns, repetitions=repetitions, noise=noise,
        payoffs=payoffs, seed=seed, max_steps=max_steps, selection=selection)
    state = np.repeat(c[None, :], runs, axis=0)
    winner, step_of, _ = _moran_steps(matrix, state, selection=w, mutation=0.0,
                                      max_steps=steps, rng=_dynamics_rng(seed), record=False)
    k = len(names)
    p = np.bincount(winner[winner >= 0], minlength=k) / runs
    se = np.sqrt(p * (1.0 - p) / runs)
    return FixationResult(names, c, runs, winner, step_of, p, se, matrix,
                          _fitness_shift(matrix), w)


def fixation_probability(payoff_matrix: Any, population: int, mutants: int = 1, *,
                         selection: float = 1.0) -> float:
    """The exact probability that strategy 0 takes over in the two-strategy Moran process.

    The population holds ``mutants`` individuals of strategy 0 and ``population - mutants``
    of strategy 1; fitness is that of :func:`moran_process` (with ``m = min(0, min A)`` of this
    2 x 2 matrix). With ``P+_j`` and ``P-_j`` the probabilities that the number of strategy-0
    individuals goes from ``j`` up or down by one, ``gamma_j = P-_j / P+_j = g_j / f_j`` and

        ``rho_i = (1 + sum_{l<i} prod_{j<=l} gamma_j) / (1 + sum_{l<N} prod_{j<=l} gamma_j)``,

    here computed as the solution of the chain's tridiagonal absorption equations (which
    also covers a fitness of zero, where ``gamma_j`` is infinite).

    Args:
        payoff_matrix: ``2 x 2`` mean per-turn payoffs (e.g. a result's ``payoff_matrix``).
        population: ``N >= 2``.
        mutants: initial number of strategy-0 individuals, ``0 <= mutants <= N``.
        selection: the intensity of selection ``w`` in ``[0, 1]``.

    Example:
        >>> round(fixation_probability([[3, 3], [3, 3]], 10, 3), 12)   # neutral: 3 / 10
        0.3
        >>> round(fixation_probability([[1, 5], [0, 3]], 20), 3)   # one AD (row 0) among AC
        0.442
        >>> r = 1.5   # constant fitness r against 1: (1 - 1/r) / (1 - 1/r**N)
        >>> exact = fixation_probability([[r, r], [1, 1]], 10)
        >>> round(exact, 6), round((1 - 1 / r) / (1 - 1 / r**10), 6)
        (0.339216, 0.339216)
    """
    a = np.asarray(payoff_matrix, dtype=np.float64)
    if a.shape != (2, 2) or not np.isfinite(a).all():
        raise ValueError(f"payoff_matrix must be a 2 x 2 array of finite numbers; received "
                         f"{payoff_matrix!r}")
    n = _count(population, "population", 2)
    i = _count(mutants, "mutants", 0)
    if i > n:
        raise ValueError(f"mutants must be <= population ({n}); received {i}")
    w = _unit(selection, "selection")
    if i in (0, n):
        return float(i // n)
    shift = _fitness_shift(a)
    j = np.arange(1, n, dtype=np.float64)                   # interior states
    f = 1 - w + w * ((a[0, 0] * (j - 1) + a[0, 1] * (n - j)) / (n - 1) - shift)
    g = 1 - w + w * ((a[1, 0] * j + a[1, 1] * (n - j - 1)) / (n - 1) - shift)
    # P+_j = j f / (j f + (N-j) g) * (N-j)/N and P-_j = (N-j) g / (...) * j/N: given a change,
    # it is up with probability f / (f + g) (1/2 where both fitnesses are zero: uniform choice)
    flat = f + g <= 0.0
    f, g = np.where(flat, 1.0, f), np.where(flat, 1.0, g)
    p_up, p_down = f / (f + g), g / (f + g)
    # rho_j = p_up rho_{j+1} + p_down rho_{j-1}, rho_0 = 0, rho_N = 1
    from scipy.linalg import solve_banded

    m = n - 1
    bands = np.zeros((3, m))
    bands[0, 1:] = -p_up[:-1]              # super-diagonal
    bands[1, :] = 1.0
    bands[2, :-1] = -p_down[1:]            # sub-diagonal
    rhs = np.zeros(m)
    rhs[-1] = p_up[-1]
    rho = solve_banded((1, 1), bands, rhs)
    return float(min(1.0, max(0.0, rho[i - 1])))


# --------------------------------------------------------------------------- imitation
@dataclass
class ImitationResult:
    """A run of imitation dynamics on a network (see :func:`imitation_dynamics`).

    Attributes:
        names: the strategies' labels.
        shares: ``(generations run + 1, k)`` each strategy's share of the agents at the start
            (row 0) and after every generation; each row sums to 1.
        fixated: the strategy every agent holds at the end, or ``None``.
        fixation_generation: the generation after which it did (``0``: from the start).
        initial: ``(n_agents,)`` each agent's strategy index at the start.
        assignment: ``(n_agents,)`` each agent's strategy index at the end.
        history: ``(generations run + 1, n_agents)`` every generation's assignment, if
            asked for (``history=True``), else ``None``.
        last_payoffs: ``(n_agents,)`` each agent's payoff in the last generation played (the
            one its final strategy was chosen on); zeros if no generation was played.
        payoff_matrix: ``(k, k)`` the round robin's mean per-turn payoffs.
        network: the :class:`~envs.core.network.Network` the agents sit on.
        rule, beta: the update rule and the Fermi rule's intensity.
    """

    names: list[str]
    shares: np.ndarray
    fixated: str | None
    fixation_generation: int | None
    initial: np.ndarray
    assignment: np.ndarray
    history: np.ndarray | None
    last_payoffs: np.ndarray
    payoff_matrix: np.ndarray
    network: Network
    rule: str
    beta: float

    @property
    def generations(self) -> int:
        """How many generations were run (fewer than asked for if one strategy took all)."""
        return int(self.shares.shape[0] - 1)

    def summary(self) -> str:
        """One line: who took over when, or the final shares."""
        if self.fixated is not None:
            return f"{self.fixated} took every agent after {self.fixation_generation} generations"
        final = ", ".join(f"{n} {s:.3f}" for n, s in zip(self.names, self.shares[-1]))
        return f"no fixation after {self.generations} generations; final shares: {final}"


def agent_payoffs(network: Network, assignment: np.ndarray, payoff_matrix: np.ndarray
                  ) -> np.ndarray:
    """Each agent's payoff: the sum over its neighbours of ``A[own, neighbour's]``.

    Computed from the counts of each strategy among an agent's neighbours (``(n, k)``), summed
    in strategy order, so agents in the same situation get bitwise the same payoff.

    Example:
        >>> net = Network.from_config(NetworkConfig(topology="star"), 4)
        >>> agent_payoffs(net, np.array([1, 0, 0, 0]), np.array([[3.0, 0.0], [5.0, 1.0]]))
        array([15.,  0.,  0.,  0.])
    """
    n, k = network.n_nodes, payoff_matrix.shape[0]
    s = np.asarray(assignment, dtype=np.int64)
    neighbour_counts = np.bincount(network.src.astype(np.int64) * k + s[network.indices],
                                   minlength=n * k).reshape(n, k)
    return (neighbour_counts * payoff_matrix[s]).sum(axis=1)


def _problems(error: ValidationError) -> str:
    """A pydantic error as ``field: problem (received x)`` parts joined by ``; ``."""
    parts = []
    for err in error.errors():
        where = ".".join(map(str, err.get("loc", ())))
        text = f"{where}: {err['msg']}" if where else err["msg"]
        if "input" in err and not isinstance(err["input"], Mapping):
            text += f" (received {err['input']!r})"
        parts.append(text)
    return "; ".join(parts)


def _as_network(network: Any, n_agents: int, seed: int | None) -> Network:
    if isinstance(network, Network):
        if network.n_nodes != n_agents:
            raise ValueError(f"network has {network.n_nodes} nodes but n_agents is {n_agents}")
        return network
    if isinstance(network, Mapping):
        try:
            network = NetworkConfig(**network)
        except ValidationError as e:
            raise ValueError(f"network: {_problems(e)}") from None
        except TypeError as e:  # e.g. keys that are not strings
            raise ValueError(f"network: {e}") from None
    if not isinstance(network, NetworkConfig):
        raise ValueError("network must be a NetworkConfig, a dict of its fields (e.g. "
                         "{'topology': 'small_world', 'k': 4}) or a Network; received "
                         f"{network!r}")
    try:
        return Network.from_config(network, n_agents, seed=seed)
    except ValueError as e:  # e.g. a custom edge outside [0, n_agents)
        raise ValueError(f"network: {' '.join(str(e).split())}") from None


def _initial_counts(initial: Any, k: int, n: int) -> np.ndarray:
    """Counts per strategy from counts (integers adding up to ``n``) or shares (adding to 1).

    Shares are turned into counts by largest remainders (ties to the earlier strategy).
    """
    if initial is None:
        initial = [1.0 / k] * k
    if isinstance(initial, (str, bytes)) or not isinstance(initial, (Sequence, np.ndarray)):
        raise ValueError(f"initial must be a list of {k} counts or shares (one per strategy); "
                         f"received {initial!r}")
    values = list(initial)
    if len(values) != k:
        raise ValueError(f"initial must give one value per strategy ({k}); received "
                         f"{len(values)} values")
    integral = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    if integral:
        counts = _check_counts(values, k, "initial")
        if counts.sum() != n:
            raise ValueError(f"initial counts must add up to n_agents ({n}); received "
                             f"{counts.tolist()} (sum {int(counts.sum())})")
        return counts
    shares = np.array([_unit(v, f"initial[{pos}]") for pos, v in enumerate(values)])
    if not math.isclose(shares.sum(), 1.0, abs_tol=1e-9):
        raise ValueError(f"initial shares must add up to 1; received {shares.tolist()} (sum "
                         f"{shares.sum():g}); give counts as integers")
    exact = shares * n
    counts = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(k), -(exact - counts)))
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def _imitate_fermi(network: Network, s: np.ndarray, pi: np.ndarray, beta: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Every agent compares itself with one random neighbour; copies with Fermi probability."""
    n = network.n_nodes
    u = rng.random((2, n))
    deg = network.degree
    has = np.flatnonzero(deg > 0)
    pos = network.indptr[has] + np.minimum((u[0, has] * deg[has]).astype(np.int64),
                                           deg[has] - 1)
    j = network.indices[pos]
    p_copy = 0.5 * (1.0 + np.tanh(0.5 * beta * (pi[j] - pi[has])))   # = 1 / (1 + e^(-b d))
    new = s.copy()
    copy = u[1, has] < p_copy
    new[has[copy]] = s[j[copy]]
    return new


def _imitate_best(network: Network, s: np.ndarray, pi: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Every agent copies its best-paid neighbour if that one earned strictly more."""
    key = rng.random(network.indices.shape[0])
    new = s.copy()
    has = np.flatnonzero(network.degree > 0)
    if has.size == 0:
        return new
    starts = network.indptr[has]
    nb = pi[network.indices]
    best = np.maximum.reduceat(nb, starts)                 # rows without entries are skipped
    row_best = np.full(network.n_nodes, -np.inf)
    row_best[has] = best
    cand = nb == row_best[network.src]
    tie = np.where(cand, key, -1.0)                        # random tie-break among the best
    top = np.full(network.n_nodes, -np.inf)
    top[has] = np.maximum.reduceat(tie, starts)
    pick = np.flatnonzero(cand & (tie == top[network.src]))
    agent, j = network.src[pick].astype(np.int64), network.indices[pick]
    better = pi[j] > pi[agent]
    new[agent[better]] = s[j[better]]
    return new


def imitation_dynamics(strategies: Sequence[Strategy | str], *,
                       network: NetworkConfig | Mapping[str, Any] | Network | None = None,
                       n_agents: int = 100, initial: Sequence[int] | Sequence[float] | None = None,
                       generations: int = 100, turns: int = 200, repetitions: int = 10,
                       noise: float = 0.0, payoffs: Payoffs = "classic", rule: str = "fermi",
                       beta: float = 1.0, seed: int | None = 0,
                       history: bool = False) -> ImitationResult:
    """Strategies spreading on a network by imitation of better-paid neighbours.

    Each generation every agent's payoff is the sum over its neighbours of the round robin's
    mean per-turn payoff of its strategy against theirs; then all agents update at once by
    ``rule`` (module docstring). The run stops early once every agent holds one strategy (no
    rule can change that).

    Args:
        strategies: the strategy types (names, classes or instances).
        network: a :class:`~envs.core.network.NetworkConfig`, a dict of its fields (e.g.
            ``{"topology": "small_world", "k": 4, "rewire_probability": 0.1}``) or a built
            :class:`~envs.core.network.Network` of ``n_agents`` nodes. Default: small world,
            ``k = 4``, rewiring 0.1. Generated with ``seed``.
        n_agents: the number of agents (nodes), >= 1.
        initial: integer counts per strategy adding up to ``n_agents``, or shares (floats)
            adding up to 1, rounded to counts by largest remainders; default equal shares.
            The agents holding each strategy are drawn at random (a random permutation).
        generations: the most generations to run, >= 0.
        turns, repetitions, noise, payoffs: the round robin's settings (``turns >= 1``).
        rule: ``"fermi"`` (one random neighbour, Fermi probability) or ``"best"`` (the
            best-paid neighbour, if strictly better).
        beta: the Fermi rule's intensity of selection, finite and >= 0 (``0``: a coin flip).
        seed: seeds the round robin, the network and the dynamics (``None``: fresh entropy).
        history: keep every generation's assignment in ``result.history``.

    Returns:
        An :class:`ImitationResult`.

    Raises:
        ValueError: an unknown strategy or rule, ``initial`` that does not match, ``beta``
            negative or not finite, ``noise`` outside ``[0, 1]``, ``turns`` below 1, ...

    Example:
        >>> r = imitation_dynamics(["TFT", "AD"], n_agents=60, initial=[54, 6], seed=0)
        >>> r.fixated, r.shares[0].tolist(), r.shares.shape[1]
        ('TFT', [0.9, 0.1], 2)
    """
    items = _check_strategies(strategies)
    k = len(items)
    n = _count(n_agents, "n_agents", 1)
    gens = _count(generations, "generations", 0)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}; received {rule!r}")
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"beta must be a finite number >= 0; received {beta!r}") from None
    if isinstance(beta, bool) or not (math.isfinite(b) and b >= 0.0):
        raise ValueError(f"beta must be a finite number >= 0; received {beta!r}")
    counts = _initial_counts(initial, k, n)
    seed = _seed(seed)
    net = _as_network(NetworkConfig(topology="small_world") if network is None else network,
                      n, seed)
    names, matrix = _payoff_matrix(items, turns=turns, repetitions=repetitions, noise=noise,
                                   payoffs=payoffs, seed=seed)
    rng = _dynamics_rng(seed)
    s = rng.permutation(np.repeat(np.arange(k, dtype=np.int64), counts))
    initial_assignment = s.copy()
    rows = [np.bincount(s, minlength=k)]
    kept = [s.copy()] if history else None
    pi = np.zeros(n)
    fixated_at = 0 if rows[0].max() == n else None
    for gen in range(1, gens + 1):
        if fixated_at is not None:
            break
        pi = agent_payoffs(net, s, matrix)
        if rule == "fermi":
            s = _imitate_fermi(net, s, pi, b, rng)
        else:
            s = _imitate_best(net, s, pi, rng)
        rows.append(np.bincount(s, minlength=k))
        if kept is not None:
            kept.append(s.copy())
        if rows[-1].max() == n:
            fixated_at = gen
    shares = np.array(rows, dtype=np.float64) / n
    winner = names[int(rows[-1].argmax())] if fixated_at is not None else None
    return ImitationResult(names, shares, winner, fixated_at, initial_assignment, s,
                           np.array(kept) if kept is not None else None, pi, matrix, net, rule,
                           b)
