"""Voxel-grid geometry between Slicer's IJK→RAS matrices and SimpleITK's LPS images.

Slicer stores a volume as a numpy array (k, j, i) plus a 4×4 IJK→RAS matrix; ITK/SimpleITK use
origin/spacing/direction in LPS. These two functions are the only place the sign flip lives.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def image_from_array(array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> sitk.Image:
    """SimpleITK image (LPS) from a (k, j, i) array and a 4×4 IJK→RAS matrix."""
    m = np.asarray(ijk_to_ras, dtype=float)
    if m.shape != (4, 4):
        raise ValueError(f"ijk_to_ras must be a 4x4 matrix, got shape {m.shape}")
    ijk_to_lps = _LPS_FROM_RAS @ m[:3, :3]
    spacing = np.linalg.norm(ijk_to_lps, axis=0)
    if np.any(spacing <= 0):
        raise ValueError("ijk_to_ras has a zero-length axis")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (ijk_to_lps / spacing).ravel()])
    image.SetOrigin([float(v) for v in _LPS_FROM_RAS @ m[:3, 3]])
    return image


def ijk_to_ras(image: sitk.Image) -> np.ndarray:
    """4×4 IJK→RAS matrix of a SimpleITK image (the inverse of :func:`image_from_array`'s input)."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = _LPS_FROM_RAS @ direction @ np.diag(image.GetSpacing())
    m[:3, 3] = _LPS_FROM_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return m
