"""ParaspinalSeg: segment and measure paraspinal muscles on lumbar MRI (METNLBP imaging workflow).

Thin Slicer layer over ``ParaspinalSegLib``: the Widget binds the UI to a parameter node; the
Logic converts MRML nodes (volumes, segmentations, markups, tables) to SimpleITK/pandas with the
shared conversions of ``ParaspinalLBPSlicer``, calls the library and writes results back as nodes. The Logic never opens dialogs and runs headless, e.g.::

    logic = slicer.modules.paraspinalseg.logic()  # or ParaspinalSegLogic()
    table = logic.measure(volumeNode, segmentationNode, levelsNode=levels)
"""

from __future__ import annotations

import json
import logging
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
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from ParaspinalLBPCore import structures
from ParaspinalLBPCore.errors import BadInputError, MissingInputError
from ParaspinalLBPSlicer import mrml, segmentations, tables
from ParaspinalLBPSlicer.requirements import ensureRequirements
from ParaspinalLBPSlicer.sampledata import registerSampleData
from ParaspinalLBPSlicer.tables import dataFrameToTable
from ParaspinalLBPSlicer.widgets import JobMonitor, optionalPath

#
# Module
#


class ParaspinalSeg(ScriptedLoadableModule):
    """Module metadata shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Paraspinal Segmentation")
        self.parent.categories = [_("Paraspinal LBP")]
        self.parent.dependencies = []
        self.parent.contributors = ["ParaspinalLBP developers (METNLBP trial imaging core)"]
        self.parent.helpText = _(
            "Step 1 of the METNLBP imaging workflow. Segment multifidus, erector spinae, psoas and "
            "quadratus lumborum on axial lumbar MRI (Dixon water/fat or a T1/T2-weighted image) from one "
            "click per muscle per vertebral level, correct with the Segment Editor, then measure "
            "cross-sectional area, functional CSA, volume, fat fraction, Goutallier grade and left/right "
            "asymmetry per muscle, side and level. Results go to a table node (the measurement table "
            "ParaspinalRadiomics and LBPRiskModel consume) and a bar chart. "
            '<a href="https://github.com/paraspinal-lbp/ParaspinalLBP/blob/main/docs/segmentation.md">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Developed for the METNLBP randomised controlled trial (exercise + NSAIDs vs NSAIDs in older "
            "adults with chronic low-back pain and paraspinal fatty infiltration). Validation data: "
            "MyoSegmenTUM spine (Burian et al. 2019) and MuscleMap."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Parameter node
#


@parameterNodeWrapper
class ParaspinalSegParameterNode:
    """Everything the Widget shows; saved with the scene so a case can be resumed."""

    inputVolume: vtkMRMLScalarVolumeNode
    fatVolume: vtkMRMLScalarVolumeNode
    waterVolume: vtkMRMLScalarVolumeNode
    seeds: vtkMRMLMarkupsFiducialNode
    levels: vtkMRMLMarkupsFiducialNode
    segmentation: vtkMRMLSegmentationNode
    table: vtkMRMLTableNode
    structure: Annotated[str, Choice(list(structures.MUSCLE_NAMES))] = "multifidus_left"
    onlyLevel: str = ""
    erosionVoxels: Annotated[int, WithinRange(0, 3)] = 1
    caseId: str = ""
    assumeSameGrid: bool = False
    raterName: str = ""
    cohortManifest: Path  # cohort run (paraspinal-seg batch) and agreement report, in background jobs
    cohortOutput: Path
    cohortJobs: Annotated[int, WithinRange(1, 16)] = 1
    raterA: Path
    raterB: Path
    agreementOutput: Path


#
# Widget
#


class ParaspinalSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui to the parameter node; every action is one Logic call."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cohortJob = None

    def setup(self) -> None:
        """Load the UI, create the Logic, observe scene closing, bind the parameter node."""
        ScriptedLoadableModuleWidget.setup(self)
        ensureRequirements(["pandas", "scipy"])  # asks first; actions report what is still missing
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ParaspinalSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ParaspinalSegLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.placeSeedButton.connect("clicked(bool)", self.onPlaceSeed)
        self.ui.proposeSeedsButton.connect("clicked(bool)", self.onProposeSeeds)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.measureButton.connect("clicked(bool)", self.onMeasure)
        self.ui.exportDicomSegButton.connect("clicked(bool)", self.onExportDicomSeg)
        self._cohortJob = JobMonitor(
            self.ui.cohortProgressBar, self.ui.cohortLogTextEdit, self.ui.cohortStatusLabel,
            self.ui.cohortCancelButton, onSucceeded=self._onCohortJobSucceeded, onEnded=self._checkCanApply,
            what=_("Cohort job"),
        )  # fmt: skip
        self.ui.runBatchButton.connect("clicked(bool)", self.onRunBatch)
        self.ui.agreementButton.connect("clicked(bool)", self.onAgreement)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module widget destroyed (application exit): cancel a running cohort job, disconnect the GUI."""
        if self._cohortJob is not None:
            self._cohortJob.cleanup()
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
        """Use the scene's parameter node; preselect the first image to save a click."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode: ParaspinalSegParameterNode | None) -> None:
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
        """Enable each action only when its inputs are selected."""
        p = self._parameterNode
        hasImage = bool(p and (p.inputVolume or (p.fatVolume and p.waterVolume)))
        self.ui.segmentButton.enabled = bool(hasImage and p.seeds)
        self.ui.measureButton.enabled = bool(hasImage and p.segmentation)
        self.ui.placeSeedButton.enabled = hasImage
        self.ui.proposeSeedsButton.enabled = hasImage
        self.ui.exportDicomSegButton.enabled = bool(p and (p.inputVolume or p.fatVolume) and p.segmentation)
        idle = bool(p) and not (self._cohortJob and self._cohortJob.running)
        paths = lambda *names: idle and all(optionalPath(getattr(p, n)) for n in names)  # noqa: E731
        self.ui.runBatchButton.enabled = paths("cohortManifest", "cohortOutput")
        self.ui.agreementButton.enabled = paths("raterA", "raterB", "agreementOutput")

    def onPlaceSeed(self) -> None:
        """Start placing one seed named after the chosen structure (one click per muscle per level)."""
        p = self._parameterNode
        if not p.seeds:
            p.seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
        p.seeds.SetControlPointLabelFormat(p.structure)
        slicer.modules.markups.logic().SetActiveList(p.seeds)
        slicer.modules.markups.logic().StartPlaceMode(False)

    def onProposeSeeds(self) -> None:
        """Fill the seed list from the image (auto-initialisation); the user then drags what is off."""
        with slicer.util.tryWithErrorDisplay(_("Seed proposal failed."), waitCursor=True):
            p = self._parameterNode
            p.seeds = self.logic.proposeSeeds(
                p.inputVolume, p.fatVolume, p.waterVolume, p.levels, p.seeds, assumeSameGrid=p.assumeSameGrid
            )
            missing = p.seeds.GetAttribute("ParaspinalLBP.missingSeeds")
            if missing:
                slicer.util.showStatusMessage(_("Place by hand: ") + missing, 8000)

    def onSegment(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed."), waitCursor=True):
            p = self._parameterNode
            p.segmentation = self.logic.segment(
                seedsNode=p.seeds,
                inputVolume=p.inputVolume,
                fatVolume=p.fatVolume,
                waterVolume=p.waterVolume,
                levelsNode=p.levels,
                segmentationNode=p.segmentation,
                onlyLevel=p.onlyLevel or None,
                assumeSameGrid=p.assumeSameGrid,
            )
            self.onMeasure()

    def onMeasure(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Measurement failed."), waitCursor=True):
            p = self._parameterNode
            p.table = self.logic.measure(
                p.inputVolume or p.waterVolume,
                p.segmentation,
                tableNode=p.table,
                levelsNode=p.levels,
                fatVolume=p.fatVolume,
                waterVolume=p.waterVolume,
                caseId=p.caseId,
                erosionVoxels=p.erosionVoxels,
                assumeSameGrid=p.assumeSameGrid,
            )
            self.logic.showBarChart(p.table)

    def onExportDicomSeg(self) -> None:
        """Save the segmentation as DICOM SEG into the DICOM database (it references the image's series)."""
        with slicer.util.tryWithErrorDisplay(_("DICOM SEG export failed."), waitCursor=True):
            p = self._parameterNode
            path = self.logic.exportDicomSeg(p.segmentation, p.inputVolume or p.fatVolume, p.raterName)
            slicer.util.showStatusMessage(_("DICOM SEG added to the DICOM database: ") + path, 8000)

    def onRunBatch(self) -> None:
        """Start the cohort run in the background; the QC page opens when it is done."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("The cohort run could not start.")):
            job = self.logic.batchInBackground(p.cohortManifest, p.cohortOutput, parallelJobs=p.cohortJobs)
            self._cohortJob.start(job, _("Segmenting the cohort…"))
        self._checkCanApply()

    def onAgreement(self) -> None:
        """Start the agreement report in the background; the report opens when it is done."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("The agreement report could not start.")):
            manifest = optionalPath(p.cohortManifest)
            job = self.logic.agreementInBackground(p.raterA, p.raterB, p.agreementOutput, manifest)
            self._cohortJob.start(job, _("Comparing the raters…"))
        self._checkCanApply()

    def _onCohortJobSucceeded(self, job) -> None:
        import qt

        page, self._parameterNode.table = self.logic.loadJobResults(job, self._parameterNode.table)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(page)))


#
# Logic
#


class ParaspinalSegLogic(ScriptedLoadableModuleLogic):
    """MRML ⇄ SimpleITK/pandas conversion around ParaspinalSegLib; headless, raises on bad input."""

    def getParameterNode(self):
        return ParaspinalSegParameterNode(super().getParameterNode())

    # -- actions -----------------------------------------------------------------------------

    def measure(
        self,
        volumeNode,
        segmentationNode,
        tableNode=None,
        levelsNode=None,
        fatVolume=None,
        waterVolume=None,
        caseId: str = "",
        perSlice: bool = True,
        assumeSameGrid: bool = False,
        erosionVoxels: int = 1,
        fatMethod: str = "auto",
    ):
        """Measure every segment into a table node: CSA, lean CSA, intramuscular fat area, volume, signal and
        volume fat fractions, Goutallier grade, asymmetry (columns: ``measure.COLUMN_DOCS``, also set as the
        table's column descriptions and units).

        ``erosionVoxels`` (default 1, as the CLI) erodes each mask in-plane by that many voxels before the
        fat fractions only (partial volume with the surrounding fat); CSA and volume use the full mask.
        ``fatMethod`` as ``measure_labels``' ``fat_method`` ("none": areas and volumes on any contrast).
        Fat-suppressed or water-only images and swapped water/fat are refused (BadInputError naming why).

        ``assumeSameGrid`` accepts Dixon images whose geometry metadata differ from the reference
        volume's while their voxel grids have the same size (e.g. the MyoSegmenTUM water image).
        """
        referenceVolume = volumeNode or fatVolume or waterVolume
        if referenceVolume is None:
            raise BadInputError("select the image the segmentation belongs to (or a Dixon fat/water pair)")
        image = mrml.volumeToImage(referenceVolume)
        labels, names = segmentations.segmentationToLabels(segmentationNode, referenceVolume)
        levels = mrml.levelsFromMarkups(levelsNode, image)
        kwargs = {}
        if fatVolume is not None and waterVolume is not None:
            dixon = {"fat": fatVolume, "water": waterVolume}
            kwargs = mrml.imagesOnGrid(dixon, image, referenceVolume.GetName(), assumeSameGrid)
        from ParaspinalSegLib import measure

        if fatMethod != "none":
            roles = {"water": waterVolume, "fat": fatVolume} if kwargs else {"image": referenceVolume}
            self.checkMetadata(roles)
        df = measure.measure_labels(
            labels,
            names,
            image=image,
            levels=levels,
            case_id=caseId,
            per_slice=perSlice,
            erode_px=erosionVoxels,
            fat_method=fatMethod,
            **kwargs,
        )
        for note in df.attrs.get("notes", []):
            logging.warning("ParaspinalSeg: %s", note)
        tableNode = dataFrameToTable(df, tableNode)
        for column, (unit, description) in measure.COLUMN_DOCS.items():
            tableNode.SetColumnUnitLabel(column, unit)
            tableNode.SetColumnDescription(column, description)
        tableNode.SetAttribute("ParaspinalLBP.table", "measurements")
        logging.info("ParaspinalSeg: measured %d structures into %s", len(names), tableNode.GetName())
        return tableNode

    def segment(
        self,
        seedsNode,
        inputVolume=None,
        fatVolume=None,
        waterVolume=None,
        levelsNode=None,
        segmentationNode=None,
        onlyLevel=None,
        structures=None,
        assumeSameGrid: bool = False,
    ):
        """Grow all seeded muscles together (ParaspinalSegLib.segment) into a segmentation node.

        With ``onlyLevel`` (e.g. "L4") and an existing ``segmentationNode``, only that level's slices
        are recomputed and the user's corrections elsewhere are kept.
        """
        from ParaspinalSegLib import segment as seglib

        if seedsNode is None or seedsNode.GetNumberOfControlPoints() == 0:
            raise BadInputError(
                "no seeds: place one point per muscle per level, labelled with the structure name"
            )
        reference, source = self._source(inputVolume, fatVolume, waterVolume)
        previous = None
        if (
            onlyLevel
            and segmentationNode is not None
            and segmentationNode.GetSegmentation().GetNumberOfSegments()
        ):
            labels, names = segmentations.segmentationToLabels(segmentationNode, reference)
            previous = segmentations.canonicalLabels(labels, names)
        result = seglib.segment(
            source,
            mrml.markupsToPoints(seedsNode),
            structures=structures,
            levels=mrml.markupsToPoints(levelsNode) if levelsNode is not None else None,
            only_level=onlyLevel,
            previous=previous,
            assume_same_grid=assumeSameGrid,
        )
        segmentationNode = segmentations.labelsToSegmentation(
            result.labels, result.label_names, segmentationNode, reference
        )
        segmentationNode.SetAttribute("ParaspinalLBP.levels", json.dumps(result.levels))
        return segmentationNode

    def proposeSeeds(
        self,
        inputVolume=None,
        fatVolume=None,
        waterVolume=None,
        levelsNode=None,
        seedsNode=None,
        structures=None,
        assumeSameGrid: bool = False,
    ):
        """Auto-initialisation: one proposed seed per muscle per level (ParaspinalSegLib.autoseed) into a
        point list the user corrects; muscles not found are listed in its ``ParaspinalLBP.missingSeeds``."""
        from ParaspinalSegLib import autoseed

        _, source = self._source(inputVolume, fatVolume, waterVolume)
        proposal = autoseed.propose_seeds(
            source,
            structures=structures,
            levels=mrml.markupsToPoints(levelsNode) if levelsNode is not None else None,
            assume_same_grid=assumeSameGrid,
            allow_missing=True,
        )
        seedsNode = mrml.pointsToMarkups(proposal.points, seedsNode, "Seeds (proposed)")
        missing = [f"{m['structure']} ({m['level']})" for m in proposal.info["missing"]]
        seedsNode.SetAttribute("ParaspinalLBP.missingSeeds", ", ".join(missing))
        if missing:
            logging.warning("ParaspinalSeg: no seed proposed for %s: place them by hand", ", ".join(missing))
        return seedsNode

    def _source(self, inputVolume, fatVolume, waterVolume):
        """(reference volume node, Lib input): a Dixon {water, fat} dict (fat grid) or one image; refuses
        fat-suppressed / water-only / swapped inputs by their metadata (the Lib checks the images)."""
        if fatVolume is not None and waterVolume is not None:
            self.checkMetadata({"water": waterVolume, "fat": fatVolume})
            source = {"water": mrml.volumeToImage(waterVolume), "fat": mrml.volumeToImage(fatVolume)}
            return fatVolume, source  # the Lib returns Dixon results on the fat image's grid
        if inputVolume is not None:
            self.checkMetadata({"image": inputVolume})
            return inputVolume, mrml.volumeToImage(inputVolume)
        raise BadInputError("select a T1/T2-weighted image, or a Dixon water + fat pair")

    def checkMetadata(self, volumesByRole) -> None:
        """Raise BadInputError when a volume's metadata say it is fat-suppressed, water-only or in the wrong role."""
        from ParaspinalSegLib.contrast import require_supported_metadata

        metadata = {role: mrml.volumeMetadata(node) for role, node in volumesByRole.items() if node}
        require_supported_metadata(metadata)

    def exportDicomSeg(self, segmentationNode, referenceVolume, creator: str = "") -> str:
        """Write ``segmentationNode`` as DICOM SEG referencing the DICOM series ``referenceVolume`` was loaded
        from (one segment per muscle, SNOMED CT coded) and import it into ``slicer.dicomDatabase``; returns
        the written file. ``creator`` (the rater) becomes the SEG's ContentCreatorName."""
        from ParaspinalLBPSlicer import dicomexport

        if segmentationNode is None or referenceVolume is None:
            raise BadInputError("select the segmentation and the DICOM image it was drawn on")
        path = dicomexport.exportSegmentationToDicom(segmentationNode, referenceVolume, creator or None)
        logging.info("ParaspinalSeg: DICOM SEG %s imported into the DICOM database", path)
        return path

    # -- cohort (background jobs; docs/cohort.md) -----------------------------------------------

    def batchInBackground(self, manifest, outputDir, parallelJobs: int = 1, dicomSeg=False, force=False):
        """Start ``paraspinal-seg batch --progress`` (resumes in ``outputDir``); returns the job. Follow it with
        ``job.poll()``/``job.wait()``, then :meth:`loadJobResults`; bad input fails it with the CLI's line."""
        args = ["batch", "--manifest", Path(manifest), "--out-dir", Path(outputDir), "--progress"]
        args += ["--jobs", int(parallelJobs)] + ["--dicom-seg"] * bool(dicomSeg) + ["--force"] * bool(force)
        staging = [Path(outputDir), Path(outputDir) / "cases"]  # the summary set, the cases
        return self._startJob(args, outputDir, "Cohort run", ("qc.html", "measurements.csv"), staging)

    def agreementInBackground(self, raterA, raterB, outputDir, manifest=None):
        """Start ``paraspinal-seg agreement --progress`` between two rater folders; returns the job (as above)."""
        args = ["agreement", "--a", Path(raterA), "--b", Path(raterB), "--out", Path(outputDir), "--progress"]
        args += ["--manifest", Path(manifest)] if manifest else []
        staging = [Path(outputDir).parent]  # the report folder is swapped in whole
        return self._startJob(args, outputDir, "Agreement report", ("report.html", "agreement.csv"), staging)

    def _startJob(self, args, outputDir, name: str, results: tuple[str, str], staging: list[Path]):
        from ParaspinalLBPSlicer import jobs

        moduleDir = Path(__file__).resolve().parent  # holds ParaspinalSegLib
        job = jobs.startLibJob(
            "ParaspinalSegLib", args, pythonPath=[moduleDir], name=name, stagingFolders=staging
        )
        job.outputPath, job.resultFiles = Path(outputDir), results
        return job

    def loadJobResults(self, job, tableNode=None):
        """(HTML page, table node) of a finished cohort run (measurements) or agreement job (summary)."""
        import pandas as pd

        page, table = (job.outputPath / name for name in job.resultFiles)
        if not table.is_file():
            raise MissingInputError(f"{table}: no results (the {job.name.lower()} did not finish there)")
        node = dataFrameToTable(pd.read_csv(table), tableNode, f"{job.name}: {job.outputPath.name}")
        node.SetAttribute("ParaspinalLBP.report", str(page))
        return page, node

    def showBarChart(self, tableNode, column: str = "csa_cm2", level: str = "all"):
        """Bar chart of one measurement per structure (whole-volume rows by default) in a plot chart node."""
        df = slicer.util.dataframeFromTable(tableNode)
        rows = df[(df["level"] == level) & (df["slice"].astype(str).isin(["", "nan"]))]
        title = f"{column} per structure ({level})"
        return tables.barChart(rows, "structure", column, f"{tableNode.GetName()} {column}", title)


#
# Test
#


class ParaspinalSegTest(ScriptedLoadableModuleTest):
    """Runs inside real Slicer (Reload and Test) and headless via slicer-core; data made in code."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        self.setUp()
        self.test_measure_boxes()
        self.setUp()
        self.test_measure_dixon_erosion()

    def test_measure_boxes(self) -> None:
        """Two box-shaped muscles of known size: CSA, volume and mean intensity must be exact."""
        import SimpleITK as sitk

        spacing = (0.8, 0.8, 4.0)
        image = np.zeros((6, 40, 50), dtype=np.float32)
        labels = np.zeros(image.shape, dtype=np.uint8)
        labels[1:5, 10:20, 5:15] = 1  # 10 × 10 voxels × 4 slices
        labels[2:4, 10:25, 30:38] = 2  # 15 × 8 voxels × 2 slices
        image[labels == 1] = 100.0
        image[labels == 2] = 40.0
        logic = ParaspinalSegLogic()
        volume = slicer.util.addVolumeFromArray(
            image, np.diag([-spacing[0], -spacing[1], spacing[2], 1.0]), "T1"
        )
        labelImage = sitk.GetImageFromArray(labels)
        labelImage.CopyInformation(mrml.volumeToImage(volume))
        seg = segmentations.labelsToSegmentation(
            labelImage, {1: "multifidus_left", 2: "erector_spinae_left"}, None, volume
        )
        table = logic.measure(volume, seg, caseId="box")
        df = slicer.util.dataframeFromTable(table)
        whole = df[df["level"] == "all"].set_index("structure")
        whole = whole[whole["slice"].astype(str).isin(["", "nan"])]
        area = spacing[0] * spacing[1] / 100.0
        self.assertAlmostEqual(whole.loc["multifidus_left", "csa_cm2"], 100 * area, places=6)
        self.assertAlmostEqual(whole.loc["erector_spinae_left", "csa_cm2"], 120 * area, places=6)
        self.assertAlmostEqual(
            whole.loc["multifidus_left", "volume_cm3"], 400 * area * spacing[2] / 10, places=6
        )
        self.assertAlmostEqual(whole.loc["erector_spinae_left", "mean_intensity"], 40.0, places=6)
        chart = logic.showBarChart(table)
        self.assertEqual(chart.GetNumberOfPlotSeriesNodes(), 1)
        self.delayDisplay("ParaspinalSeg measurement test passed")

    def test_measure_dixon_erosion(self) -> None:
        """Dixon FF of a box with a fatty rim: erosionVoxels=1 leaves exactly the interior's 10 %."""
        water = np.full((3, 30, 30), 900.0, dtype=np.float32)
        fat = np.full(water.shape, 100.0, dtype=np.float32)  # interior FF 10 %
        box = np.zeros(water.shape, dtype=bool)
        box[:, 5:15, 5:15] = True
        rim = box.copy()
        rim[:, 6:14, 6:14] = False
        water[rim], fat[rim] = 500.0, 500.0  # rim FF 50 %
        ijkToRas = np.diag([-1.0, -1.0, 3.0, 1.0])
        waterNode = slicer.util.addVolumeFromArray(water, ijkToRas, "water")
        fatNode = slicer.util.addVolumeFromArray(fat, ijkToRas, "fat")
        logic = ParaspinalSegLogic()
        import SimpleITK as sitk

        labels = sitk.GetImageFromArray(box.astype(np.uint8))
        labels.CopyInformation(mrml.volumeToImage(waterNode))
        seg = segmentations.labelsToSegmentation(labels, {1: "multifidus_right"}, None, waterNode)
        rows = {}
        for erosion in (0, 1):
            table = logic.measure(
                waterNode, seg, fatVolume=fatNode, waterVolume=waterNode, erosionVoxels=erosion
            )
            df = slicer.util.dataframeFromTable(table)
            rows[erosion] = df[(df["level"] == "all") & df["slice"].astype(str).isin(["", "nan"])].iloc[0]
        self.assertAlmostEqual(rows[1]["fat_fraction_pct"], 10.0, places=4)
        self.assertAlmostEqual(rows[0]["fat_fraction_pct"], (64 * 10.0 + 36 * 50.0) / 100, places=4)
        self.assertAlmostEqual(rows[0]["csa_cm2"], rows[1]["csa_cm2"], places=9)  # erosion: FF only
        self.assertAlmostEqual(rows[1]["csa_cm2"], 1.0, places=6)  # 100 voxels of 1 mm²
