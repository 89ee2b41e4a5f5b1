"""TrialAnalysis: the METNLBP statistical analysis plan from Slicer (and headless).

Thin Slicer layer over ``TrialAnalysisLib``: pick a trial data folder (the simulator's documented
CSV schema, or a real export mapped to it), validate it, run the SAP and render the HTML/PDF
report; the primary ANCOVA result and the validation findings land in table nodes. Statisticians
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
    """Folder pickers and two buttons; all work in the Logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None

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
        self._parameterNode = self.logic.getParameterNode()
        self._parameterNode.connectGui(self.ui)
        self._updateButtons()

    def cleanup(self) -> None:
        self.removeObservers()

    def _updateButtons(self, *args) -> None:
        hasData = bool(self.ui.dataDirPathLineEdit.currentPath)
        self.ui.validateButton.enabled = hasData
        self.ui.analyzeButton.enabled = hasData

    def onValidate(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Validation failed."), waitCursor=True):
            report, _table = self.logic.validate(self.ui.dataDirPathLineEdit.currentPath)
            slicer.util.infoDisplay(report.summary()[:4000], windowTitle=_("Trial data validation"))

    def onAnalyze(self) -> None:
        p = self._parameterNode
        out = self.ui.outputDirPathLineEdit.currentPath or str(
            Path(self.ui.dataDirPathLineEdit.currentPath) / "report"
        )
        with slicer.util.tryWithErrorDisplay(_("Analysis failed."), waitCursor=True):
            self.ui.progressBar.setRange(0, 0)
            reportPath, p.primaryTable = self.logic.analyze(
                self.ui.dataDirPathLineEdit.currentPath,
                out,
                imputations=p.imputations,
                seed=p.seed,
                primaryTableNode=p.primaryTable,
            )
            self.ui.progressBar.setRange(0, 1)
            self.ui.progressBar.value = 1
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
        """Validate, run the SAP, write the report; returns (report.html path, primary-result table node)."""
        import pandas as pd

        from TrialAnalysisLib.report import render_report

        report, _ = self.validate(dataDir)
        report.raise_if_errors()
        html = render_report(Path(dataDir), Path(outputDir), imputations=imputations, seed=seed)
        summary = json.loads((Path(outputDir) / "results.json").read_text(encoding="utf-8"))
        rows = []
        for analysis in ("primary_mi", "primary_cc", "primary_pp"):
            for row in summary["primary"][analysis]["tables"]["difference"]:
                rows.append({"analysis": analysis, **row})
        table = self._table(
            pd.DataFrame(rows), primaryTableNode, "Primary analysis (ODI change at 12 months)"
        )
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
