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


FAT_FF = 0.85  # voxels above this Dixon FF near the muscles give the adipose water/fat signal ratio
REF_RING_PX = 10  # ... searched within this many voxels (in-plane) of any label
MIN_CORE_VOXELS = 30  # a slice's muscle reference needs this many core voxels, else the whole label's core


def _fraction_parts(
    lab: np.ndarray, ff: np.ndarray, water: np.ndarray, fat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Muscle volume fraction of voxels from their Dixon signals, as numerator W - r F per voxel and
    denominator W_m - r F_m per (slice, label).

    Three compartments (the muscle, adipose tissue, signal void such as cortical bone, ligament or air) sum
    to one and two signals are measured, so the unmixing is exact: fraction = (W - r F) / (W_m - r F_m) with
    r = W/F of adipose tissue (from the fat next to the labels). Against fat it is the water signal relative
    to the muscle's, corrected for fat's own small water signal; against a void, the signal relative to the
    muscle's. The muscle reference is the median of the label's core (2-voxel in-plane erosion) on that
    slice, or of its whole core where the slice has too few voxels (bias fields change it across slices).
    """
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    adipose = (ff > FAT_FF) & ndi.binary_dilation(lab > 0, st, iterations=REF_RING_PX)
    if not adipose.any():
        adipose = ff > FAT_FF
    r = float(np.median(water[adipose]) / max(float(np.median(fat[adipose])), 1e-6)) if adipose.any() else 0.0
    den = np.zeros((lab.shape[0], 256), np.float32)  # 0 = no reference: nothing grows
    for v in (int(x) for x in np.unique(lab) if x > 0):
        m = lab == v
        core = ndi.binary_erosion(m, st, iterations=2)
        if not core.any():
            core = m
        whole = float(np.median(water[core])) - r * float(np.median(fat[core]))
        for k in np.flatnonzero(m.any(axis=(1, 2))):
            ck = core[k]
            if ck.sum() >= MIN_CORE_VOXELS:
                den[k, v] = float(np.median(water[k][ck])) - r * float(np.median(fat[k][ck]))
            else:
                den[k, v] = whole
    return (water - r * fat).astype(np.float32), den


def add_rim(
    lab: np.ndarray,
    ff: np.ndarray,
    rim_px: int,
    max_ff: float,
    water: np.ndarray | None = None,
    fat: np.ndarray | None = None,
    min_fraction: float = 0.5,
) -> np.ndarray:
    """Grow each label by up to ``rim_px`` voxels in-plane into unlabelled partial-volume voxels.

    With the Dixon ``water`` and ``fat`` signals a voxel joins when its muscle volume fraction
    (:func:`_fraction_parts`, against the muscle's own signal on that slice) is at least ``min_fraction``:
    0.5 makes the label area an unbiased estimate of the partial-volume area (the CSA definition) against
    fat as well as against signal voids. Without them (single images, where ``ff`` is the linear signal
    fraction between lean muscle and fat) the rule is ``ff < max_ff``. Only voxels next to one label grow.
    """
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    out = lab.copy()
    parts = (
        _fraction_parts(lab, ff, water, fat) if water is not None and fat is not None and rim_px > 0 else None
    )
    for _ in range(rim_px):
        grown = ndi.grey_dilation(out, footprint=st)
        smallest = -ndi.grey_dilation(-np.where(out > 0, out, 255).astype(np.int16), footprint=st)
        ok = (out == 0) & (grown > 0) & (smallest == grown)  # one neighbouring label only
        if parts is None:
            ok &= ff < max_ff
        else:
            num, den = parts
            kk, jj, ii = np.nonzero(ok)
            d = den[kk, grown[kk, jj, ii]]
            ok[kk, jj, ii] = (d > 0) & (num[kk, jj, ii] >= min_fraction * d)
        if not ok.any():
            break
        out[ok] = grown[ok]
    return out
