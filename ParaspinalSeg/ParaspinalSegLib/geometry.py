"""Voxel-grid geometry between Slicer's IJK→RAS matrices and SimpleITK's LPS images.

Slicer stores a volume as a numpy array (k, j, i) plus a 4×4 IJK→RAS matrix; ITK/SimpleITK use
origin/spacing/direction in LPS. These two functions are the only place the sign flip lives.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore.errors import BadInputError

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def image_from_array(array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> sitk.Image:
    """SimpleITK image (LPS) from a (k, j, i) array and a 4×4 IJK→RAS matrix."""
    m = np.asarray(ijk_to_ras, dtype=float)
    if m.shape != (4, 4):
        raise BadInputError(f"ijk_to_ras must be a 4x4 matrix, got shape {m.shape}")
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise BadInputError("ijk_to_ras has a zero-length axis")
    return image_from_parts(array_kji, spacing, m[:3, 3], m[:3, :3] / spacing)


def image_from_parts(
    array_kji: np.ndarray, spacing: np.ndarray, origin_ras: np.ndarray, directions_ras: np.ndarray
) -> sitk.Image:
    """SimpleITK image from Slicer's separately stored spacing, RAS origin and IJK→RAS directions.

    Spacing is rounded to 1e-9 mm: Slicer's NIfTI reader derives spacing from the sform with 1e-16
    noise (0.9375000000000001), and pyradiomics' resampling sizes its grid with ceil(extent/spacing),
    so 256 × 0.9375000000000001 mm gives one more column than the file read by SimpleITK.
    """
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    image.SetSpacing([round(float(s), 9) for s in spacing])
    image.SetDirection([float(v) for v in (_LPS_FROM_RAS @ np.asarray(directions_ras, dtype=float)).ravel()])
    image.SetOrigin([float(v) for v in _LPS_FROM_RAS @ np.asarray(origin_ras, dtype=float)])
    return image


def ijk_to_ras(image: sitk.Image) -> np.ndarray:
    """4×4 IJK→RAS matrix of a SimpleITK image (the inverse of :func:`image_from_array`'s input)."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = _LPS_FROM_RAS @ direction @ np.diag(image.GetSpacing())
    m[:3, 3] = _LPS_FROM_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return m


def check_same_grid(a: sitk.Image, b: sitk.Image, name_a: str, name_b: str, tol: float = 1e-3) -> None:
    """Raise ValueError naming both inputs when size, spacing, origin or direction differ."""
    problems = []
    if a.GetSize() != b.GetSize():
        problems.append(f"size {a.GetSize()} vs {b.GetSize()}")
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol):
        problems.append(
            f"spacing {np.round(a.GetSpacing(), 4).tolist()} vs {np.round(b.GetSpacing(), 4).tolist()}"
        )
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=max(tol, 1e-3 * min(a.GetSpacing()))):
        problems.append(
            f"origin {np.round(a.GetOrigin(), 3).tolist()} vs {np.round(b.GetOrigin(), 3).tolist()}"
        )
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4):
        problems.append("direction differs")
    if problems:
        raise BadInputError(f"{name_a} and {name_b} are not on the same voxel grid: " + "; ".join(problems))
