"""A tiny synthetic Dixon volume with known muscles, for fast unit tests of segment/measure (not the phantom)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore.structures import BY_NAME


def make(n_slices: int = 8, seed: int = 0, ff_muscle: float = 0.1, spacing=(1.0, 1.0, 4.0)):
    """(water, fat, truth labels) sitk images on one LPS grid; muscles as ellipses separated by fat lines."""
    rng = np.random.default_rng(seed)
    nj, ni = 110, 160
    jj, ii = np.mgrid[0:nj, 0:ni].astype(float)
    lab = np.zeros((n_slices, nj, ni), np.uint8)
    tissue = np.zeros((n_slices, nj, ni), np.uint8)  # 0 air, 1 fat, 2 bone
    for k in range(n_slices):
        grow = 1.0 + 0.03 * (k - n_slices / 2)
        body = ((jj - 45) / 62) ** 2 + ((ii - 80) / 78) ** 2 <= 1
        tissue[k][body] = 1
        vert = ((jj - 25) / 14) ** 2 + ((ii - 80) / 16) ** 2 <= 1
        tissue[k][vert] = 2
        spin = (np.abs(ii - 80) <= 2) & (jj > 35) & (jj < 80)
        tissue[k][spin] = 2
        ell = {
            "multifidus_right": (60, 69, 17 * grow, 9),
            "multifidus_left": (60, 91, 17 * grow, 9),
            "erector_spinae_right": (62, 48, 16, 19 * grow),
            "erector_spinae_left": (62, 112, 16, 19 * grow),
        }
        for name, (cj, ci, rj, ri) in ell.items():
            m = ((jj - cj) / rj) ** 2 + ((ii - ci) / ri) ** 2 <= 1
            m &= lab[k] == 0
            m &= tissue[k] == 1
            lab[k][m] = BY_NAME[name].value
        # 1-voxel fat fascia between touching muscles: remove label where a different label is adjacent
        for axis in (0, 1):
            a = lab[k]
            sh = np.roll(a, 1, axis=axis)
            edge = (a > 0) & (sh > 0) & (a != sh)
            a[edge] = 0
    muscle = lab > 0
    fat_tissue = (tissue == 1) & ~muscle
    water = (
        np.where(muscle, 1.0 - ff_muscle, 0.0)
        + np.where(fat_tissue, 0.08, 0.0)
        + np.where(tissue == 2, 0.05, 0.0)
    )
    fat = (
        np.where(muscle, ff_muscle, 0.0) + np.where(fat_tissue, 0.92, 0.0) + np.where(tissue == 2, 0.03, 0.0)
    )
    scale = 500.0
    water = np.abs(water * scale + rng.normal(0, 8, water.shape)).astype(np.float32)
    fat = np.abs(fat * scale + rng.normal(0, 8, fat.shape)).astype(np.float32)

    def img(a):
        im = sitk.GetImageFromArray(a)
        im.SetSpacing(spacing)
        im.SetOrigin((-80.0, -40.0, 100.0))
        return im

    return img(water), img(fat), img(lab)


def seed_points(labels: sitk.Image, per_slices: int = 4):
    """One interior point per muscle every ``per_slices`` slices (distance-transform maximum)."""
    from scipy import ndimage as ndi

    from ParaspinalLBPCore.structures import BY_VALUE
    from ParaspinalSegLib.markups import MarkupPoint

    lab = sitk.GetArrayFromImage(labels)
    pts = []
    for k in range(per_slices // 2, lab.shape[0], per_slices):
        for v in np.unique(lab[k][lab[k] > 0]):
            dt = ndi.distance_transform_edt(lab[k] == v)
            j, i = np.unravel_index(np.argmax(dt), dt.shape)
            xyz = labels.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
            pts.append(MarkupPoint(BY_VALUE[int(v)].name, np.array(xyz), ""))
    return pts
