"""ParaspinalRadiomics: pyradiomics features of the segmented paraspinal muscles (METNLBP step 2).

Thin Slicer layer over ``ParaspinalRadiomicsLib``: the Logic takes a volume node and a segmentation
node (e.g. ParaspinalSeg's result), converts them with ParaspinalSeg's public MRML⇄SimpleITK
helpers, extracts every segment (× level slab × side) in one call that prepares the image once,
and writes the tidy feature table (contract C5) into a table node. Headless use::

    logic = ParaspinalRadiomicsLogic()
    table = logic.extract(volumeNode, segmentationNode, preset="protocol-mri")
"""

from __future__ import annotations

import logging
from typing import Annotated

import numpy as np
import slicer
import vtk
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

PRESETS = ["protocol-mri", "ibsi-like", "custom"]
PROTOCOL_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm")


class ParaspinalRadiomics(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Paraspinal Radiomics")
        self.parent.categories = [_("Paraspinal LBP")]
        self.parent.dependencies = ["ParaspinalSeg"]
        self.parent.contributors = ["ParaspinalLBP developers (METNLBP trial imaging core)"]
        self.parent.helpText = _(
            "Step 2 of the METNLBP imaging workflow. Extracts the protocol's radiomic features (shape, "
            "first-order, GLCM, GLRLM, GLSZM, GLDM) with pyradiomics from every paraspinal muscle segment, "
            "optionally per vertebral-level slab and per side, with the protocol-mri preset (z-score "
            "normalisation, fixed bin width, in-plane resampling) or any pyradiomics YAML. Values are "
            "identical to calling pyradiomics directly; the image is prepared once per case. The feature "
            "table feeds LBPRiskModel; use the command line (paraspinal-radiomics batch) for whole cohorts "
            "and 'icc' for inter-rater/test-retest reproducibility. "
            '<a href="https://github.com/paraspinal-lbp/ParaspinalLBP#which-module-do-i-need">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Built on pyradiomics (van Griethuysen et al., Cancer Research 2017). Developed for the METNLBP "
            "randomised controlled trial."
        )


@parameterNodeWrapper
class ParaspinalRadiomicsParameterNode:
    """Widget state, saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    levels: vtkMRMLMarkupsFiducialNode
    table: vtkMRMLTableNode
    preset: Annotated[str, Choice(PRESETS)] = "protocol-mri"
    perLevel: bool = False
    perSide: bool = True
    caseId: str = ""


class ParaspinalRadiomicsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui to the parameter node; extraction runs in the Logic with a progress bar."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        import ParaspinalSeg

        ParaspinalSeg.ensureRequirements(["pandas", "scipy", "yaml", "radiomics"])
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ParaspinalRadiomics.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ParaspinalRadiomicsLogic()
        self.ui.presetComboBox.addItems(PRESETS)
        self.ui.featureClassesList.addItems(list(PROTOCOL_CLASSES))
        for row in range(self.ui.featureClassesList.count):
            item = self.ui.featureClassesList.item(row)
            item.setFlags(item.flags() | 16)  # Qt.ItemIsUserCheckable
            item.setCheckState(2)  # Qt.Checked
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.addObserver(
            slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda *a: self.initializeParameterNode()
        )
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = self.logic.getParameterNode()
        self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
        self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        self.ui.applyButton.enabled = bool(p.inputVolume and p.segmentation)

    def onApply(self) -> None:
        p = self._parameterNode
        classes = [
            self.ui.featureClassesList.item(r).text()
            for r in range(self.ui.featureClassesList.count)
            if self.ui.featureClassesList.item(r).checkState() == 2
        ]
        params = self.ui.customParamsPathLineEdit.currentPath if p.preset == "custom" else p.preset

        def progress(done: int, total: int, what: str) -> None:
            self.ui.progressBar.maximum = total
            self.ui.progressBar.value = done
            self.ui.progressBar.format = f"{what} (%v/%m)"
            slicer.app.processEvents()

        with slicer.util.tryWithErrorDisplay(_("Feature extraction failed."), waitCursor=True):
            p.table = self.logic.extract(
                p.inputVolume,
                p.segmentation,
                params=params,
                featureClasses=classes,
                levelsNode=p.levels,
                perLevel=p.perLevel,
                perSide=p.perSide,
                caseId=p.caseId,
                tableNode=p.table,
                progress=progress,
            )


class ParaspinalRadiomicsLogic(ScriptedLoadableModuleLogic):
    """Volume + segmentation nodes → ParaspinalRadiomicsLib → feature table node."""

    def getParameterNode(self):
        return ParaspinalRadiomicsParameterNode(super().getParameterNode())

    @staticmethod
    def _segLogic():
        import ParaspinalSeg

        return ParaspinalSeg.ParaspinalSegLogic()

    def extract(
        self,
        volumeNode,
        segmentationNode,
        params="protocol-mri",
        featureClasses=None,
        levelsNode=None,
        perLevel: bool = False,
        perSide: bool = True,
        caseId: str = "",
        tableNode=None,
        progress=None,
    ):
        """Extract features of every segment into a table node (one row per structure × level)."""
        from ParaspinalRadiomicsLib import extraction

        seg = self._segLogic()
        image = seg.volumeToImage(volumeNode)
        labels, names = seg.segmentationToLabels(segmentationNode, volumeNode)
        levels = seg.levelsFromMarkups(levelsNode, image)
        if perLevel and not levels:
            raise ValueError("per-level extraction needs level landmarks (points labelled L1..L5)")
        rp = extraction.load_params(params)
        if featureClasses is not None:
            enabled = rp.params.get("featureClass") or {c: None for c in PROTOCOL_CLASSES}
            unknown = sorted(set(featureClasses) - set(enabled))
            if unknown:
                raise ValueError(f"feature classes {unknown} are not enabled in {rp.source}")
            rp = extraction.load_params(
                {**rp.params, "featureClass": {c: enabled[c] for c in featureClasses}}
            )
        df = extraction.extract_case(
            image,
            labels,
            names,
            rp,
            levels=levels,
            per_level=perLevel,
            per_side=perSide,
            case_id=caseId or volumeNode.GetName(),
            progress=progress,
        )
        tableNode = seg.dataFrameToTable(df, tableNode, name=f"{volumeNode.GetName()} radiomics")
        tableNode.SetAttribute("ParaspinalLBP.table", "features")
        tableNode.SetAttribute("ParaspinalLBP.settings_hash", rp.settings_hash)
        n_bad = int((df["status"] != "ok").sum())
        logging.info("ParaspinalRadiomics: %d rows (%d without features)", len(df), n_bad)
        return tableNode


class ParaspinalRadiomicsTest(ScriptedLoadableModuleTest):
    """Self-test with data made in code (runs in real Slicer and headless)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        self.setUp()
        self.test_extract_matches_pyradiomics()

    def test_extract_matches_pyradiomics(self) -> None:
        """Logic output equals pyradiomics' own extractor on the same image and mask; tiny mask → NaN + reason."""
        import SimpleITK as sitk
        from radiomics import featureextractor

        from ParaspinalRadiomicsLib import extraction

        rng = np.random.default_rng(7)
        image = rng.normal(100.0, 15.0, size=(8, 48, 48)).astype(np.float32)
        labels = np.zeros(image.shape, dtype=np.uint8)
        yy, xx = np.mgrid[:48, :48]
        disc = (yy - 24) ** 2 + (xx - 16) ** 2 < 81
        labels[1:7][:, disc] = 1
        image[labels == 1] += 40.0 * rng.random(int((labels == 1).sum())).astype(np.float32)
        labels[4, 30, 36] = 2  # one-voxel segment: no texture possible
        seg = ParaspinalRadiomicsLogic._segLogic()
        volume = slicer.util.addVolumeFromArray(image, np.diag([-0.9, -0.9, 4.0, 1.0]), "T1")
        labelImage = sitk.GetImageFromArray(labels)
        labelImage.CopyInformation(seg.volumeToImage(volume))
        segNode = seg.labelsToSegmentation(
            labelImage, {1: "multifidus_left", 2: "multifidus_right"}, None, volume
        )

        logic = ParaspinalRadiomicsLogic()
        table = logic.extract(volume, segNode, params="protocol-mri", caseId="synthetic")
        df = slicer.util.dataframeFromTable(table).set_index("structure")
        self.assertEqual(df.loc["multifidus_left", "status"], "ok")
        self.assertNotEqual(df.loc["multifidus_right", "reason"], "")

        extractor = featureextractor.RadiomicsFeatureExtractor(
            str(extraction.PRESETS_DIR / "protocol-mri.yaml")
        )
        img = seg.volumeToImage(volume)
        mask = sitk.GetImageFromArray(labels)
        mask.CopyInformation(img)
        direct = extractor.execute(img, mask, label=1)
        for name in ("original_firstorder_Mean", "original_glcm_Contrast", "original_shape_MeshVolume"):
            # same settings, same voxels: equal to the last few ulps (the Lib's own test checks bit identity)
            self.assertAlmostEqual(
                float(df.loc["multifidus_left", name]),
                float(direct[name]),
                delta=1e-12 * abs(float(direct[name])),
                msg=name,
            )
        self.delayDisplay("ParaspinalRadiomics test passed")
