"""Segmentation nodes ⇄ SimpleITK label maps with the project's canonical structure names.

A segmentation node is exported on a reference volume's exact grid and its segment names are
mapped to the canonical names of ``ParaspinalLBPCore.structures`` ("Multifidus left" →
``multifidus_left``); writing back gives each segment its canonical colour and SNOMED-CT
terminology, so Slicer's Segment Editor and DICOM SEG export show the anatomy, not a number.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from ParaspinalLBPCore import structures
from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib import geometry

from .mrml import imageToVolume, volumeToImage


def segmentationToLabels(segmentationNode, referenceVolume):
    """Label map (SimpleITK) of all segments on the reference volume's grid, and {value: canonical name}.

    Values are 1..n in segment order. Raises ValueError for an empty segmentation or a failed export.
    """
    if segmentationNode is None or segmentationNode.GetSegmentation().GetNumberOfSegments() == 0:
        raise BadInputError("the segmentation is empty: add or compute segments first")
    segmentation = segmentationNode.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    idArray = vtk.vtkStringArray()
    for segmentId in ids:
        idArray.InsertNextValue(segmentId)
    labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__tmp_labels")
    try:
        ok = slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
            segmentationNode, idArray, labelNode, referenceVolume
        )
        if not ok:
            raise BadInputError(
                f"could not export segmentation '{segmentationNode.GetName()}' to a label map"
            )
        labels = volumeToImage(labelNode)
        reference = volumeToImage(referenceVolume)
        # Exported on the reference grid: carry its exact geometry (the export re-derives it with
        # rounding noise that would make downstream resampling differ from the volume's own grid).
        geometry.check_same_grid(reference, labels, referenceVolume.GetName(), segmentationNode.GetName())
        labels.CopyInformation(reference)
    finally:
        slicer.mrmlScene.RemoveNode(labelNode)
    names = {
        i + 1: structures.canonical_name(segmentation.GetSegment(sid).GetName()) for i, sid in enumerate(ids)
    }
    return labels, names


def labelsToSegmentation(
    labels, labelNames, segmentationNode=None, referenceVolume=None, name="Segmentation"
):
    """Write a label map into a segmentation node with canonical names, colours and SNOMED terms.

    ``labelNames`` maps label values to structure names; an existing segment of the same name is
    overwritten, other segments are kept. Returns the (new or given) segmentation node.
    """
    import SimpleITK as sitk

    if segmentationNode is None:
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    if referenceVolume is not None:
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    array = sitk.GetArrayFromImage(labels)
    segmentation = segmentationNode.GetSegmentation()
    for value, structureName in sorted(labelNames.items()):
        info = structures.BY_NAME.get(structureName)
        segmentId = segmentation.GetSegmentIdBySegmentName(structureName)
        if not segmentId:
            segmentId = segmentation.AddEmptySegment(structureName, structureName)
        segment = segmentation.GetSegment(segmentId)
        if info is not None:
            segment.SetColor(*(c / 255.0 for c in info.color))
            if info.terminology_entry():
                segment.SetTag("TerminologyEntry", info.terminology_entry())
        mask = (array == int(value)).astype(np.uint8)
        labelImage = imageToVolume(sitk.Cast(labels, sitk.sitkUInt8), name="__tmp_mask", labelmap=True)
        try:
            slicer.util.updateVolumeFromArray(labelImage, mask)
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, labelImage)
        finally:
            slicer.mrmlScene.RemoveNode(labelImage)
    return segmentationNode


def canonicalLabels(labels, names):
    """Relabel an exported label map to the canonical values of ``structures`` (unknown names dropped)."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(labels)
    out = np.zeros(array.shape, dtype=np.uint8)
    for value, name in names.items():
        if name in structures.BY_NAME:
            out[array == value] = structures.BY_NAME[name].value
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(labels)
    return image
