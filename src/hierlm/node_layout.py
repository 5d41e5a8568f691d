"""Where each group sits in the arrays the collapsed density reads.

A level's nodes are *listed* or *slotted*:

- listed: one entry per node, sorted by parent and padded to a size bucket, with a pointer
  to the parent; sums over children are a scatter-add along the node axis;
- slotted: a ``W × P`` block, entry ``(k, j)`` (flat position ``k P + j``) holding the
  ``k``-th child of parent ``j``, where ``W`` is the most children any parent has; empty
  entries hold zero statistics. Sums over children are
  a reshape and a sum over ``k``, and the gradient's gathers become broadcasts.

Slotting pays for levels of many nodes with evenly many children per parent, as in wide
trees; it is used where it costs at most a quarter more entries than listing, on levels of
at least :data:`MIN_SLOTTED` nodes. Draws come back in the natural order (the group tree's)
through each level's ``order``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "MIN_SLOTTED",
    "SLACK",
    "NodeLayout",
    "bucket",
    "leaf_parent_sums",
    "natural_entries",
    "node_layout",
]

# Below this many nodes a level's scatter costs little next to the rest of the density.
MIN_SLOTTED = 4096
# Slot a level only if it needs at most this many times the entries of the listed form.
SLACK = 1.25


def bucket(n: int) -> int:
    """Round a group count up to a size bucket (steps of 2^(1/4), at least 8).

    Padding to buckets lets a new data set of similar size reuse a cached compilation.
    """
    if n <= 8:
        return 8
    k = math.ceil(4 * math.log2(n) - 1e-9)
    while math.ceil(2 ** (k / 4)) < n:
        k += 1
    return math.ceil(2 ** (k / 4))


class NodeLayout(NamedTuple):
    """Per level (top first) the parent pointers and where natural nodes sit.

    Attributes
    ----------
    parents
        Listed level: each entry's parent (1-D, sorted). Slotted level: the ``(W, P)``
        block of each entry's parent (column ``j`` holds ``j``).
    order
        The natural node at each entry (the number of entries where there is none); empty
        where the entries are the natural nodes themselves, in order, then padding.
    """

    parents: tuple[np.ndarray, ...]
    order: tuple[np.ndarray, ...]

    @property
    def n_leaf(self) -> int:
        """Number of leaf entries (1 without levels)."""
        return int(self.parents[-1].size) if self.parents else 1

    def place_leaves(self, a: np.ndarray) -> np.ndarray:
        """Per-leaf rows ``a`` (natural order, leaf axis first) at their entries; entries
        without a leaf (padding, empty slots) hold zeros."""
        out = np.zeros((self.n_leaf, *a.shape[1:]), dtype=a.dtype)
        out[natural_entries(self.order[-1] if self.parents else np.zeros(0), len(a))] = a
        return out


def natural_entries(order: np.ndarray, n_nodes: int) -> np.ndarray:
    """The entry of each of a level's ``n_nodes`` natural nodes, given its ``order``."""
    if not order.size:
        return np.arange(n_nodes)
    real = np.flatnonzero(order < n_nodes)
    out = np.empty(n_nodes, dtype=np.int64)
    out[order[real]] = real
    return out


def node_layout(
    parents: tuple[np.ndarray, ...],
    pad: bool = True,
    min_slotted: int = MIN_SLOTTED,
    slack: float = SLACK,
) -> NodeLayout:
    """Lay out a group tree given each level's natural parent pointers (top first; all 0
    at the top level), sorted by parent.

    ``pad`` pads listed levels to size buckets. A level is slotted when it has at least
    ``min_slotted`` nodes and its block has at most ``slack`` times the entries of its
    listed form (tests slot every level with ``min_slotted=0, slack=inf``).
    """
    out_parents: list[np.ndarray] = []
    out_order: list[np.ndarray] = []
    entry_of_parent = np.zeros(1, dtype=np.int64)  # the root
    n_parent = 1
    for nat in parents:
        g = len(nat)
        listed = bucket(g) if pad else g
        up = entry_of_parent[nat]
        counts = np.bincount(up, minlength=n_parent)
        width = int(counts.max()) if g else 0
        by_parent = np.argsort(up, kind="stable")
        if g >= min_slotted and width * n_parent <= slack * listed:
            # Rank of each node among its siblings; nodes of one parent are contiguous.
            first = np.cumsum(counts) - counts
            rank = np.empty(g, dtype=np.int64)
            rank[by_parent] = np.arange(g) - first[up[by_parent]]
            entry = rank * n_parent + up
            block = np.broadcast_to(np.arange(n_parent, dtype=np.int32), (width, n_parent))
            out_parents.append(np.ascontiguousarray(block))
            n_entries = width * n_parent
            out_order.append(_node_at(entry, n_entries))
        else:
            entry = np.empty(g, dtype=np.int64)
            entry[by_parent] = np.arange(g)
            pointers = np.full(listed, up[by_parent][-1] if g else 0, dtype=np.int32)
            pointers[:g] = up[by_parent]
            out_parents.append(pointers)
            natural = np.array_equal(entry, np.arange(g))
            out_order.append(np.zeros(0, np.int32) if natural else _node_at(entry, listed))
            n_entries = listed
        entry_of_parent, n_parent = entry, n_entries
    return NodeLayout(tuple(out_parents), tuple(out_order))


def _node_at(entry: np.ndarray, n_entries: int) -> np.ndarray:
    out = np.full(n_entries, n_entries, dtype=np.int32)
    out[entry] = np.arange(len(entry))
    return out


def leaf_parent_sums(a: np.ndarray, parents: tuple[np.ndarray, ...]) -> np.ndarray:
    """Sum ``a``'s last (leaf entry) axis into the entries of the level above, for
    ``parents`` as in :class:`NodeLayout` (listed pointers, or a slotted block)."""
    last = parents[-1]
    if last.ndim == 2:
        return a.reshape(*a.shape[:-1], *last.shape).sum(-2)
    n_parent = parents[-2].size if len(parents) > 1 else 1
    out = np.zeros((n_parent, *a.shape[:-1]), dtype=a.dtype)
    np.add.at(out, last, np.moveaxis(a, -1, 0))
    return np.moveaxis(out, 0, -1)
