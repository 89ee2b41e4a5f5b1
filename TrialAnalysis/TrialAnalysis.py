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
from typing import TYPE_CHECKING, Annotated

import slicer
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

if TYPE_CHECKING:
    import pandas as pd


class TrialAnalysis(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Trial Analysis")
        self.parent.categories = [_("Paraspinal LBP")]
        self.parent.dependencies = ["ParaspinalSeg"]  # table-node helpers
        self.parent.contributors = ["ParaspinalLBP developers (METNLBP trial statistics core)"]
        self.parent.helpText = _(
            "The METNLBP trial's statistical analysis plan: data validation against the trial schema, "
            "ITT primary analysis of 12-month ODI change by ANCOVA (baseline ODI, sex, centre; multiple "
            "imputation with Rubin's rules; complete-case and per-protocol sensitivity), mixed models by "
            "visit with Satterthwaite df, Kaplan-Meier/log-rank/Cox for recurrence, adverse events, "
            "compliance, NASS satisfaction, CONSORT and Table 1, rendered as an HTML/PDF report. The "
            "same functions are available from Python (TrialAnalysisLib) and the trial-analysis CLI. "
            '<a href="https://github.com/paraspinal-lbp/ParaspinalLBP#which-module-do-i-need">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Methods validated against R (stats, lme4, survival) reference values. Developed for the "
            "METNLBP randomised controlled trial."
        )


@parameterNodeWrapper
class TrialAnalysisParameterNode:
    """Widget state."""

    primaryTable: vtkMRMLTableNode
    imputations: Annotated[int, WithinRange(1, 200)] = 20
    seed: Annotated[int, WithinRange(0, 999999)] = 1


class TrialAnalysisWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Folder pickers, Validate, Analyze (background job polled by a timer) and Cancel; work in the Logic."""

    POLL_MS = 300

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._job = None
        self._jobOutputDir = None
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        import ParaspinalSeg

        ParaspinalSeg.ensureRequirements(
            ["pandas", "scipy", "statsmodels", "lifelines", "matplotlib", "jinja2"]
        )
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TrialAnalysis.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TrialAnalysisLogic()
        self.ui.dataDirPathLineEdit.filters = 0x1  # ctkPathLineEdit.Dirs
        self.ui.outputDirPathLineEdit.filters = 0x1
        self.ui.dataDirPathLineEdit.connect("currentPathChanged(QString)", self._updateButtons)
        self.ui.validateButton.connect("clicked(bool)", self.onValidate)
        self.ui.analyzeButton.connect("clicked(bool)", self.onAnalyze)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        import qt

        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_MS)
        self._timer.connect("timeout()", self._pollJob)
        self._parameterNode = self.logic.getParameterNode()
        self._parameterNode.connectGui(self.ui)
        self._updateButtons()

    def cleanup(self) -> None:
        """Closing the module (or Slicer) stops a running analysis: no orphan process."""
        if self._timer is not None:
            self._timer.stop()
        if self._job is not None and self._job.running:
            self._job.cancel(grace=2.0)
            self._job.wait(timeout=3.0)  # on application exit, let the kill escalation happen
        self.removeObservers()

    def _updateButtons(self, *args) -> None:
        running = self._job is not None and self._job.running
        hasData = bool(self.ui.dataDirPathLineEdit.currentPath)
        self.ui.validateButton.enabled = hasData and not running
        self.ui.analyzeButton.enabled = hasData and not running
        self.ui.cancelButton.enabled = running
        self.ui.imputationsSpinBox.enabled = not running
        self.ui.seedSpinBox.enabled = not running

    def onValidate(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Validation failed."), waitCursor=True):
            report, _table = self.logic.validate(self.ui.dataDirPathLineEdit.currentPath)
            slicer.util.infoDisplay(report.summary()[:4000], windowTitle=_("Trial data validation"))

    def onAnalyze(self) -> None:
        """Start the analysis in the background; the timer follows it (the GUI stays responsive)."""
        p = self._parameterNode
        out = self.ui.outputDirPathLineEdit.currentPath or str(
            Path(self.ui.dataDirPathLineEdit.currentPath) / "report"
        )
        with slicer.util.tryWithErrorDisplay(_("Analysis could not start.")):
            self._job = self.logic.analyzeInBackground(
                self.ui.dataDirPathLineEdit.currentPath, out, imputations=p.imputations, seed=p.seed
            )
            self._jobOutputDir = out
            self.ui.logTextEdit.clear()
            self.ui.reportLinkLabel.text = ""
            self.ui.progressBar.setRange(0, 0)  # busy until the first PROGRESS line
            self.ui.progressBar.setFormat(_("starting"))
            self.ui.statusLabel.text = _("Running analysis…")
            self._timer.start()
        self._updateButtons()

    def onCancel(self) -> None:
        if self._job is not None and self._job.running:
            self._job.cancel()
            self.ui.statusLabel.text = _("Cancelling…")
            self.ui.cancelButton.enabled = False

    def _pollJob(self) -> None:
        """Timer slot: show new log lines and progress; when the job ends, load or report the result."""
        job = self._job
        if job is None:
            self._timer.stop()
            return
        update = job.poll()
        for line in update.lines:
            self.ui.logTextEdit.appendPlainText(line)
        if update.total:
            self.ui.progressBar.setRange(0, update.total)
            self.ui.progressBar.value = update.done
            self.ui.progressBar.setFormat(f"{update.stage} (%v/%m)")
        if update.status == "running":
            return
        self._timer.stop()
        self._updateButtons()
        if update.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; the report folder was left as it was.")
            self.ui.progressBar.setRange(0, 1)
            self.ui.progressBar.value = 0
            self.ui.progressBar.setFormat(_("cancelled"))
            return
        if update.status == "failed":
            self.ui.statusLabel.text = _("Analysis failed.")
            slicer.util.errorDisplay(job.errorMessage, windowTitle=_("Analysis failed."))
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("The analysis results could not be loaded.")):
            reportPath, p.primaryTable = self.logic.loadResults(self._jobOutputDir, p.primaryTable)
            self.ui.statusLabel.text = _("Done in {seconds:.0f} s.").format(seconds=job.elapsed)
            self.ui.reportLinkLabel.text = f'<a href="file://{reportPath}">{_("Open report")}</a>'


class TrialAnalysisLogic(ScriptedLoadableModuleLogic):
    """Folder in, report and table nodes out; raises ValueError on invalid data."""

    def getParameterNode(self):
        return TrialAnalysisParameterNode(super().getParameterNode())

    @staticmethod
    def _table(df: pd.DataFrame, tableNode=None, name: str = "Table"):
        import ParaspinalSeg

        return ParaspinalSeg.ParaspinalSegLogic.dataFrameToTable(df, tableNode, name)

    def validate(self, dataDir, tableNode=None):
        """Validate a trial data folder; returns (ValidationReport, table node of the findings)."""
        from TrialAnalysisLib.schema import validate_trial

        report = validate_trial(Path(dataDir))
        table = self._table(report.table, tableNode, "Trial data validation")
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
        from ParaspinalLBPSlicer import jobs

        args = ["analyze", "--data", Path(dataDir), "--out", Path(outputDir)]
        args += ["--imputations", int(imputations), "--seed", int(seed), "--progress"]
        moduleDir = Path(__file__).resolve().parent  # holds TrialAnalysisLib
        return jobs.startLibJob("TrialAnalysisLib", args, pythonPath=[moduleDir], name="Trial analysis")

    def loadResults(self, outputDir, primaryTableNode=None):
        """Primary-result table node from a finished run's results.json; returns (report.html, table)."""
        import pandas as pd

        path = Path(outputDir) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results (the analysis did not finish in this folder)")
        summary = json.loads(path.read_text(encoding="utf-8"))
        rows = []
        for analysis in ("primary_mi", "primary_cc", "primary_pp"):
            for row in summary["primary"][analysis]["tables"]["difference"]:
                rows.append({"analysis": analysis, **row})
        table = self._table(
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
