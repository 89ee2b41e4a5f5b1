"""The CLIs' image inputs: files or DICOM series folders (``--image``, ``--water``/``--fat``, ``--dicom``).

``load_image_inputs(args)`` turns the options of ``cli_args.add_image_arguments`` into checked axial
float32 volumes and remembers which DICOM series each came from (for ``--dicom-seg`` and header checks).
Header-based checks of the image type run in ``check_inputs``: Dixon roles swapped, and (contrast.py) a
fat-suppressed or water-only single image / swapped pair by its metadata, unless the command measures
areas only (``--fat-method none``). The images themselves are checked by the library functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ParaspinalLBPCore import dicom_series as ds
from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib.contrast import read_metadata, require_supported_metadata
from ParaspinalSegLib.io import check_volume, read_volume

log = logging.getLogger(__name__)


@dataclass
class ImageInputs:
    """A single image or a Dixon pair, plus the DICOM series they were read from (role → SeriesInfo)."""

    image: sitk.Image | None = None
    water: sitk.Image | None = None
    fat: sitk.Image | None = None
    series: dict[str, ds.SeriesInfo] = field(default_factory=dict)
    file_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # NIfTI header / BIDS sidecar

    @property
    def inputs(self) -> sitk.Image | dict[str, sitk.Image]:
        """What segment()/propose_seeds() take: the image, or {"water", "fat"}."""
        return self.image if self.image is not None else {"water": self.water, "fat": self.fat}

    @property
    def reference_series(self) -> ds.SeriesInfo | None:
        """The DICOM series on whose grid the results lie (fat for a Dixon pair), None for files."""
        return self.series.get("image") or self.series.get("fat")

    @property
    def metadata(self) -> dict[str, dict[str, Any]]:
        """Header keywords per role (ScanOptions, SequenceName, ImageType, ...), for image-type checks: the
        DICOM series' headers, else the file's NIfTI ``descrip``/``intent_name`` and BIDS sidecar keys."""
        return {**self.file_metadata, **{role: info.metadata for role, info in self.series.items()}}


def _read(
    path: str, what: str, series: str | None, role: str | None
) -> tuple[sitk.Image, ds.SeriesInfo | None]:
    """A file, or one series of a DICOM folder (``series`` chosen, else the only one, else the one whose
    Dixon role is ``role``)."""
    if not Path(path).is_dir():
        if series:
            raise BadInputError(
                f"{what}: a series choice ({series}) applies to a DICOM folder, not to the file {path}"
            )
        return read_volume(path, what), None
    found = ds.scan_folder(path)
    if series is None and len(found) > 1 and role:
        matching = [s for s in found if s.dixon == role and not s.problems]
        if len(matching) == 1:
            series = matching[0].uid
    info = ds.select_series(found, series, path)
    return ds.read_series(info), info


def _checked(image: sitk.Image, info: ds.SeriesInfo | None, what: str) -> sitk.Image:
    return check_volume(image, f"{what} ({info.label} of {info.folder})" if info else what)


def load_image_inputs(args: Any) -> ImageInputs:
    """Read the image options of a CLI (see cli_args.add_image_arguments) and say which series were taken."""
    out = ImageInputs()
    get = lambda name: getattr(args, name, None)  # noqa: E731
    if get("dicom"):
        return _from_dicom_folder(args)
    if get("image"):
        image, info = _read(args.image, "image", get("series"), None)
        out.image = _checked(image, info, "image") if info else image
        if info:
            out.series["image"] = info
        else:
            out.file_metadata["image"] = read_metadata(args.image)
    else:
        for role in ("water", "fat"):
            image, info = _read(get(role), f"{role} image", get(f"{role}_series"), role)
            setattr(out, role, _checked(image, info, f"{role} image") if info else image)
            if info:
                out.series[role] = info
            else:
                out.file_metadata[role] = read_metadata(get(role))
        if "water" in out.series and "fat" in out.series:
            ds.check_same_geometry(out.series["water"], out.series["fat"], bool(get("assume_same_grid")))
    check_inputs(out, *_contrast_check(args))
    _report(out)
    return out


def _from_dicom_folder(args: Any) -> ImageInputs:
    """``--dicom DIR``: ``--series`` → one image; else the Dixon pair (picked or named); else the only series."""
    folder = args.dicom
    found = ds.scan_folder(folder)
    out = ImageInputs()
    water_sel, fat_sel = getattr(args, "water_series", None), getattr(args, "fat_series", None)
    recognised = any(s.dixon in ("water", "fat") and not s.problems for s in found)
    if getattr(args, "series", None) or not (water_sel or fat_sel or recognised):
        info = ds.select_series(found, getattr(args, "series", None), folder)
        out.image = _checked(ds.read_series(info), info, "image")
        out.series["image"] = info
    else:
        w, f = ds.pick_dixon_pair(found, folder, water_sel, fat_sel)
        ds.check_same_geometry(w, f, bool(getattr(args, "assume_same_grid", False)))
        out.water = _checked(ds.read_series(w), w, "water image")
        out.fat = _checked(ds.read_series(f), f, "fat image")
        out.series.update(water=w, fat=f)
    check_inputs(out, *_contrast_check(args))
    _report(out)
    return out


def check_inputs(inputs: ImageInputs, fat_contrast: bool = True, hint: str = "") -> None:
    """Refuse a Dixon series given in the other role by its own headers (water given as fat: swapped) and,
    when the command relies on fat contrast, inputs whose metadata say fat-suppressed / water-only / swapped."""
    for role in ("water", "fat"):
        info = inputs.series.get(role)
        if info is not None and info.dixon in ("water", "fat") and info.dixon != role:
            raise BadInputError(
                f"{role} image: {info.label} of {info.folder} is a Dixon {info.dixon} image by its "
                f"ImageType/SeriesDescription ({chr(92).join(info.image_type)}); water and fat swapped?"
            )
    if fat_contrast:
        require_supported_metadata(inputs.metadata, hint=hint)


def _contrast_check(args: Any) -> tuple[bool, str]:
    """(check the fat contrast?, hint): a command with ``--fat-method`` can measure areas without it."""
    if not hasattr(args, "fat_method"):
        return True, ""
    return args.fat_method != "none", " (for areas and volumes only: --fat-method none)"


def _report(inputs: ImageInputs) -> None:
    for role, info in inputs.series.items():
        log.info("%s: DICOM %s from %s (%s)", role, info.label, info.folder, "x".join(map(str, info.size)))
