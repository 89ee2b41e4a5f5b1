"""TrialAnalysis: the METNLBP statistical analysis plan from Slicer (and headless).

Thin Slicer layer over ``TrialAnalysisLib``: pick a trial data folder (the simulator's documented
CSV schema, or a real export mapped to it), validate it, run the SAP and render the HTML/PDF
report; the primary ANCOVA result and the validation findings land in table nodes. The analysis
(15-30 s on the demo trial, minutes with many imputations) runs in a background process
(``python -m TrialAnalysisLib analyze --progress`` through ``ParaspinalLBPSlicer.jobs``): the
Widget polls it with a timer, shows progress and log lines and can cancel it. Statisticians
use the library directly (``from TrialAnalysisLib import ancova, mixed_model, cox ...``) or the
``trial-analysis`` command line; this module is for the imaging/data team inside Slicer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from ParaspinalLBPCore.errors import MissingInputError
from ParaspinalLBPSlicer import jobs
from ParaspinalLBPSlicer.requirements import ensureRequirements
from ParaspinalLBPSlicer.tables import dataFrameToTable
from ParaspinalLBPSlicer.widgets import JobMonitor, optionalPath


class TrialAnalysis(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Trial Analysis")
        self.parent.categories = [_("Paraspinal LBP")]
        self.parent.dependencies = ["ParaspinalSeg"]  # ParaspinalLBPSlicer lives there
        self.parent.contributors = ["ParaspinalLBP developers (METNLBP trial statistics core)"]
        self.parent.helpText = _(
            "The METNLBP trial's statistical analysis plan: data validation against the trial schema, "
            "ITT primary analysis of 12-month ODI change by ANCOVA (baseline ODI, sex, centre; multiple "
            "imputation with Rubin's rules; complete-case and per-protocol sensitivity), mixed models by "
            "visit with Satterthwaite df, Kaplan-Meier/log-rank/Cox for recurrence, adverse events, "
            "compliance, NASS satisfaction, CONSORT and Table 1, rendered as an HTML/PDF report. The "
            "same functions are available from Python (TrialAnalysisLib) and the trial-analysis CLI. "
            '<a href="https://github.com/paraspinal-lbp/ParaspinalLBP/blob/main/docs/trial-analysis.md">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Methods validated against R (stats, lme4, survival) reference values. Developed for the "
            "METNLBP randomised controlled trial."
        )


@parameterNodeWrapper
class TrialAnalysisParameterNode:
    """Every choice of the Widget, saved with the scene."""

    dataDir: Path
    outputDir: Path  # empty: <dataDir>/report
    primaryTable: vtkMRMLTableNode
    imputations: Annotated[int, WithinRange(1, 200)] = 20
    seed: Annotated[int, WithinRange(0, 999999)] = 1


class TrialAnalysisWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Folder pickers, Validate, Analyze (background job polled by a timer) and Cancel; work in the Logic."""

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
        ensureRequirements(["pandas", "scipy", "statsmodels", "lifelines", "matplotlib", "jinja2"])
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TrialAnalysis.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TrialAnalysisLogic()
        self._jobMonitor = JobMonitor(
            self.ui.progressBar,
            self.ui.logTextEdit,
            self.ui.statusLabel,
            self.ui.cancelButton,
            onSucceeded=self._onAnalysisSucceeded,
            onEnded=self._checkCanApply,
            what=_("Analysis"),
        )
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.validateButton.connect("clicked(bool)", self.onValidate)
        self.ui.analyzeButton.connect("clicked(bool)", self.onAnalyze)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module widget destroyed (application exit): stop a running analysis (no orphan), unbind."""
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
        """Use the scene's parameter node."""
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: TrialAnalysisParameterNode | None) -> None:
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
        """Validate/Analyze need a data folder and no analysis running; settings are frozen while it runs."""
        running = self._jobMonitor is not None and self._jobMonitor.running
        hasData = bool(self._parameterNode and optionalPath(self._parameterNode.dataDir))
        self.ui.validateButton.enabled = hasData and not running
        self.ui.analyzeButton.enabled = hasData and not running
        self.ui.imputationsSpinBox.enabled = not running
        self.ui.seedSpinBox.enabled = not running

    def _outputDir(self) -> Path:
        p = self._parameterNode
        return optionalPath(p.outputDir) or optionalPath(p.dataDir) / "report"

    def onValidate(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Validation failed."), waitCursor=True):
            report, _table = self.logic.validate(optionalPath(self._parameterNode.dataDir))
            slicer.util.infoDisplay(report.summary()[:4000], windowTitle=_("Trial data validation"))

    def onAnalyze(self) -> None:
        """Start the analysis in the background; the job panel follows it (the GUI stays responsive)."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Analysis could not start.")):
            job = self.logic.analyzeInBackground(
                optionalPath(p.dataDir), self._outputDir(), imputations=p.imputations, seed=p.seed
            )
            self.ui.reportLinkLabel.text = ""
            self._jobMonitor.start(job, _("Running analysis…"))
        self._checkCanApply()

    def _onAnalysisSucceeded(self, job) -> None:
        p = self._parameterNode
        reportPath, table = self.logic.loadResults(job.outputPath, p.primaryTable if p else None)
        if p:
            p.primaryTable = table
        self.ui.reportLinkLabel.text = f'<a href="file://{reportPath}">{_("Open report")}</a>'


class TrialAnalysisLogic(ScriptedLoadableModuleLogic):
    """Folder in, report and table nodes out; raises ValueError on invalid data."""

    def getParameterNode(self):
        return TrialAnalysisParameterNode(super().getParameterNode())

    def validate(self, dataDir, tableNode=None):
        """Validate a trial data folder; returns (ValidationReport, table node of the findings)."""
        from TrialAnalysisLib.schema_validation import validate_trial

        report = validate_trial(Path(dataDir))
        table = dataFrameToTable(report.table, tableNode, "Trial data validation")
        logging.info("TrialAnalysis: %d error(s), %d warning(s)", len(report.errors), len(report.warnings))
        return report, table

    def analyze(self, dataDir, outputDir, imputations: int = 20, seed: int = 1, primaryTableNode=None):
        """Validate, run the SAP, write the report; returns (report.html path, primary-result table node).

        Synchronous (console, scripts, tests); the Widget uses :meth:`analyzeInBackground`.
        """
        from TrialAnalysisLib.report import render_report

        report, _ = self.validate(dataDir)
        report.raise_if_errors()
        render_report(Path(dataDir), Path(outputDir), imputations=imputations, seed=seed)
        return self.loadResults(outputDir, primaryTableNode)

    def analyzeInBackground(self, dataDir, outputDir, imputations: int = 20, seed: int = 1):
        """Start ``python -m TrialAnalysisLib analyze --progress`` in its own process; returns the job.

        Poll it (``job.poll()``) or ``job.wait()``; when ``job.status == "succeeded"`` call
        :meth:`loadResults` with ``outputDir``. ``job.cancel()`` stops it and leaves ``outputDir`` as
        it was. Invalid data makes the job fail with the CLI's one-line message (``job.errorMessage``).
        """
        args = ["analyze", "--data", Path(dataDir), "--out", Path(outputDir)]
        args += ["--imputations", int(imputations), "--seed", int(seed), "--progress"]
        moduleDir = Path(__file__).resolve().parent  # holds TrialAnalysisLib
        job = jobs.startLibJob(
            "TrialAnalysisLib",
            args,
            pythonPath=[moduleDir],
            name="Trial analysis",
            stagingFolders=[outputDir],
        )
        job.outputPath = Path(outputDir)
        return job

    def loadResults(self, outputDir, primaryTableNode=None):
        """Primary-result table node from a finished run's results.json; returns (report.html, table).

        A publication of the report that a crash interrupted is finished (or undone) first.
        """
        import pandas as pd

        from ParaspinalLBPCore.staging import recover

        recover(outputDir)
        path = Path(outputDir) / "results.json"
        if not path.is_file():
            raise MissingInputError(f"{path}: no results (the analysis did not finish in this folder)")
        summary = json.loads(path.read_text(encoding="utf-8"))
        rows = []
        for analysis in ("primary_mi", "primary_cc", "primary_pp"):
            for row in summary["primary"][analysis]["tables"]["difference"]:
                rows.append({"analysis": analysis, **row})
        table = dataFrameToTable(
            pd.DataFrame(rows), primaryTableNode, "Primary analysis (ODI change at 12 months)"
        )
        html = Path(outputDir) / "report.html"
        table.SetAttribute("ParaspinalLBP.report", str(html))
        return html, table


class TrialAnalysisTest(ScriptedLoadableModuleTest):
    """Simulate a small trial with a large planted effect, analyse it, check the estimate."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        self.setUp()
        self.test_simulate_and_analyze()

    def test_simulate_and_analyze(self) -> None:
        import tempfile

        from TrialAnalysisLib.simulate import simulate_trial

        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "trial"
            simulate_trial(data, n=160, seed=3)
            truth = json.loads((data / "truth.json").read_text())
            logic = TrialAnalysisLogic()
            report, issues = logic.validate(data)
            self.assertTrue(report.ok, report.summary())
            self.assertEqual(issues.GetNumberOfRows(), len(report.issues))
            html, table = logic.analyze(data, Path(tmp) / "report", imputations=3, seed=1)
            self.assertTrue(Path(html).exists())
            df = slicer.util.dataframeFromTable(table)
            mi = df[df["analysis"] == "primary_mi"].iloc[0]
            effect = float(truth["treatment_effect_odi_12m"])
            # The 95 % CI of the ITT (MI) estimate covers the planted effect for this seed.
            self.assertLess(float(mi["ci_low"]), effect)
            self.assertGreater(float(mi["ci_high"]), effect)
            self.assertEqual(len(df), 3)  # MI, complete case, per protocol
        self.delayDisplay("TrialAnalysis test passed")
