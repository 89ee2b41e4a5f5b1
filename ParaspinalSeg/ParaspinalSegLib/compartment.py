"""Fat inside a muscle's fascial compartment belongs to the muscle: the segmenter's fat-aware pass.

A muscle is its compartment: every voxel inside the fascia, intramuscular fat included. Fat *around* the
muscles (subcutaneous, retroperitoneal, intermuscular planes) is connected to the fat outside; fat *inside* a
muscle is enclosed by muscle tissue, or mixed with it within a voxel. So, per slice: clear fat (Dixon FF above
``CLEAR_FAT_FF``) that is not connected to the region's border through clear fat is intramuscular, and so is
every mixed voxel (FF between the fat competitor's threshold and clear fat). Their signals are replaced by the
surrounding muscle's (:func:`fill_features`), so that the growth sees one tissue where the compartment is, while
the fat outside stays a competitor. Signals relative to lean muscle come from a two-tissue unmixing
(:func:`lean_water`), so a click into fatty muscle still finds the lean reference. :func:`envelope` closes each
structure over streaks and small bays of fat at its border; :func:`merge_groups` puts the result in place of the
lean segmentation for the muscles it concerns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

# Dixon FF of (nearly) pure adipose tissue (adipose volume fraction above ~0.7, fat signal ~2.9x muscle's)
CLEAR_FAT_FF = 0.85
LEAN_OWN_FF = 0.05  # lean muscle's own F/W signal ratio (its small fat signal), for the unmixing


def lean_water(
    water: np.ndarray, fat: np.ndarray, adipose_wf: tuple[float, float], own_ratio: float = LEAN_OWN_FF
) -> np.ndarray:
    """Water signal lean muscle would have at each voxel: the voxel unmixed into muscle and adipose tissue.

    W = u + a·W_a, F = ρ·u + a·F_a with u = the muscle's share of the water signal, a = the adipose fraction,
    (W_a, F_a) = pure adipose tissue's signals, ρ = lean muscle's own F/W; lean water = u / (1 − a).
    """
    wa, fa = adipose_wf
    a = np.clip((fat - own_ratio * water) / max(fa - own_ratio * wa, 1e-6), 0.0, 0.95)
    return (water - a * wa) / (1.0 - a)


def _disc(radius_px: int) -> np.ndarray:
    """Disc footprint of ``radius_px`` (the gap closing's in-plane reach, the same in every direction)."""
    yy, xx = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    return yy**2 + xx**2 <= radius_px**2


def _outside_fat(clear: np.ndarray, gap_px: int, st: np.ndarray) -> np.ndarray:
    """One slice: the clear fat connected to the region's border through clear fat, where a gap of up to
    ``2·gap_px`` voxels next to a thin line of tissue is closed. The thin line is the fascia (thoracolumbar
    fascia, epimysium: ~1 mm of collagen, at most 2 voxels with partial volume) that separates intramuscular
    from subcutaneous or intermuscular fat; at the image resolution it shows with gaps. The line is widened by
    ``gap_px`` to close them, and the fat reached is then grown back ``gap_px`` voxels (the widening's outer
    side). Gaps between thick tissue only (two muscles, muscle and bone) stay open: fat there is outside."""
    barrier = ~clear
    if gap_px > 0:
        thin = barrier & ~ndi.binary_opening(np.pad(barrier, 1), np.ones((3, 3), bool))[1:-1, 1:-1]
        barrier = barrier | ndi.binary_dilation(thin, _disc(gap_px))
    lab, _n = ndi.label(~barrier, st)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    reached = np.isin(lab, edge[edge > 0])
    if gap_px > 0 and reached.any():
        reached = ndi.binary_dilation(reached, st, iterations=gap_px, mask=clear)
    return reached


def intramuscular_fat(
    clear: np.ndarray, dark: np.ndarray, gap_px: int = 0, max_void_share: float = 0.5
) -> np.ndarray:
    """Per slice, clear fat enclosed by other tissue (not connected to the region's border through clear fat,
    gaps of up to ``2·gap_px`` voxels in a fascia line closed: :func:`_outside_fat`), unless mostly surrounded
    by signal void (marrow inside cortical bone, fat inside the canal)."""
    out = np.zeros(clear.shape, bool)
    st = ndi.generate_binary_structure(2, 1)
    for k in range(clear.shape[0]):
        holes = clear[k] & ~_outside_fat(clear[k], gap_px, st)
        lab, n = ndi.label(holes, st)
        if n == 0:
            continue
        ring = ndi.binary_dilation(holes, st) & ~holes
        owner = ndi.grey_dilation(lab, footprint=st)[ring]
        total = np.bincount(owner, minlength=n + 1)
        voids = np.bincount(owner[dark[k][ring]], minlength=n + 1)
        keep = voids <= max_void_share * np.maximum(total, 1)
        keep[0] = False
        out[k] = keep[lab]
    return out


def fill_features(feats: np.ndarray, fill: np.ndarray, valid: np.ndarray, sigma_px: float) -> np.ndarray:
    """``feats`` (C, K, J, I) with ``fill`` voxels replaced by the Gaussian-weighted in-plane mean of the
    ``valid`` voxels around them (normalised convolution)."""
    s = (0, sigma_px, sigma_px)
    weight = ndi.gaussian_filter(valid.astype(np.float32), s)
    out = feats.copy()
    for c in range(feats.shape[0]):
        mean = ndi.gaussian_filter(np.where(valid, feats[c], 0).astype(np.float32), s)
        out[c] = np.where(fill, mean / np.maximum(weight, 1e-6), feats[c])
    return out


def envelope(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Per slice: closing with a disc of ``radius_px`` and hole filling (the mask's smooth outer boundary)."""
    r = int(np.ceil(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = yy**2 + xx**2 <= radius_px**2 + 1e-9
    out = np.zeros(mask.shape, bool)
    pad = r + 1
    for k in range(mask.shape[0]):
        if mask[k].any():
            closed = ndi.binary_closing(np.pad(mask[k], pad), disc)[pad:-pad, pad:-pad]
            out[k] = ndi.binary_fill_holes(closed | mask[k])
    return out


def merge_groups(lean: np.ndarray, fatty: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """``lean`` labels with the structures ``values`` taken from ``fatty`` instead (where no other structure of
    ``lean`` is)."""
    out = np.where(np.isin(lean, list(values)), 0, lean).astype(lean.dtype)
    take = np.isin(fatty, list(values)) & (out == 0)
    out[take] = fatty[take]
    return out


__all__ = [
    "CLEAR_FAT_FF",
    "envelope",
    "fill_features",
    "intramuscular_fat",
    "lean_water",
    "merge_groups",
]
