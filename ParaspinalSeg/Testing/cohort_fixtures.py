"""A small phantom cohort with planted QC problems, shared by the batch, QC-page and agreement tests.

Seven cases on a coarse grid (2 mm, 160 x 160, L4-L5, 3 slices per level) so the whole batch runs in
seconds: C1-C3 plain, C4 with 40 % left/right asymmetry, C5 with a fatty left multifidus (FF 0.60
instead of 0.16-0.20), C6 cropped so the right erector spinae touches the image border, C7 whose
water image does not exist.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from ParaspinalSegLib.phantom import PhantomParams, make_phantom, write_phantom

SMALL = {"levels": ["L4", "L5"], "slices_per_level": 3, "matrix": [160, 160], "spacing_mm": [2.0, 2.0]}
CASES = {
    "C1": ({}, 1),
    "C2": ({}, 2),
    "C3": ({}, 3),
    "C4": ({"asymmetry": 0.4}, 4),
    "C5": ({"muscles": {"multifidus_left": {"fat_fraction": 0.6}}}, 5),
    "C6": ({}, 6),
}
FLAGGED = {"C4": "asymmetry", "C5": "ff_outlier", "C6": "border", "C7": "failed"}


def crop_right_side(folder: Path, columns: int) -> None:
    """Cut ``columns`` image columns off the patient's right (low i) of water and fat, in place; the
    remaining voxels keep their physical positions, so seeds and landmarks still apply."""
    for name in ("water", "fat"):
        img = sitk.ReadImage(str(folder / f"{name}.nii.gz"))
        sitk.WriteImage(img[columns:, :, :], str(folder / f"{name}.nii.gz"), True)


def right_erector_edge(folder: Path) -> int:
    """First column (i) of the right erector spinae in the phantom's truth labels."""
    import numpy as np

    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labels.nii.gz")))
    return int(np.flatnonzero((lab == 4).any(axis=(0, 1)))[0])


def make_cohort(root: Path) -> Path:
    """Render the cohort under ``root`` and write ``root/cases.csv`` (relative paths); returns it."""
    rows = []
    for case_id, (extra, seed) in CASES.items():
        folder = root / "phantoms" / case_id
        write_phantom(make_phantom(PhantomParams.from_dict({**SMALL, **extra}), seed=seed), folder)
        if case_id == "C6":
            crop_right_side(folder, right_erector_edge(folder) + 3)
        rel = folder.relative_to(root).as_posix()
        rows.append({"case_id": case_id, "water": f"{rel}/water.nii.gz", "fat": f"{rel}/fat.nii.gz",
                     "seeds": f"{rel}/seeds.mrk.json", "levels": f"{rel}/levels.mrk.json"})  # fmt: skip
    rows.append({**rows[0], "case_id": "C7", "water": "phantoms/C7/water.nii.gz"})
    manifest = root / "cases.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest
