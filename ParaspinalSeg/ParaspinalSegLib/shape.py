"""Per-slice shape regularisation of a label map (the segmenter's last step).

:func:`postprocess` cuts thin necks, keeps the seeded component and fills holes; :func:`add_rim` adds the
partial-volume edge ring that manual outlines and the CSA convention include.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def postprocess(
    lab: np.ndarray, seeds_by_label: dict[int, list[tuple[int, int, int]]], open_r: float, close_r: int = 0
) -> np.ndarray:
    """Per slice and label: cut thin necks (opening with a disc of ``open_r`` voxels), keep the seed's
    (else the largest) component, restore its boundary detail within ``open_r``, fill holes into background."""
    out = lab.copy()
    disc = None
    if open_r > 0:
        r = int(np.ceil(open_r))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disc = yy**2 + xx**2 <= open_r**2 + 1e-9
    close_disc = None
    if close_r > 0:
        yy, xx = np.mgrid[-close_r : close_r + 1, -close_r : close_r + 1]
        close_disc = yy**2 + xx**2 <= close_r**2
    pad = max(int(np.ceil(open_r)), close_r) + 2
    for k in range(out.shape[0]):
        full = out[k]
        for v, bb in enumerate(ndi.find_objects(full), start=1):
            if bb is None:
                continue
            j0, i0 = max(bb[0].start - pad, 0), max(bb[1].start - pad, 0)
            sl = full[j0 : bb[0].stop + pad, i0 : bb[1].stop + pad]  # a view: edits land in ``out``
            m = sl == v
            core = ndi.binary_opening(m, disc) if disc is not None else m
            if not core.any():
                core = m
            cc, n = ndi.label(core)
            if n > 1:
                keep = set()
                for kk, j, i in seeds_by_label.get(v, []):
                    jj, ii = j - j0, i - i0
                    if kk == k and 0 <= jj < sl.shape[0] and 0 <= ii < sl.shape[1] and cc[jj, ii]:
                        keep.add(cc[jj, ii])
                if not keep:
                    sizes = ndi.sum(core, cc, range(1, n + 1))
                    keep = {int(np.argmax(sizes)) + 1}
                core = np.isin(cc, list(keep))
            if disc is not None:
                core = m & ndi.binary_dilation(core, disc)
                cc, n = ndi.label(core)
                if n > 1:
                    sizes = ndi.sum(core, cc, range(1, n + 1))
                    core = cc == int(np.argmax(sizes)) + 1
            sl[m & ~core] = 0
            if close_disc is not None:
                closed = ndi.binary_closing(np.pad(core, close_r + 1), close_disc)[
                    close_r + 1 : -close_r - 1, close_r + 1 : -close_r - 1
                ]
                core = core | (closed & (sl == 0))
            filled = ndi.binary_fill_holes(core) & (sl == 0)
            sl[filled | core] = v
    return out


def add_rim(lab: np.ndarray, ff: np.ndarray, rim_px: int, max_ff: float) -> np.ndarray:
    """Grow each label by ``rim_px`` voxels in-plane into unlabelled partial-volume voxels (FF < ``max_ff``).

    The growth stops one voxel short of the fat it competes with; manual outlines (and the CSA
    convention) run along the muscle's outer edge, through those partial-volume voxels.
    """
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    out = lab.copy()
    for _ in range(rim_px):
        grown = ndi.grey_dilation(out, footprint=st)
        smallest = -ndi.grey_dilation(-np.where(out > 0, out, 255).astype(np.int16), footprint=st)
        ok = (out == 0) & (ff < max_ff) & (grown > 0) & (smallest == grown)  # one neighbouring label only
        out[ok] = grown[ok]
    return out
