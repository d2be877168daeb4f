"""Neighbour slots: which neighbours each agent sees, ``K`` fixed positions per agent.

Every variant on a network shows an agent its neighbours in ``K`` slots (the rows of its
``neighbors`` observation, the targets of its per-neighbour actions). :class:`NeighborSlots`
is that mapping, computed once from a :class:`~envs.core.network.Network` snapshot and
rebuilt when the network's entries move (pruning, cuts) or its ranking should follow new
weights:

* ``pos`` ``(n, K)``: the CSR entry of each filled slot (0 where empty, see ``mask``);
* ``mask`` ``(n, K)`` bool: which slots hold a neighbour;
* ``nb`` ``(n, K)``: the neighbour in each slot (0 where empty);
* ``of_entry`` ``(2E,)``: the slot of each entry's neighbour in its row agent's view, -1 if
  not shown;
* ``gather`` ``(n, K)``: entry positions with empty slots pointing at row ``2E``, so one
  ``np.take`` from a per-entry table with one extra zero row fills every agent's block,
  padding included.

``mutual=True`` (the dilemma) selects slots that are shown on both sides
(:meth:`~envs.core.network.Network.mutual_slots`), and adds ``rev`` ``(n * K,)``: the flat
slot of the reverse entry (``-1`` where empty), so per-pair arrays laid out by slot can read
the partner's side with one gather.

Example:
    >>> from envs.core.network import Network, NetworkConfig
    >>> net = Network.from_config(NetworkConfig(topology="ring"), 4)
    >>> s = NeighborSlots(net, 2, mutual=True)
    >>> s.nb.tolist(), s.rev.tolist()
    ([[1, 3], [0, 2], [1, 3], [0, 2]], [2, 6, 0, 4, 3, 7, 1, 5])
"""

from __future__ import annotations

import numpy as np

from envs.core.network import Network

__all__ = ["NeighborSlots", "carry_by_pair"]


class NeighborSlots:
    """The ``K`` neighbour slots of every agent on one network snapshot (module docstring)."""

    def __init__(self, network: Network, K: int, tie_key: np.ndarray | None = None, *,
                 mutual: bool = False) -> None:
        self.K = K
        pick = network.mutual_slots if mutual else network.neighbor_slots
        pos, mask = pick(K, tie_key)
        e = len(network.indices)
        self.mask = mask
        self.pos = np.where(mask, pos, 0)
        self.nb = (np.where(mask, network.indices[self.pos], 0).astype(np.int64) if e
                   else np.zeros_like(self.pos))
        self.of_entry = np.full(e, -1, dtype=np.int64)
        rows, ks = np.nonzero(mask)
        self.of_entry[self.pos[rows, ks]] = ks
        self.gather = np.where(mask, self.pos, e)
        self.rev: np.ndarray | None = None
        if mutual:
            flat = np.full(mask.size, -1, dtype=np.int64)
            back = network.rev[self.pos[rows, ks]]          # entry (neighbour -> agent)
            flat[rows * K + ks] = network.src[back].astype(np.int64) * K + self.of_entry[back]
            self.rev = flat

    def pair_keys(self, n_agents: int) -> np.ndarray:
        """``agent * n_agents + neighbour`` of every slot (-1 where empty), flat ``(n * K,)``."""
        rows = np.repeat(np.arange(self.mask.shape[0], dtype=np.int64), self.K)
        return np.where(self.mask.ravel(), rows * n_agents + self.nb.ravel(), -1)


def carry_by_pair(old_keys: np.ndarray, new_keys: np.ndarray, *arrays: np.ndarray
                  ) -> list[np.ndarray]:
    """Move per-slot state to a new slot layout, following each (agent, neighbour) pair.

    ``old_keys`` / ``new_keys`` are :meth:`NeighborSlots.pair_keys` of the old and new slots;
    each array's leading axis is the flat slot (``n * K``). A pair still shown keeps its
    state; a new pair starts at zero.
    """
    order = np.argsort(old_keys, kind="stable")
    sorted_keys = old_keys[order]
    idx = np.minimum(np.searchsorted(sorted_keys, new_keys), max(len(old_keys) - 1, 0))
    found = (new_keys >= 0) & (sorted_keys[idx] == new_keys) if len(old_keys) else \
        np.zeros(len(new_keys), dtype=bool)
    src = order[idx]
    out = []
    for arr in arrays:
        new = np.zeros_like(arr)
        new[found] = arr[src[found]]
        out.append(new)
    return out
