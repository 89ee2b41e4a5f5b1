"""Multi-label shortest-path growth (the idea behind Slicer's FastGrowCut) on a 3D voxel graph.

Every voxel goes to the seed label that reaches it along the cheapest path; the cost of a step
is the step length times a small constant plus the feature difference between the two voxels
(multi-channel, so a fascia that is a bright line in the fat image and a dark line in the water
image is a barrier in both). All labels grow at once, so the result never overlaps. One call of
``scipy.sparse.csgraph.dijkstra(min_only=True)`` does the whole growth.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

# In-plane neighbour offsets and the through-plane offset (each pair once).
_INPLANE = ((0, 0, 1), (0, 1, 0))  # 4-neighbourhood: a 1-voxel fat line cannot be crossed diagonally
_THROUGH = ((1, 0, 0),)


def _shift_pairs(shape: tuple[int, int, int], off: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (a, b) of every voxel pair separated by ``off`` inside ``shape``."""
    idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    sl_a, sl_b = [], []
    for o, n in zip(off, shape, strict=True):
        if o >= 0:
            sl_a.append(slice(0, n - o))
            sl_b.append(slice(o, n))
        else:
            sl_a.append(slice(-o, n))
            sl_b.append(slice(0, n + o))
    return idx[tuple(sl_a)].ravel(), idx[tuple(sl_b)].ravel()


def edge_graph(
    features: np.ndarray,
    spacing_kji: tuple[float, float, float],
    node_cost: np.ndarray | None = None,
    eps_per_mm: float = 0.05,
    through_plane_weight: float = 1.0,
    blocked: np.ndarray | None = None,
) -> sparse.csr_matrix:
    """Symmetric sparse graph of step costs for features ``(C, K, J, I)`` (already scaled; C may be 0).

    cost(p, q) = length_mm · eps + Σ_c |f_c(p) − f_c(q)| + (node_cost(p) + node_cost(q)) / 2;
    edges touching ``blocked`` voxels are removed (hard barriers such as the midline).
    """
    c, *shape = features.shape
    shape = tuple(shape)
    n = int(np.prod(shape))
    flat = features.reshape(c, n).astype(np.float32, copy=False)
    nc = node_cost.ravel().astype(np.float32, copy=False) if node_cost is not None else None
    blk = blocked.ravel() if blocked is not None else None
    rows, cols, vals = [], [], []
    sk, sj, si = spacing_kji
    for off in _INPLANE + _THROUGH:
        if off[0] and shape[0] == 1:
            continue
        a, b = _shift_pairs(shape, off)
        length = float(np.sqrt((off[0] * sk) ** 2 + (off[1] * sj) ** 2 + (off[2] * si) ** 2))
        if blk is not None:
            keep = ~(blk[a] | blk[b])
            a, b = a[keep], b[keep]
        w = np.zeros(a.size, np.float32)
        for ch in range(c):
            if np.any(flat[ch]):
                w += np.abs(flat[ch, a] - flat[ch, b])
        if nc is not None:
            w += 0.5 * (nc[a] + nc[b])
        if off[0]:
            w = w * through_plane_weight
        w += np.float32(length * eps_per_mm)
        rows.append(a)
        cols.append(b)
        vals.append(w.astype(np.float64) + 1e-9)  # > 0: scipy drops explicit zero edges
    r = np.concatenate(rows)
    q = np.concatenate(cols)
    v = np.concatenate(vals)
    return sparse.csr_matrix((v, (r, q)), shape=(n, n))


def grow(graph: sparse.csr_matrix, seeds: np.ndarray, limit: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Grow the labelled seeds (int array, 0 = unlabelled) over ``graph``: (labels, distance).

    Voxels not reached within ``limit`` stay 0.
    """
    shape = seeds.shape
    flat = seeds.ravel()
    src = np.flatnonzero(flat > 0)
    if src.size == 0:
        return np.zeros(shape, dtype=np.int32), np.full(shape, np.inf)
    dist, _pred, sources = dijkstra(
        graph, directed=False, indices=src, min_only=True, return_predecessors=True, limit=limit
    )
    out = np.zeros(flat.shape, dtype=np.int32)
    ok = sources >= 0
    out[ok] = flat[sources[ok]]
    return out.reshape(shape), dist.reshape(shape)
