"""Vertebral-level slice ranges from level landmarks (one ``L1``…``L5`` point per vertebral body centre).

A level owns the slices closer to its own landmark than to its neighbours' (boundaries halfway
between consecutive landmarks, i.e. roughly at the discs); the outermost levels extend by the same
half-distance, clipped to the volume. This is how per-level CSA/FF and per-level radiomics slabs
are assigned when the user has placed level landmarks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import SimpleITK as sitk

from ParaspinalSegLib.markups import MarkupPoint

LEVEL_ORDER = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")


def levels_from_landmarks(points: Iterable[MarkupPoint], image: sitk.Image) -> dict[str, tuple[int, int]]:
    """``{level: (k_first, k_last)}`` (inclusive slice indices) from level landmarks on ``image``'s grid."""
    n_slices = image.GetSize()[2]
    centres: dict[str, float] = {}
    for p in points:
        if p.label not in LEVEL_ORDER:
            raise ValueError(
                f"level landmark {p.label!r} is not a vertebral level ({', '.join(LEVEL_ORDER)})"
            )
        if p.label in centres:
            raise ValueError(f"level landmark {p.label!r} is placed twice")
        k = image.TransformPhysicalPointToContinuousIndex([float(v) for v in p.position_lps])[2]
        if not -0.5 <= k <= n_slices - 0.5:
            raise ValueError(
                f"level landmark {p.label!r} lies outside the volume (slice {k:.1f} of 0..{n_slices - 1})"
            )
        centres[p.label] = k
    if not centres:
        raise ValueError("no level landmarks given")
    ordered = sorted(centres.items(), key=lambda item: item[1])
    ks = np.array([k for _, k in ordered])
    if len(ks) > 1 and np.any(np.diff(ks) < 0.5):
        raise ValueError("two level landmarks fall on the same slice; check the L1..L5 points")
    half = np.diff(ks) / 2 if len(ks) > 1 else np.array([n_slices / 2])
    lower = np.concatenate([[ks[0] - half[0]], ks[1:] - half])
    upper = np.concatenate([ks[:-1] + half, [ks[-1] + half[-1]]])
    result: dict[str, tuple[int, int]] = {}
    for (level, _), lo, hi in zip(ordered, lower, upper, strict=True):
        k0 = max(0, int(np.ceil(lo - 1e-6)))
        k1 = min(n_slices - 1, int(np.ceil(hi - 1e-6)) - 1) if hi < n_slices else n_slices - 1
        if k1 >= k0:
            result[level] = (k0, k1)
    return result
