"""MRML nodes ⇄ SimpleITK images and LPS points: the conversions every module's Logic needs.

Slicer stores positions in RAS, the Libs (and ITK/NIfTI) in LPS: x and y flip sign here and
nowhere else. Volumes under a transform are refused (harden first) so geometry is never silently
wrong. Segmentations are in ``segmentations.py``, tables in ``tables.py``.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib import geometry, levels


def volumeToImage(volumeNode):
    """SimpleITK image (LPS) of a scalar/label volume node; its parent transform must be hardened."""
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise BadInputError("no volume selected (or the volume has no image data)")
    if volumeNode.GetParentTransformNode() is not None:
        raise BadInputError(f"volume '{volumeNode.GetName()}' is under a transform; harden it first")
    directions = np.zeros((3, 3))
    volumeNode.GetIJKToRASDirections(directions)
    return geometry.image_from_parts(
        slicer.util.arrayFromVolume(volumeNode).copy(),
        np.array(volumeNode.GetSpacing()),
        np.array(volumeNode.GetOrigin()),
        directions,
    )


def imageToVolume(image, volumeNode=None, name="Volume", labelmap=False):
    """Create or update a volume node from a SimpleITK image."""
    import SimpleITK as sitk

    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    if volumeNode is None:
        volumeNode = slicer.mrmlScene.AddNewNodeByClass(cls, name)
    m = geometry.ijk_to_ras(image)
    mat = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            mat.SetElement(r, c, m[r, c])
    volumeNode.SetIJKToRASMatrix(mat)
    slicer.util.updateVolumeFromArray(volumeNode, sitk.GetArrayFromImage(image))
    return volumeNode


def markupsToPoints(markupsNode):
    """Control points of a markups node as LPS MarkupPoints (label, position, description)."""
    from ParaspinalSegLib.markups import MarkupPoint

    points = []
    for i in range(markupsNode.GetNumberOfControlPoints()):
        ras = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(i, ras)
        points.append(
            MarkupPoint(
                markupsNode.GetNthControlPointLabel(i),
                np.array([-ras[0], -ras[1], ras[2]]),
                markupsNode.GetNthControlPointDescription(i),
            )
        )
    return points


def pointsToMarkups(points, markupsNode=None, name="Seeds"):
    """Write LPS MarkupPoints (label, position, description) into a point-list node (replacing its points)."""
    if markupsNode is None:
        markupsNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    markupsNode.RemoveAllControlPoints()
    for point in points:
        x, y, z = (float(c) for c in point.position_lps)
        index = markupsNode.AddControlPointWorld(vtk.vtkVector3d(-x, -y, z), point.label)
        markupsNode.SetNthControlPointDescription(index, point.description)
    return markupsNode


def levelsFromMarkups(levelsNode, image):
    """Slice ranges {level: (k0, k1)} of ``image`` from vertebral-level landmarks (points labelled L1..L5).

    None when no landmark node is given (the Libs then work on the whole volume).
    """
    if levelsNode is None:
        return None
    return levels.levels_from_landmarks(markupsToPoints(levelsNode), image, source=levelsNode.GetName())


def imagesOnGrid(volumesByRole: dict, reference, referenceName: str, assumeSameGrid: bool = False) -> dict:
    """``{role: SimpleITK image}`` of volume nodes that must lie on the ``reference`` image's grid (raises
    naming the volume otherwise); ``assumeSameGrid`` gives a volume of the same size the reference's
    geometry (images whose geometry metadata disagree while their voxels match, e.g. MyoSegmenTUM water)."""
    images = {}
    for role, node in volumesByRole.items():
        image = volumeToImage(node)
        if assumeSameGrid and image.GetSize() == reference.GetSize():
            image.CopyInformation(reference)
        else:
            geometry.check_same_grid(reference, image, referenceName, f"{role} image")
        images[role] = image
    return images


def volumeMetadata(volumeNode) -> dict:
    """The headers of a volume node for the contrast checks: its file's NIfTI header / BIDS sidecar,
    and, when it was loaded from the DICOM database, the DICOM keywords of its first instance."""
    from ParaspinalSegLib.contrast import DICOM_TAGS, read_metadata

    meta = {}
    storage = volumeNode.GetStorageNode() if volumeNode is not None else None
    if storage is not None and storage.GetFileName():
        meta.update(read_metadata(storage.GetFileName()))
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split() if volumeNode is not None else []
    database = getattr(slicer, "dicomDatabase", None)
    if uids and database is not None:
        path = database.fileForInstance(uids[0])
        for keyword, tag in DICOM_TAGS.items():
            value = database.fileValue(path, tag) if path else ""
            if value:
                meta[keyword] = value
    return meta
