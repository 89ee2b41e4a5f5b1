"""LBPRiskModel: apply the trial's verified response/recurrence model to the current case in Slicer.

Thin Slicer layer over ``LBPRiskModelLib``: load a model bundle (SHA-256 verified; refuses a
tampered or incompatible one), gather the case's imaging predictors from the ParaspinalRadiomics
feature table and the ParaspinalSeg measurement table (pivoted exactly as in training), add the
clinical values typed into the form, and show risk, risk group and per-feature contributions.
*Train* runs ``lbp-riskmodel train --progress`` in a background process (cancellable) and loads the
new bundle; reports and the web calculator are the ``lbp-riskmodel`` command line. From the console::

    job = LBPRiskModelLogic().trainInBackground("bundle/", "responder", data="table.csv")
    job.wait(); bundle = LBPRiskModelLogic.loadBundle(job.outputPath)
"""

from __future__ import annotations

import logging
from pathlib import Path

import slicer
import vtk
from slicer import vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPSlicer import jobs
from ParaspinalLBPSlicer.requirements import ensureRequirements
from ParaspinalLBPSlicer.tables import dataFrameToTable, tableToDataFrame
from ParaspinalLBPSlicer.widgets import JobMonitor, optionalPath


class LBPRiskModel(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LBP Risk Model")
        self.parent.categories = [_("Paraspinal LBP")]
        self.parent.dependencies = ["ParaspinalSeg"]
        self.parent.contributors = ["ParaspinalLBP developers (METNLBP trial modelling core)"]
        self.parent.helpText = _(
            "Step 3 of the METNLBP workflow: predicts treatment response (12-month ODI improvement >= MCID) "
            "or recurrence risk for the current case with the trial's deployed model bundle. Imaging "
            "predictors come from the ParaspinalRadiomics feature table and the ParaspinalSeg measurement "
            "table; clinical values are typed into the form. Shows the risk with its uncertainty interval, "
            "the risk group and the contribution of each predictor (SHAP values). For research use within "
            "the trial; see the bundle's model card for intended use. "
            '<a href="https://github.com/paraspinal-lbp/ParaspinalLBP/blob/main/docs/riskmodel.md">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Model built with scikit-learn, XGBoost and LightGBM, explained with SHAP and LIME, reported to "
            "TRIPOD+AI. Developed for the METNLBP randomised controlled trial."
        )


@parameterNodeWrapper
class LBPRiskModelParameterNode:
    """Every choice of the Widget, saved with the scene (the clinical values typed into the form too)."""

    bundlePath: Path
    featuresTable: vtkMRMLTableNode
    measurementsTable: vtkMRMLTableNode
    contributionsTable: vtkMRMLTableNode
    clinicalValues: dict[str, str]
    trainingData: Path  # modelling table (CSV, one row per case), or:
    trialData: Path  # the trial's data folder (C6) joined with
    trainingFeatures: Path  # ... a feature table (C5) and
    trainingMeasurements: Path  # ... a measurement table (C4)
    outcome: str = "responder"  # column, or responder:VISIT:MCID / recurrence:MONTHS with trialData
    trainingConfig: Path  # YAML overriding the protocol configuration (optional)
    quickTraining: bool = False
    trainingFigures: bool = True
    trainingOutput: Path  # bundle folder to write


class LBPRiskModelWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Bundle picker, clinical-value form generated from the bundle schema, result label."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.bundle = None
        self._bundleSource = None  # the path self.bundle was loaded (or refused) from
        self._jobMonitor = None

    def setup(self) -> None:
        """Load the UI, create the Logic, observe scene closing, bind the parameter node."""
        ScriptedLoadableModuleWidget.setup(self)
        ensureRequirements(["pandas", "scipy", "sklearn", "lightgbm", "xgboost", "skops", "yaml"])
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LBPRiskModel.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LBPRiskModelLogic()
        self._jobMonitor = JobMonitor(
            self.ui.trainProgressBar,
            self.ui.trainLogTextEdit,
            self.ui.trainStatusLabel,
            self.ui.trainCancelButton,
            onSucceeded=self._onTrainingSucceeded,
            onEnded=self._checkCanApply,
            what=_("Training"),
        )
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.clinicalTableWidget.connect("cellChanged(int,int)", self.onClinicalValueChanged)
        self.ui.predictButton.connect("clicked(bool)", self.onPredict)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module widget destroyed (application exit): cancel a running training, unbind, stop observing."""
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

    def setParameterNode(self, inputParameterNode: LBPRiskModelParameterNode | None) -> None:
        """Bind the GUI to ``inputParameterNode`` (None: unbind) and observe it (bundle, form, buttons)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Follow the bundle path (load and verify a new bundle), then enable Predict when one is loaded."""
        p = self._parameterNode
        path = optionalPath(p.bundlePath) if p else None
        if path != self._bundleSource:
            self._loadBundle(path)
        self.ui.predictButton.enabled = self.bundle is not None
        running = self._jobMonitor is not None and self._jobMonitor.running
        hasData = bool(p and (optionalPath(p.trainingData) or optionalPath(p.trialData)))
        self.ui.trainButton.enabled = (
            bool(hasData and optionalPath(p.trainingOutput) and p.outcome) and not running
        )

    def _loadBundle(self, path: Path | None) -> None:
        """Verify and load the bundle, then list its clinical fields in the form (errors in the label)."""
        import qt

        self.bundle, self._bundleSource = None, path
        self.ui.bundleInfoLabel.text = ""
        fields = []
        if path is not None:
            try:
                with slicer.util.WaitCursor():
                    self.bundle = self.logic.loadBundle(path)
            except Exception as exc:  # shown where the user looks; the Logic names the bad file
                self.ui.bundleInfoLabel.text = _("Not loaded: ") + str(exc)
            else:
                meta = self.bundle.metadata
                self.ui.bundleInfoLabel.text = (
                    f"{meta.get('model_name', '')} · {self.bundle.bundle_hash[:12]}"
                )
                fields = [f for f in self.bundle.schema if f.group == "clinical"]
        values = dict(self._parameterNode.clinicalValues or {}) if self._parameterNode else {}
        table = self.ui.clinicalTableWidget
        wasBlocked = table.blockSignals(True)  # filling the form is not the user typing
        table.setColumnCount(2)
        table.setRowCount(len(fields))
        table.setHorizontalHeaderLabels([_("Variable"), _("Value")])
        for row, spec in enumerate(fields):
            unit = f" ({spec.unit})" if spec.unit else ""
            item = qt.QTableWidgetItem(spec.label_en + unit)
            item.setData(qt.Qt.UserRole, spec.name)
            item.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable)
            item.setToolTip(spec.help_en)
            table.setItem(row, 0, item)
            table.setItem(row, 1, qt.QTableWidgetItem(values.get(spec.name, "")))
        table.blockSignals(wasBlocked)

    def _clinicalValues(self) -> dict[str, str]:
        """{field name: typed text} of the non-empty rows of the form."""
        import qt

        values = {}
        table = self.ui.clinicalTableWidget
        for row in range(table.rowCount):
            name = table.item(row, 0).data(qt.Qt.UserRole)
            text = table.item(row, 1).text().strip() if table.item(row, 1) else ""
            if text:
                values[name] = text
        return values

    def onClinicalValueChanged(self, row: int, column: int) -> None:
        """Keep the typed clinical values in the parameter node (saved with the scene)."""
        if self._parameterNode:
            self._parameterNode.clinicalValues = self._clinicalValues()

    def onPredict(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Prediction failed."), waitCursor=True):
            record = self.logic.caseRecord(
                self.bundle, p.featuresTable, p.measurementsTable, self._clinicalValues()
            )
            prediction, p.contributionsTable = self.logic.predict(self.bundle, record, p.contributionsTable)
            self.ui.riskLabel.text = (
                f"<b>{100 * prediction.risk:.0f} %</b> ({100 * prediction.ci_low:.0f}–{100 * prediction.ci_high:.0f} %), "
                f"{_('risk group')}: <b>{prediction.risk_group}</b>"
            )

    def onTrain(self) -> None:
        """Start training in the background; the job panel follows it and the new bundle is loaded."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Training could not start.")):
            job = self.logic.trainInBackground(
                optionalPath(p.trainingOutput),
                p.outcome,
                data=optionalPath(p.trainingData),
                clinical=optionalPath(p.trialData),
                features=optionalPath(p.trainingFeatures),
                measurements=optionalPath(p.trainingMeasurements),
                config=optionalPath(p.trainingConfig),
                quick=p.quickTraining,
                figures=p.trainingFigures,
            )
            self._jobMonitor.start(job, _("Training…"))
        self._checkCanApply()

    def _onTrainingSucceeded(self, job) -> None:
        self._bundleSource = None  # reload even when the path is the one already shown
        if self._parameterNode:
            self._parameterNode.bundlePath = job.outputPath
        self._checkCanApply()


class LBPRiskModelLogic(ScriptedLoadableModuleLogic):
    """Bundle + table nodes + clinical dict → Prediction and a contributions table node."""

    def getParameterNode(self):
        return LBPRiskModelParameterNode(super().getParameterNode())

    @staticmethod
    def loadBundle(path):
        """Load and verify a model bundle (raises LBPRiskModelLib.bundle.BundleError naming the bad file)."""
        from LBPRiskModelLib import bundle as bundle_api

        return bundle_api.load_bundle(Path(path))

    @staticmethod
    def _trainingOptions(outcome, data, clinical, features, measurements, config, quick, figures) -> dict:
        """The ``train`` options as one dict (the same for both ways of running it); checks the inputs."""
        if not outcome:
            raise BadInputError("name the outcome (a column, or responder:VISIT:MCID / recurrence:MONTHS)")
        if data is None and clinical is None:
            raise BadInputError("choose a modelling table, or the trial data folder to assemble one from")
        return {
            "data": data,
            "clinical": clinical,
            "features": features,
            "measurements": measurements,
            "config": config,
            "quick": bool(quick),
            "figures": bool(figures),
        }

    def train(
        self,
        outputDir,
        outcome: str,
        data=None,
        clinical=None,
        features=None,
        measurements=None,
        config=None,
        quick: bool = False,
        figures: bool = True,
    ):
        """Train and write a bundle here (console, tests); returns the loaded, verified bundle.

        The same as ``lbp-riskmodel train`` and :meth:`trainInBackground`: ``data`` is a modelling
        table (CSV), or the table is assembled from the trial folder ``clinical`` + ``features`` /
        ``measurements`` tables; ``config`` a YAML overriding the protocol; ``quick`` the demo preset.
        """
        from LBPRiskModelLib.train_cli import train_from_files

        options = self._trainingOptions(
            outcome, data, clinical, features, measurements, config, quick, figures
        )
        train_from_files(outputDir, outcome, progress=False, **options)
        return self.loadBundle(outputDir)

    def trainInBackground(
        self,
        outputDir,
        outcome: str,
        data=None,
        clinical=None,
        features=None,
        measurements=None,
        config=None,
        quick: bool = False,
        figures: bool = True,
    ):
        """Start ``python -m LBPRiskModelLib train --progress`` in its own process; returns the job.

        Options as :meth:`train`. Follow it with ``job.poll()``/``job.wait()``; when it succeeded,
        ``loadBundle(job.outputPath)``. ``job.cancel()`` leaves an existing bundle at ``outputDir`` as
        it was; bad input makes the job fail with the CLI's one-line message (``job.errorMessage``).
        """
        options = self._trainingOptions(
            outcome, data, clinical, features, measurements, config, quick, figures
        )
        args = ["train", "--outcome", outcome, "--out", Path(outputDir), "--progress"]
        for name in ("data", "clinical", "features", "measurements", "config"):
            if options[name] is not None:
                args += [f"--{name}", Path(options[name])]
        args += ["--quick"] if options["quick"] else []
        args += [] if options["figures"] else ["--no-figures"]
        moduleDir = Path(__file__).resolve().parent  # holds LBPRiskModelLib
        job = jobs.startLibJob(
            "LBPRiskModelLib",
            args,
            pythonPath=[moduleDir],
            name="Model training",
            stagingFolders=[Path(outputDir).parent],
        )
        job.outputPath = Path(outputDir)
        return job

    def caseRecord(
        self, bundle, featuresTable=None, measurementsTable=None, clinical: dict | None = None
    ) -> dict:
        """One input record for the bundle: imaging predictors pivoted as in training + clinical values."""
        import pandas as pd

        from LBPRiskModelLib import dataset

        wide = []
        features = tableToDataFrame(featuresTable)
        if features is not None and len(features):
            wide.append(dataset.pivot_features(features.assign(case_id="case")))
        measurements = tableToDataFrame(measurementsTable)
        if measurements is not None and len(measurements):
            measurements = measurements.assign(case_id="case")
            if "slice" in measurements.columns:
                measurements["slice"] = pd.to_numeric(measurements["slice"], errors="coerce")
            wide.append(dataset.pivot_measurements(measurements))
        imaging = pd.concat(wide, axis=1).iloc[0].to_dict() if wide else {}
        fields = {f.name for f in bundle.schema}
        record = {k: v for k, v in imaging.items() if k in fields and pd.notna(v)}
        record.update(clinical or {})
        unknown = sorted(set(clinical or {}) - fields)
        if unknown:
            raise BadInputError(f"clinical values for fields the model does not use: {', '.join(unknown)}")
        return record

    def predict(self, bundle, record: dict, contributionsTable=None):
        """Validate and predict one case; returns (Prediction, table node of per-feature contributions)."""
        import pandas as pd

        check = bundle.validate(record)
        if check.errors:
            raise BadInputError("; ".join(f"{k}: {v}" for k, v in check.errors.items()))
        prediction = bundle.predict_one(record)
        df = pd.DataFrame(prediction.contributions, columns=["feature", "value", "contribution"])
        df["value"] = df["value"].astype(str)
        table = dataFrameToTable(df, contributionsTable, "Risk contributions")
        table.SetAttribute("ParaspinalLBP.risk", f"{prediction.risk:.6f}")
        table.SetAttribute("ParaspinalLBP.risk_group", prediction.risk_group)
        logging.info("LBPRiskModel: risk %.3f (%s)", prediction.risk, prediction.risk_group)
        return prediction, table


class LBPRiskModelTest(ScriptedLoadableModuleTest):
    """Train a quick bundle on synthetic data with one planted imaging predictor, predict from table nodes."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        self.setUp()
        self.test_predict_from_tables()

    def test_predict_from_tables(self) -> None:
        import tempfile

        import numpy as np
        import pandas as pd

        from LBPRiskModelLib.export import train
        from LBPRiskModelLib.train import load_config

        rng = np.random.default_rng(0)
        n = 160
        ff = rng.uniform(5, 45, n)
        age = rng.uniform(60, 85, n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(ff - 25) / 4))).astype(int)
        df = pd.DataFrame(
            {
                "case_id": [f"P{i:03d}" for i in range(n)],
                "fat_fraction_pct__multifidus_left__L4": ff,
                "noise__multifidus_left__L4": rng.normal(size=n),
                "age": age,
                "responder": y,
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(None, quick=True)
            cfg["families"] = ["logistic_regression"]  # one family keeps the self-test fast
            train(df, "responder", cfg, Path(tmp) / "bundle", progress=False, figures_on=False)
            logic = LBPRiskModelLogic()
            bundle = logic.loadBundle(Path(tmp) / "bundle")
            meas = pd.DataFrame(
                {
                    "case_id": ["x"],
                    "structure": ["multifidus_left"],
                    "side": ["left"],
                    "level": ["L4"],
                    "slice": [np.nan],
                    "fat_fraction_pct": [40.0],
                    "csa_cm2": [6.0],
                }
            )
            measNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "meas")
            dataFrameToTable(meas, measNode)
            fields = {f.name for f in bundle.schema}
            clinical = {"age": 70.0} if "age" in fields else {}
            record_hi = logic.caseRecord(bundle, None, measNode, clinical)
            if "fat_fraction_pct__multifidus_left__L4" in fields:
                self.assertEqual(record_hi["fat_fraction_pct__multifidus_left__L4"], 40.0)
            pred_hi, table = logic.predict(bundle, record_hi)
            meas.loc[0, "fat_fraction_pct"] = 8.0
            dataFrameToTable(meas, measNode)
            pred_lo, _ = logic.predict(bundle, logic.caseRecord(bundle, None, measNode, clinical))
            # The planted predictor drives the risk: fatty multifidus → higher predicted risk.
            self.assertGreater(pred_hi.risk, pred_lo.risk + 0.2)
            self.assertTrue(0.0 <= pred_hi.ci_low <= pred_hi.risk <= pred_hi.ci_high <= 1.0)
            self.assertEqual(table.GetNumberOfRows(), len(pred_hi.contributions))
            # Identical to the Lib's own batch prediction on the same record.
            batch = bundle.predict(pd.DataFrame([record_hi]))
            self.assertAlmostEqual(float(batch["risk"].iloc[0]), pred_hi.risk, places=12)
        self.delayDisplay("LBPRiskModel test passed")
