"""Small phantom studies written as DICOM for the DICOM tests (and helpers that damage them with pydicom)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import SimpleITK as sitk

from ParaspinalSegLib.dicom_phantom import write_phantom_dicom
from ParaspinalSegLib.phantom import make_phantom
from ParaspinalSegLib.phantom_params import PhantomParams

# Two levels of the default anatomy on a coarse grid: a few seconds to render and segment.
SMALL = {"matrix": [192, 192], "spacing_mm": [1.7, 1.7], "slices_per_level": 3, "levels": ["L3", "L4"]}


def small_phantom(seed: int = 0):
    """The two-level phantom the DICOM tests share."""
    return make_phantom(PhantomParams.from_dict(SMALL), seed=seed)


def write_study(
    phantom, out: Path, names=("t1w", "inphase", "opposed", "fat", "water")
) -> dict[str, sitk.Image]:
    """Write the phantom as a DICOM study folder and the same stored pixels as NIfTI beside it (``out.nifti``)."""
    stored = write_phantom_dicom(phantom, out, names=tuple(names))
    nifti = out.with_name(out.name + "_nifti")
    nifti.mkdir(parents=True, exist_ok=True)
    for name, image in stored.items():
        sitk.WriteImage(image, str(nifti / f"{name}.nii.gz"))
    return stored


def series_dir(study: Path, name: str) -> Path:
    """The folder of one phantom series (``06_fat`` ...)."""
    return next(p for p in study.iterdir() if p.name.endswith("_" + name))


def copy_series(src: Path, dst: Path) -> Path:
    """A copy of a series folder to damage in a test."""
    shutil.copytree(src, dst)
    return dst


def edit(folder: Path, change, pattern: str = "*.dcm") -> None:
    """Apply ``change(dataset, index)`` to every file of ``folder`` (sorted) and save it in place."""
    for k, path in enumerate(sorted(folder.glob(pattern))):
        ds = pydicom.dcmread(path)
        change(ds, k)
        ds.save_as(path)
