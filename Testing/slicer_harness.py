"""Headless Slicer for tests: a real MRML scene and module logics from the ``slicer-core`` wheel.

Real Slicer provides ``slicer.mrmlScene``, ``slicer.app``, ``slicer.modules`` and the scripted-module
base classes; the PyPI wheel provides only the MRML/logic libraries and Slicer's own
``slicer.util``. :func:`bootstrap` builds the missing pieces the way Slicer's application start-up
does (scene → application logic → colour nodes → module logics registered by name), so each
module's Logic and ``<M>Test`` run unchanged against real MRML. Widgets need Qt and are not
instantiable here (``ScriptedLoadableModuleWidget`` raises).

Only what the project's Logic code calls is provided: loading/saving volumes, label maps,
segmentations, markups and tables through ``slicer.util``, and the parameter-node wrapper used
at class-definition time.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import types
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ("ParaspinalSeg", "ParaspinalRadiomics", "LBPRiskModel", "TrialAnalysis")


class _IOManager:
    """The part of qSlicerCoreIOManager that slicer.util's load/save helpers call."""

    def __init__(self, scene, logics: dict) -> None:
        self.scene = scene
        self.logics = logics

    def fileType(self, filename) -> str:
        name = str(filename).lower()
        if name.endswith(".seg.nrrd") or name.endswith(".seg.nii.gz"):
            return "SegmentationFile"
        if name.endswith(".mrk.json"):
            return "MarkupsFile"
        if name.endswith((".csv", ".tsv")):
            return "TableFile"
        return "VolumeFile"

    def loadNodes(self, filetype, properties, loaded, messages) -> bool:
        filename = str(properties["fileName"])
        name = properties.get("name") or Path(filename).name.split(".")[0]
        node = None
        if filetype == "VolumeFile":
            flags = 1 if properties.get("labelmap") else 0
            node = self.logics["Volumes"].AddArchetypeVolume(filename, name, flags)
        elif filetype == "SegmentationFile":
            node = self.logics["Segmentations"].LoadSegmentationFromFile(filename, False)
            if node is not None and properties.get("name"):
                node.SetName(properties["name"])
        elif filetype == "MarkupsFile":
            node_id = self.logics["Markups"].LoadMarkups(filename)
            node = self.scene.GetNodeByID(node_id) if node_id else None
        elif filetype == "TableFile":
            node = self.logics["Tables"].AddTable(filename, name)
        else:
            messages.AddMessage(3, f"unsupported file type {filetype}") if messages else None
            return False
        if node is None:
            return False
        loaded.AddItem(node)
        return True

    def fileWriterFileType(self, node) -> str:
        return "NoFile"

    def saveNodes(self, filetype, properties, messages) -> bool:
        node = self.scene.GetNodeByID(properties["nodeID"])
        storage = node.GetStorageNode()
        if storage is None:
            storage = node.CreateDefaultStorageNode()
            self.scene.AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
        storage.SetFileName(str(properties["fileName"]))
        return bool(storage.WriteData(node))


class _App:
    """Minimal ``slicer.app``: IO manager, temporary path, testing mode, no GUI."""

    def __init__(self, scene, logics: dict) -> None:
        self._io = _IOManager(scene, logics)
        self.temporaryPath = tempfile.mkdtemp(prefix="slicer-harness-")
        self.commandOptions = types.SimpleNamespace(noMainWindow=True)

    def coreIOManager(self) -> _IOManager:
        return self._io

    ioManager = coreIOManager

    def testingEnabled(self) -> bool:
        return True

    def processEvents(self) -> None:
        return None

    def connect(self, *args) -> None:
        return None


class _ModuleNamespace(types.SimpleNamespace):
    """``slicer.modules``: attribute per module (lower-case name) with ``logic()``."""


def _logic_holder(logic):
    return types.SimpleNamespace(logic=lambda: logic)


def _scripted_module_api(slicer) -> types.ModuleType:
    """``slicer.ScriptedLoadableModule`` with the four base classes."""
    mod = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent) -> None:
            self.parent = parent
            self.moduleName = self.__class__.__name__
            parent.title = self.moduleName
            parent.categories, parent.dependencies, parent.contributors = [], [], []
            parent.helpText = parent.acknowledgementText = ""

        def resourcePath(self, filename: str) -> str:
            module_dir = Path(sys.modules[self.__class__.__module__].__file__).parent
            return str(module_dir / "Resources" / filename)

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None) -> None:
            raise RuntimeError("Widgets need real Slicer (Qt/CTK); headless tests exercise the Logic")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None) -> None:
            self.moduleName = self.__class__.__name__.removesuffix("Logic")

        def getParameterNode(self):
            node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetName(self.moduleName)
                node.SetSingletonTag(self.moduleName)
                node.SetAttribute("ModuleName", self.moduleName)
                node = slicer.mrmlScene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message: str, msec: int = 0) -> None:
            print(message)

    for cls in (
        ScriptedLoadableModule,
        ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
    ):
        setattr(mod, cls.__name__, cls)
    mod.__all__ = [c for c in dir(mod) if c.startswith("Scripted")]
    return mod


def _parameter_node_wrapper_api() -> types.ModuleType:
    """``slicer.parameterNodeWrapper``: the decorator keeps the class usable as a plain holder."""
    mod = types.ModuleType("slicer.parameterNodeWrapper")

    def parameterNodeWrapper(cls):
        def __init__(self, node=None):
            self.parameterNode = node
            for name in getattr(cls, "__annotations__", {}):
                if not hasattr(self, name):
                    setattr(self, name, None)

        cls.__init__ = __init__
        return cls

    class _Annotation:
        def __init__(self, *args, **kwargs) -> None:
            self.args, self.kwargs = args, kwargs

    mod.parameterNodeWrapper = parameterNodeWrapper
    for name in ("WithinRange", "Default", "Choice", "Minimum", "Maximum", "Decimals", "SingleStep"):
        setattr(mod, name, type(name, (_Annotation,), {}))
    return mod


def _i18n_api() -> types.ModuleType:
    mod = types.ModuleType("slicer.i18n")
    mod.tr = lambda text: text
    mod.translate = lambda context, text: text
    return mod


def bootstrap():
    """Create the scene, application logic and module logics once; return the ``slicer`` module."""
    import slicer

    if getattr(slicer, "mrmlScene", None) is not None:
        return slicer
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app_logic)
    colors.SetMRMLScene(scene)
    logics = {"Colors": colors}
    factories = {
        "Volumes": slicer.vtkSlicerVolumesLogic,
        "Segmentations": slicer.vtkSlicerSegmentationsModuleLogic,
        "Tables": slicer.vtkSlicerTablesLogic,
        "Markups": slicer.vtkSlicerMarkupsLogic,
        "Plots": slicer.vtkSlicerPlotsLogic,
        "Models": slicer.vtkSlicerModelsLogic,
        "Transforms": slicer.vtkSlicerTransformLogic,
    }
    for name, factory in factories.items():
        logic = factory()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        logics[name] = logic
    for name, logic in logics.items():
        app_logic.SetModuleLogic(name, logic)
    if scene.GetFirstNodeByClass("vtkMRMLColorTableNode") is None:
        colors.AddDefaultColorNodes()

    slicer.mrmlScene = scene
    slicer.app = _App(scene, logics)
    slicer.modules = _ModuleNamespace(
        **{name.lower(): _logic_holder(logic) for name, logic in logics.items()}
    )
    slicer.applicationLogic = app_logic
    sys.modules["slicer.ScriptedLoadableModule"] = slicer.ScriptedLoadableModule = _scripted_module_api(
        slicer
    )
    sys.modules["slicer.parameterNodeWrapper"] = slicer.parameterNodeWrapper = _parameter_node_wrapper_api()
    sys.modules["slicer.i18n"] = slicer.i18n = _i18n_api()
    importlib.import_module("slicer.util")
    for module in MODULES:
        path = str(REPO / module)
        if path not in sys.path:
            sys.path.insert(0, path)
    return slicer


def import_module_file(name: str):
    """Import ``<name>.py`` the way Slicer does (module folder on sys.path); registers its logic."""
    slicer = bootstrap()
    module = importlib.import_module(name)
    holder = getattr(slicer.modules, name.lower(), None)
    if holder is None:
        logic_cls = getattr(module, f"{name}Logic")
        setattr(slicer.modules, name.lower(), types.SimpleNamespace(logic=logic_cls))
    return module
