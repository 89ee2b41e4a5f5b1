"""ParaspinalRadiomics: pyradiomics features of the segmented paraspinal muscles (METNLBP step 2).

Thin Slicer layer over ``ParaspinalRadiomicsLib``: the Logic takes a volume node and a segmentation
node (e.g. ParaspinalSeg's result), converts them with ``ParaspinalLBPSlicer``'s MRML⇄SimpleITK
conversions, extracts every segment (× level slab × side) in one call that prepares the image once,
and writes the tidy feature table (contract C5) into a table node. The Widget runs the extraction in a
background process (``python -m ParaspinalRadiomicsLib extract --progress``) it can cancel.
Headless or from the Python console::

    logic = ParaspinalRadiomicsLogic()
    table = logic.extract(volumeNode, segmentationNode, params="protocol-mri")
    job = logic.extractInBackground(volumeNode, segmentationNode)  # job.wait(); logic.loadFeatures(job)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
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

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPSlicer import jobs, mrml, segmentations
from ParaspinalLBPSlicer.requirements import ensureRequirements
from ParaspinalLBPSlicer.tables import dataFrameToTable
from ParaspinalLBPSlicer.widgets import JobMonitor, optionalPath

#: Parameter presets shipped with ParaspinalRadiomicsLib, and "custom" for the user's own YAML.
PRESETS = ["protocol-mri", "ibsi-like", "custom"]
#: The protocol's pyradiomics feature classes (= ParaspinalRadiomicsLib.extraction.PROTOCOL_CLASSES);
#: each is a bool of the parameter node bound to a check box of the same name.
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
            '<a href="https://github.com/paraspinal-lbp/ParaspinalLBP/blob/main/docs/radiomics.md">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Built on pyradiomics (van Griethuysen et al., Cancer Research 2017). Developed for the METNLBP "
            "randomised controlled trial."
        )


@parameterNodeWrapper
class ParaspinalRadiomicsParameterNode:
    """Every choice of the Widget, saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    levels: vtkMRMLMarkupsFiducialNode
    table: vtkMRMLTableNode
    preset: Annotated[str, Choice(PRESETS)] = "protocol-mri"
    customParams: Path  # pyradiomics YAML used when preset == "custom"
    shape: bool = True
    firstorder: bool = True
    glcm: bool = True
    glrlm: bool = True
    glszm: bool = True
    gldm: bool = True
    perLevel: bool = False
    perSide: bool = True
    caseId: str = ""


class ParaspinalRadiomicsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui to the parameter node; Apply runs the extraction as a cancellable background job."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._jobMonitor = None

    def setup(self) -> None:
        """Load the UI, create the Logic and the job panel, observe scene closing, bind the parameter node."""
        ScriptedLoadableModuleWidget.setup(self)
        ensureRequirements(["pandas", "scipy", "yaml", "radiomics"])
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ParaspinalRadiomics.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ParaspinalRadiomicsLogic()
        self._jobMonitor = JobMonitor(
            self.ui.progressBar,
            self.ui.logTextEdit,
            self.ui.statusLabel,
            self.ui.cancelButton,
            onSucceeded=self._onExtractionSucceeded,
            onEnded=self._checkCanApply,
            what=_("Feature extraction"),
        )
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module widget destroyed (application exit): cancel a running extraction, unbind, stop observing."""
        if self._jobMonitor is not None:
            self._jobMonitor.cleanup()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        """Module shown: make sure the parameter node exists and drives the GUI."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Another module shown: stop reacting to parameter node changes until enter()."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        """The scene is closing: its parameter node goes away with it."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """The scene was closed: a new parameter node if the module is shown."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Use the scene's parameter node; preselect the first image and segmentation."""
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not p.inputVolume:
            p.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not p.segmentation:
            p.segmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")

    def setParameterNode(self, inputParameterNode: ParaspinalRadiomicsParameterNode | None) -> None:
        """Bind the GUI to ``inputParameterNode`` (None: unbind) and observe it for the buttons' state."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Apply needs an image, a segmentation, a feature class and no extraction running."""
        p = self._parameterNode
        running = self._jobMonitor is not None and self._jobMonitor.running
        ready = bool(p and p.inputVolume and p.segmentation and self._featureClasses())
        self.ui.applyButton.enabled = ready and not running
        self.ui.customParamsPathLineEdit.enabled = bool(p and p.preset == "custom")

    def _featureClasses(self) -> list[str]:
        p = self._parameterNode
        return [c for c in PROTOCOL_CLASSES if p is not None and getattr(p, c)]

    def onApply(self) -> None:
        """Start the extraction in the background; the job panel follows it."""
        p = self._parameterNode
        params = optionalPath(p.customParams) if p.preset == "custom" else p.preset
        with slicer.util.tryWithErrorDisplay(_("Feature extraction could not start.")):
            if params is None:
                raise BadInputError(_("choose the custom pyradiomics parameter file"))
            job = self.logic.extractInBackground(
                p.inputVolume,
                p.segmentation,
                params=params,
                featureClasses=self._featureClasses(),
                levelsNode=p.levels,
                perLevel=p.perLevel,
                perSide=p.perSide,
                caseId=p.caseId,
            )
            self._jobMonitor.start(job, _("Extracting features…"))
        self._checkCanApply()

    def _onExtractionSucceeded(self, job) -> None:
        p = self._parameterNode
        table = self.logic.loadFeatures(job, p.table if p else None)
        if p:
            p.table = table


class ParaspinalRadiomicsLogic(ScriptedLoadableModuleLogic):
    """Volume + segmentation nodes → ParaspinalRadiomicsLib → feature table node (here or in the background)."""

    def getParameterNode(self):
        return ParaspinalRadiomicsParameterNode(super().getParameterNode())

    @staticmethod
    def _caseInputs(volumeNode, segmentationNode, levelsNode, perLevel: bool):
        """(image, labels, names, levels) of the nodes; per-level extraction needs level landmarks."""
        image = mrml.volumeToImage(volumeNode)
        labels, names = segmentations.segmentationToLabels(segmentationNode, volumeNode)
        levels = mrml.levelsFromMarkups(levelsNode, image)
        if perLevel and not levels:
            raise BadInputError("per-level extraction needs level landmarks (points labelled L1..L5)")
        return image, labels, names, levels

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
        """Extract features of every segment into a table node (one row per structure × level), here.

        ``params``: preset name or pyradiomics YAML; ``featureClasses``: keep only these classes;
        ``progress(done, total, what)`` is called after each mask.
        """
        from ParaspinalRadiomicsLib import extraction

        image, labels, names, levels = self._caseInputs(volumeNode, segmentationNode, levelsNode, perLevel)
        rp = extraction.load_params(params)
        if featureClasses is not None:
            rp = extraction.select_feature_classes(rp, list(featureClasses))
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
        return self._featuresTable(df, tableNode, volumeNode.GetName(), rp.settings_hash)

    def extractInBackground(
        self,
        volumeNode,
        segmentationNode,
        params="protocol-mri",
        featureClasses=None,
        levelsNode=None,
        perLevel: bool = False,
        perSide: bool = True,
        caseId: str = "",
        outputPath=None,
    ):
        """Start ``python -m ParaspinalRadiomicsLib extract --progress`` on the nodes; returns the job.

        The image, label map and ``labels.json`` (names, level slabs) go to a temporary folder, removed
        when the job ends. The features go to ``outputPath`` (written atomically: a cancelled or failed
        job leaves an earlier file as it was) or, by default, into that folder. Follow the job with
        ``job.poll()`` or ``job.wait()``; when it succeeded, :meth:`loadFeatures` makes the table node.
        """
        import SimpleITK as sitk

        image, labels, names, levels = self._caseInputs(volumeNode, segmentationNode, levelsNode, perLevel)
        work = Path(tempfile.mkdtemp(prefix="ParaspinalRadiomics-", dir=slicer.app.temporaryPath))
        inputs = [work / "image.nrrd", work / "labels.nrrd", work / "labels.json"]
        sitk.WriteImage(image, str(inputs[0]), useCompression=False)
        sitk.WriteImage(labels, str(inputs[1]), useCompression=False)
        sidecar = {"labels": {str(v): n for v, n in names.items()}}
        if levels:
            sidecar["levels"] = {name: [int(k0), int(k1)] for name, (k0, k1) in levels.items()}
        inputs[2].write_text(json.dumps(sidecar, indent=1), encoding="utf-8")
        output = Path(outputPath) if outputPath else work / "features.csv"
        args = ["extract", "--image", inputs[0], "--labels", inputs[1], "--label-names", inputs[2]]
        args += ["--case-id", caseId or volumeNode.GetName(), "--out", output, "--params", params]
        args += ["--per-level"] if perLevel else []
        args += ["--per-side" if perSide else "--no-per-side", "--progress"]
        args += ["--classes", *featureClasses] if featureClasses is not None else []
        moduleDir = Path(__file__).resolve().parent  # holds ParaspinalRadiomicsLib
        job = jobs.startLibJob(
            "ParaspinalRadiomicsLib",
            args,
            pythonPath=[moduleDir],
            name="Feature extraction",
            stagingFolders=[output.parent],
        )
        job.outputPath = output
        job.caseName = volumeNode.GetName()
        job.temporaryFolder = work if output.parent == work else None

        def removeInputs(job) -> None:
            if job.status == jobs.SUCCEEDED and job.temporaryFolder is not None:
                for path in inputs:  # the features stay until loadFeatures has read them
                    path.unlink(missing_ok=True)
            else:
                shutil.rmtree(work, ignore_errors=True)

        job.addEndCallback(removeInputs)
        return job

    def loadFeatures(self, job, tableNode=None):
        """Feature table node from a succeeded :meth:`extractInBackground` job (its temporary folder is removed)."""
        from ParaspinalRadiomicsLib.tables import read_features

        job.raiseIfFailed()
        if job.status != jobs.SUCCEEDED:
            raise RuntimeError(f"{job.name} has not succeeded (status: {job.status})")
        df = read_features(job.outputPath)
        settingsHash = ""
        provenancePath = Path(f"{job.outputPath}.json")
        if provenancePath.is_file():
            settingsHash = json.loads(provenancePath.read_text(encoding="utf-8")).get("settings_hash", "")
        if job.temporaryFolder is not None:
            shutil.rmtree(job.temporaryFolder, ignore_errors=True)
        return self._featuresTable(df, tableNode, job.caseName, settingsHash)

    @staticmethod
    def _featuresTable(df, tableNode, volumeName: str, settingsHash: str):
        tableNode = dataFrameToTable(df, tableNode, name=f"{volumeName} radiomics")
        tableNode.SetAttribute("ParaspinalLBP.table", "features")
        tableNode.SetAttribute("ParaspinalLBP.settings_hash", settingsHash)
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
        volume = slicer.util.addVolumeFromArray(image, np.diag([-0.9, -0.9, 4.0, 1.0]), "T1")
        labelImage = sitk.GetImageFromArray(labels)
        labelImage.CopyInformation(mrml.volumeToImage(volume))
        segNode = segmentations.labelsToSegmentation(
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
        img = mrml.volumeToImage(volume)
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
