"""Read and write Slicer markups point lists (``.mrk.json``) without Slicer.

Seeds and level landmarks travel between Slicer, the CLI and the phantom as these files. Positions
are returned in LPS (the convention of ITK/SimpleITK and DICOM); files written in RAS by Slicer are
converted, so a point clicked in Slicer lands on the same voxel here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ParaspinalLBPCore.atomic import atomic_write_text
from ParaspinalLBPCore.errors import BadInputError, MissingInputError

SCHEMA_URL = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)
_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class MarkupPoint:
    """One control point: its label (e.g. ``multifidus_left`` or ``L3``), LPS position in mm, description."""

    label: str
    position_lps: np.ndarray
    description: str = ""


def write_points(
    path: str | Path,
    points: Iterable[tuple[str, Sequence[float]] | tuple[str, Sequence[float], str]],
    coordinate_system: str = "LPS",
    name: str = "Seeds",
) -> Path:
    """Write ``(label, xyz_lps[, description])`` points as a Slicer point list, atomically."""
    if coordinate_system not in ("LPS", "RAS"):
        raise BadInputError(f"coordinate_system must be 'LPS' or 'RAS', not {coordinate_system!r}")
    control_points = []
    for i, point in enumerate(points, start=1):
        label, xyz = point[0], np.asarray(point[1], dtype=float)
        description = point[2] if len(point) > 2 else ""
        if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
            raise BadInputError(f"point {label!r}: position must be 3 finite numbers, got {point[1]!r}")
        out = xyz * _RAS_TO_LPS if coordinate_system == "RAS" else xyz
        control_points.append(
            {
                "id": str(i),
                "label": label,
                "description": description,
                "associatedNodeID": "",
                "position": [round(float(v), 6) for v in out],
                "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                "selected": True,
                "locked": False,
                "visibility": True,
                "positionStatus": "defined",
            }
        )
    doc = {
        "@schema": SCHEMA_URL,
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": coordinate_system,
                "coordinateUnits": "mm",
                "locked": False,
                "fixedNumberOfControlPoints": False,
                "labelFormat": "%N-%d",
                "lastUsedControlPointNumber": len(control_points),
                "name": name,
                "controlPoints": control_points,
                "measurements": [],
            }
        ],
    }
    return atomic_write_text(path, json.dumps(doc, indent=2))


def read_points(path: str | Path) -> list[MarkupPoint]:
    """Read every control point of every markup in a ``.mrk.json`` file, positions in LPS."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"markups file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not a valid Slicer markups JSON file ({exc})") from None
    markups = doc.get("markups") if isinstance(doc, dict) else None
    if not isinstance(markups, list):
        raise BadInputError(f"{path}: no 'markups' list (is this a Slicer .mrk.json file?)")
    result: list[MarkupPoint] = []
    for m, markup in enumerate(markups):
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise BadInputError(f"{path}: markup {m} has unsupported coordinateSystem {system!r}")
        for i, cp in enumerate(markup.get("controlPoints", [])):
            if cp.get("positionStatus", "defined") != "defined":
                continue
            pos = np.asarray(cp.get("position", []), dtype=float)
            label = str(cp.get("label", ""))
            if pos.shape != (3,) or not np.all(np.isfinite(pos)):
                raise BadInputError(
                    f"{path}: control point {i} ({label!r}) has an invalid position {cp.get('position')!r}"
                )
            if system == "RAS":
                pos = pos * _RAS_TO_LPS
            result.append(
                MarkupPoint(label=label, position_lps=pos, description=str(cp.get("description", "")))
            )
    return result
