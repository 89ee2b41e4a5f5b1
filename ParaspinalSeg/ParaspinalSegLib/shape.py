"""Per-slice shape regularisation of a label map and its partial-volume rim (the segmenter's last steps).

:func:`postprocess` cuts thin necks, keeps the seeded component and fills holes; :func:`add_rim` adds the
partial-volume edge ring that the CSA convention includes: a rim voxel joins when its muscle volume fraction,
unmixed from the signals into muscle, adipose tissue and signal void, is at least 0.5, so that the label area
estimates the partial-volume area against fat and against bone alike.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError


def postprocess(
    lab: np.ndarray, seeds_by_label: dict[int, list[tuple[int, int, int]]], open_r: float
) -> np.ndarray:
    """Per slice and label: cut thin necks (opening with a disc of ``open_r`` voxels), keep the seed's
    (else the largest) component, restore its boundary detail within ``open_r``, fill holes into background."""
    out = lab.copy()
    disc = None
    if open_r > 0:
        r = int(np.ceil(open_r))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disc = yy**2 + xx**2 <= open_r**2 + 1e-9
    pad = int(np.ceil(open_r)) + 2
    for k in range(out.shape[0]):
        full = out[k]
        for v, bb in enumerate(ndi.find_objects(full), start=1):
            if bb is None:
                continue
            j0, i0 = max(bb[0].start - pad, 0), max(bb[1].start - pad, 0)
            sl = full[j0 : bb[0].stop + pad, i0 : bb[1].stop + pad]  # a view: edits land in ``out``
            m = sl == v
            core = _seeded_component(m, disc, seeds_by_label.get(v, []), k, j0, i0)
            sl[m & ~core] = 0
            filled = ndi.binary_fill_holes(core) & (sl == 0)
            sl[filled | core] = v
    return out


def _seeded_component(m: np.ndarray, disc, seeds: list[tuple[int, int, int]], k: int, j0: int, i0: int):
    """The part of mask ``m`` (a crop at ``j0, i0`` of slice ``k``) kept by :func:`postprocess`."""
    core = ndi.binary_opening(m, disc) if disc is not None else m
    if not core.any():
        core = m
    cc, n = ndi.label(core)
    if n > 1:
        keep = set()
        for kk, j, i in seeds:
            jj, ii = j - j0, i - i0
            if kk == k and 0 <= jj < m.shape[0] and 0 <= ii < m.shape[1] and cc[jj, ii]:
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
    return core


# voxels above FAT_FF (Dixon FF; single image: fat-likeness) near the muscles are the fat reference
FAT_FF = 0.85
REF_RING_PX = 10  # ... searched within this many voxels (in-plane) of the labels
MIN_CORE_VOXELS = 30  # a slice's muscle reference needs this many core voxels, else the whole label's core


def _core_medians(lab: np.ndarray, arrays: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Per label: medians of ``arrays`` over its core (2-voxel in-plane erosion) per slice, shape (nz, n);
    slices with too few core voxels take the whole core's medians (bias fields change them across slices)."""
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    out = {}
    for v, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        m = lab[box] == v
        core = ndi.binary_erosion(m, st, iterations=2)
        if not core.any():
            core = m
        sub = [a[box] for a in arrays]
        med = np.tile([float(np.median(a[core])) for a in sub], (lab.shape[0], 1))
        for k in np.flatnonzero(core.sum(axis=(1, 2)) >= MIN_CORE_VOXELS):
            med[box[0].start + k] = [float(np.median(a[k][core[k]])) for a in sub]
        out[v] = med
    return out


def _fat_near(lab: np.ndarray, ff: np.ndarray) -> np.ndarray:
    """Fat voxels (``ff`` > FAT_FF) within REF_RING_PX voxels in-plane (square) of the labels, else all fat given."""
    ring = 2 * REF_RING_PX + 1
    near = (ff > FAT_FF) & ndi.maximum_filter(lab > 0, size=(1, ring, ring))
    return near if near.any() else ff > FAT_FF


def _fraction_bounds(
    lab: np.ndarray, ff: np.ndarray, min_fraction: float, water=None, fat=None, image=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per voxel a signal x, per (slice, label) bounds lo <= x <= hi meaning muscle fraction >= ``min_fraction``.

    Three compartments, the muscle, adipose tissue and a signal void (cortical bone, ligament, air), sum to one.
    Dixon: two signals, so the unmixing is exact: fraction = (W - r F) / (W_m - r F_m), r = W/F of the fat next
    to the muscles (against fat: the water signal relative to the muscle's, corrected for fat's own small water
    signal; against a void: the signal relative to the muscle's). One image S: below the muscle's signal the
    voxel is read as muscle + void (fraction S / S_m), above it as muscle + fat ((S_a - S) / (S_a - S_m)).
    The muscle reference S_m, (W_m, F_m) is the median of the label's core on that slice.
    """
    nz = lab.shape[0]
    lo = np.full((nz, 256), np.inf, np.float32)  # unlabelled values: nothing grows
    hi = np.full((nz, 256), np.inf, np.float32)
    fat_vox = _fat_near(lab, ff)
    if image is None:
        r = (
            float(np.median(water[fat_vox]) / max(float(np.median(fat[fat_vox])), 1e-6))
            if fat_vox.any()
            else 0.0
        )
        x = (water - r * fat).astype(np.float32)
        for v, med in _core_medians(lab, [water, fat]).items():
            den = med[:, 0] - r * med[:, 1]
            lo[:, v] = np.where(den > 0, min_fraction * den, np.inf)
        return x, lo, hi
    x = np.asarray(image, np.float32)
    s_fat = float(np.median(x[fat_vox])) if fat_vox.any() else np.inf  # no fat: no upper bound
    for v, med in _core_medians(lab, [x]).items():
        sm = med[:, 0]
        lo[:, v] = np.where(sm > 0, min_fraction * sm, np.inf)
        hi[:, v] = np.where(s_fat > sm, sm + (1 - min_fraction) * (s_fat - sm), sm)
    return x, lo, hi


def add_rim(
    lab: np.ndarray,
    ff: np.ndarray,
    rim_px: int,
    water: np.ndarray | None = None,
    fat: np.ndarray | None = None,
    min_fraction: float = 0.5,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """Grow each label by up to ``rim_px`` voxels in-plane into unlabelled partial-volume voxels.

    A voxel joins when its muscle volume fraction (:func:`_fraction_bounds`, against the muscle's own signal on
    that slice; Dixon ``water`` and ``fat``, or a single ``image``) is at least ``min_fraction``: 0.5 makes the
    label area an unbiased estimate of the partial-volume area (the CSA definition). ``ff`` (FF or fat-likeness)
    finds the fat reference. Only voxels next to one label grow.
    """
    if image is None and (water is None or fat is None):
        raise BadInputError("add_rim needs the Dixon water and fat signals or the single image")
    out = lab.copy()
    found = ndi.find_objects((lab > 0).astype(np.uint8))
    if rim_px <= 0 or not found:
        return out
    # work inside the labels' in-plane bounding box plus the fat-reference ring (same result, less work)
    pad = REF_RING_PX + rim_px + 1
    _, js, is_ = found[0]
    box = (
        slice(None),
        slice(max(js.start - pad, 0), js.stop + pad),
        slice(max(is_.start - pad, 0), is_.stop + pad),
    )
    crop = [None if a is None else np.asarray(a)[box] for a in (water, fat, image)]
    out[box] = _grow_rim(lab[box], np.asarray(ff)[box], rim_px, min_fraction, *crop)
    return out


def _grow_rim(lab, ff, rim_px, min_fraction, water, fat, image) -> np.ndarray:
    """:func:`add_rim` on a crop."""
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    out = lab.copy()
    x, lo, hi = _fraction_bounds(lab, ff, min_fraction, water, fat, image)
    for _ in range(rim_px):
        grown = ndi.grey_dilation(out, footprint=st)
        smallest = -ndi.grey_dilation(-np.where(out > 0, out, 255).astype(np.int16), footprint=st)
        ok = (out == 0) & (grown > 0) & (smallest == grown)  # one neighbouring label only
        kk, jj, ii = np.nonzero(ok)
        g = grown[kk, jj, ii]
        xv = x[kk, jj, ii]
        ok[kk, jj, ii] = (xv >= lo[kk, g]) & (xv <= hi[kk, g])
        if not ok.any():
            break
        out[ok] = grown[ok]
    return out
