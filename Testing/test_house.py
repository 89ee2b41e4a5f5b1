"""Static checks of the extension's house rules (run by ``make test``; no Slicer needed).

- every widget name a module's Python uses (``self.ui.<name>``) exists in its ``.ui`` file;
- every Python file and resource of a module is listed in its CMakeLists.txt, and every listed file exists;
- ``<M>Lib`` never imports slicer/qt/ctk/vtk nor another module's Lib (modules exchange files/DataFrames);
  shared plain-Python code lives in ``ParaspinalLBPCore``, which every Lib may import and which imports no Lib;
- module metadata is real (title, category, contributors, help), the four classes exist, files stay small;
- icons are 128×128 PNG; runtime dependencies are pinned; the code is ruff-clean;
- no two source files are copies of each other; the muscle/level vocabulary is spelled out only in the core;
- ``--help`` of every command line loads no heavy engine (sub-commands are imported lazily).
"""

from __future__ import annotations

import ast
import re
import struct
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = ("ParaspinalSeg", "ParaspinalRadiomics", "LBPRiskModel", "TrialAnalysis")
LIBS = {f"{m}Lib" for m in MODULES}
sys.path.insert(0, str(REPO / "Testing" / "tools"))
import update_cmake_lists  # noqa: E402


def _ui_names(module: str) -> set[str]:
    tree = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui")
    return {w.get("name") for w in tree.iter() if w.tag in ("widget", "layout") and w.get("name")}


@pytest.mark.parametrize("module", MODULES)
def test_widget_names_exist_in_ui(module: str) -> None:
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    missing = used - _ui_names(module)
    assert not missing, f"{module}.py uses widgets missing from {module}.ui: {sorted(missing)}"


@pytest.mark.parametrize("module", MODULES)
def test_parameter_names_bound_in_ui_exist_in_parameter_node(module: str) -> None:
    """Every SlicerParameterName in the .ui is a field of the module's parameter node class."""
    tree = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui")
    bound = {
        prop.find("string").text
        for prop in tree.iter("property")
        if prop.get("name") == "SlicerParameterName" and prop.find("string") is not None
    }
    source = ast.parse((REPO / module / f"{module}.py").read_text(encoding="utf-8"))
    fields: set[str] = set()
    for node in ast.walk(source):
        if isinstance(node, ast.ClassDef) and node.name == f"{module}ParameterNode":
            fields = {
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
    assert fields, f"{module}.py has no {module}ParameterNode class"
    assert bound <= fields, f"{module}.ui binds unknown parameters {sorted(bound - fields)}"


def _connector_accepts(widget_class: str, annotation: str) -> bool:
    """Mirror of the type rules of Slicer's parameterNodeWrapper GUI connectors (guiConnectors.py)."""
    base = annotation.removeprefix("Annotated[").split(",")[0].rstrip("]").strip()
    if widget_class == "QComboBox":  # needs a Choice annotation (or an Enum) to know its items
        return "Choice(" in annotation
    if widget_class.startswith("qMRML"):
        return base.startswith("vtkMRML")
    if widget_class in ("ctkPathLineEdit", "ctkDirectoryButton"):  # ctkPathLineEditToPathConnector
        return base in ("Path", "pathlib.Path")
    return {"QCheckBox": "bool", "QLineEdit": "str", "QSpinBox": "int", "QSlider": "int"}.get(
        widget_class
    ) == base or (widget_class in ("QDoubleSpinBox", "ctkSliderWidget") and base == "float")


@pytest.mark.parametrize("module", MODULES)
def test_bound_widgets_have_a_gui_connector(module: str) -> None:
    """Each widget bound with SlicerParameterName has a type connectGui can connect (else real Slicer
    raises 'Unable to create GUI connector' when the module opens)."""
    tree = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui")
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    annotations = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == f"{module}ParameterNode":
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    annotations[stmt.target.id] = ast.get_source_segment(source, stmt.annotation)
    bad = []
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                name = prop.find("string").text
                if name in annotations and not _connector_accepts(widget.get("class"), annotations[name]):
                    bad.append(f"{widget.get('name')} ({widget.get('class')}) -> {name}: {annotations[name]}")
    assert not bad, f"{module}.ui binds widgets no GUI connector accepts: {bad}"


@pytest.mark.parametrize("module", MODULES)
def test_cmake_lists_every_file(module: str) -> None:
    cmake = (REPO / module / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+([\w./-]+\.\w+)\s*$", cmake, flags=re.M))
    scripts, resources = update_cmake_lists.module_files(module)
    missing = sorted(set(scripts + resources) - listed)
    assert not missing, f"{module}/CMakeLists.txt does not list {missing} (run `make cmake-lists`)"
    absent = sorted(p for p in listed if not (REPO / module / p).exists())
    assert not absent, f"{module}/CMakeLists.txt lists files that do not exist: {absent}"
    assert "slicerMacroBuildScriptedModule" in cmake and "WITH_GENERIC_TESTS" in cmake
    assert "slicer_add_python_unittest" in cmake


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute package names a file imports: all of them, or only those run when it is loaded."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", MODULES)
def test_lib_is_plain_python(module: str) -> None:
    forbidden = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "__main__", "ParaspinalLBPDemo"} | (
        LIBS - {f"{module}Lib"}
    )
    offenders = {}
    for path in sorted((REPO / module / f"{module}Lib").rglob("*.py")):
        bad = _imports(path) & forbidden
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders, f"Lib imports Slicer/Qt/VTK or another module's Lib: {offenders}"


@pytest.mark.parametrize("module", MODULES)
def test_module_file_structure(module: str) -> None:
    path = REPO / module / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    expected = {module, f"{module}Widget", f"{module}Logic", f"{module}Test"}
    assert expected <= classes, f"{module}.py lacks {sorted(expected - classes)}"
    n_lines = source.count("\n")
    assert n_lines < 600, (
        f"{module}.py has {n_lines} lines; move work into {module}Lib or ParaspinalLBPSlicer"
    )
    for field in ("title", "categories", "contributors", "helpText", "acknowledgementText"):
        assert re.search(rf"self\.parent\.{field} = ", source), f"{module}.py does not set parent.{field}"
    assert "slicer.util.loadUI" in source and "connectGui" in source
    assert "errorDisplay" not in source.split(f"class {module}Logic")[1].split(f"class {module}Test")[0], (
        f"{module}Logic must raise exceptions, not show popups"
    )


#: Each module's page in docs/, linked from its help text.
DOCS_PAGES = {
    "ParaspinalSeg": "segmentation.md",
    "ParaspinalRadiomics": "radiomics.md",
    "LBPRiskModel": "riskmodel.md",
    "TrialAnalysis": "trial-analysis.md",
}


@pytest.mark.parametrize("module", MODULES)
def test_module_help_links_its_docs_page(module: str) -> None:
    """The help text links the module's own docs page, on the repository of the extension's homepage and
    the revision the extension index builds."""
    import json

    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    repository = re.search(r'set\(EXTENSION_HOMEPAGE "(https://github\.com/[^"#]+)', cmake).group(1)
    revision = json.loads((REPO / "ParaspinalLBP.json").read_text(encoding="utf-8"))["scm_revision"]
    page = DOCS_PAGES[module]
    assert (REPO / "docs" / page).is_file()
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    assert f'href="{repository}/blob/{revision}/docs/{page}"' in source
    links = re.findall(r'href="(https://github\.com/[^"]+)"', source)
    assert all(link.startswith(f"{repository}/") for link in links), links


@pytest.mark.parametrize("module", MODULES)
def test_icon_is_128_png(module: str) -> None:
    data = (REPO / module / "Resources" / "Icons" / f"{module}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (128, 128)


CORE = REPO / "ParaspinalSeg" / "ParaspinalLBPCore"


def test_core_is_plain_python_and_imports_no_lib() -> None:
    """ParaspinalLBPCore is what every Lib may share: no Slicer/Qt/VTK, no Lib, no Slicer-side helpers."""
    forbidden = {
        "slicer",
        "qt",
        "ctk",
        "vtk",
        "vtkmodules",
        "__main__",
        "ParaspinalLBPSlicer",
        "ParaspinalLBPDemo",
    }
    forbidden |= LIBS
    offenders = {
        str(p.relative_to(REPO)): sorted(_imports(p) & forbidden)
        for p in sorted(CORE.rglob("*.py"))
        if _imports(p) & forbidden
    }
    assert not offenders, f"ParaspinalLBPCore imports Slicer/Qt/VTK or a Lib: {offenders}"


def test_demo_package_is_plain_python() -> None:
    """ParaspinalLBPDemo may use every Lib (through their command lines) but never Slicer."""
    forbidden = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "ParaspinalLBPSlicer"}
    for path in sorted((REPO / "ParaspinalSeg" / "ParaspinalLBPDemo").glob("*.py")):
        assert not _imports(path) & forbidden, f"{path.name} imports {sorted(_imports(path) & forbidden)}"


def test_no_two_source_files_are_copies() -> None:
    """Shared code has one home (ParaspinalLBPCore): no two tracked .py files are byte-identical
    (files without code, e.g. an empty ``__init__.py``, excepted)."""
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    by_content: dict[bytes, list[str]] = {}
    for name in files:
        data = (REPO / name).read_bytes()
        if (REPO / name).is_file() and ast.parse(data).body and not _only_docstring(data):
            by_content.setdefault(data, []).append(name)
    copies = [names for names in by_content.values() if len(names) > 1]
    assert not copies, f"identical source files (move the code to ParaspinalLBPCore): {copies}"


def _only_docstring(data: bytes) -> bool:
    body = ast.parse(data).body
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def test_dependencies_pinned() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    unpinned = [d for d in deps if "==" not in d]
    assert not unpinned, f"unpinned dependencies: {unpinned}"
    numpy = next(d for d in project["dependencies"] if d.startswith("numpy=="))
    major, minor = (int(x) for x in numpy.split("==")[1].split(".")[:2])
    assert (major, minor) < (2, 5), "numpy must stay < 2.5 (pyradiomics shape features turn complex)"
    for lib in LIBS:
        assert any(v.startswith(f"{lib}.cli:") for v in project["scripts"].values()), (
            f"no console script for {lib}"
        )


def test_extension_metadata() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
        "EXTENSION_DEPENDS",
    ):
        assert re.search(rf'set\({key} "[^"]+"\)', cmake), f"top-level CMakeLists.txt lacks {key}"
    assert "project(ParaspinalLBP)" in cmake and "find_package(Slicer REQUIRED)" in cmake
    for module in MODULES:
        assert f"add_subdirectory({module})" in cmake
    import json

    entry = json.loads((REPO / "ParaspinalLBP.json").read_text(encoding="utf-8"))
    assert {"$schema", "category", "scm_url", "scm_revision", "tier"} <= entry.keys()


def test_ruff_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--quiet", str(REPO)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_formatted() -> None:
    """``make lint`` checks the format too (code blocks in the Markdown docs included): keep it green."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--quiet", str(REPO)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, "run `ruff format .`:\n" + result.stdout + result.stderr


def test_slicer_requirements_are_the_pyproject_pins() -> None:
    """Inside Slicer the modules check the pins of ParaspinalLBPSlicer/requirements.txt, shipped with the
    extension and generated from pyproject.toml (the one pin list); every package they need is pinned."""
    from ParaspinalLBPSlicer import requirements

    shipped = requirements.REQUIREMENTS_FILE.read_text(encoding="utf-8")
    assert shipped == update_cmake_lists.render_requirements(), "run `make cmake-lists`"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = requirements.loadPins()
    assert len(pins) == len(project["dependencies"])
    for import_name, distribution in requirements.PYTHON_PACKAGES.items():
        pin = pins.get(requirements._canonical(distribution))
        assert pin, f"{import_name}: {distribution} is not pinned in pyproject.toml"
        assert f"{distribution}=={pin}".lower() in {
            d.split(";")[0].strip().lower() for d in project["dependencies"]
        }


# What a Slicer 5.10+ Python always has: the standard library and these bundled packages.
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
SLICER_BUNDLED = {"numpy", "slicer", "vtk", "qt", "ctk"}


@pytest.mark.parametrize("module", MODULES)
def test_module_file_imports_only_what_slicer_bundles(module: str) -> None:
    """Top-level imports of <M>.py stay within Slicer's bundled packages, so the module always loads and
    can offer to install the rest (ParaspinalSeg.ensureRequirements)."""
    allowed = STDLIB | SLICER_BUNDLED | {"ParaspinalSegLib", "ParaspinalLBPSlicer", "ParaspinalLBPCore"}
    path = REPO / module / f"{module}.py"
    top = _imports(path, top_level_only=True)
    assert top <= allowed, f"{module}.py imports {sorted(top - allowed)} at module level"
    _check_core_modules_load_without_pins(path)


def test_slicer_helper_package_imports_only_what_slicer_bundles() -> None:
    """ParaspinalLBPSlicer is imported by every module file at start-up: it must load without the pins."""
    allowed = STDLIB | SLICER_BUNDLED | {"ParaspinalSegLib", "ParaspinalLBPCore"}
    for path in sorted((REPO / "ParaspinalSeg" / "ParaspinalLBPSlicer").glob("*.py")):
        top = _imports(path, top_level_only=True)
        assert top <= allowed, f"{path.name} imports {sorted(top - allowed)} at module level"
        _check_core_modules_load_without_pins(path)


def _check_core_modules_load_without_pins(path: Path) -> None:
    """The ParaspinalLBPCore modules ``path`` imports at start-up import only the standard library and
    what Slicer bundles at their own top level (the core's errors and vocabulary, not its DICOM code)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    core_modules = {
        f"{node.module}.{a.name}" if node.module == "ParaspinalLBPCore" else node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.split(".")[0] == "ParaspinalLBPCore"
        for a in node.names
    }
    for name in sorted(core_modules):
        core_file = CORE / f"{name.split('.', 1)[1].replace('.', '/')}.py"
        heavy = _imports(core_file, top_level_only=True) - STDLIB - SLICER_BUNDLED - {"ParaspinalLBPCore"}
        assert not heavy, f"{path.name} imports {name} at start-up, which needs {sorted(heavy)}"


# --- Widgets follow Slicer's scripted-module template lifecycle (Utilities/Templates/Modules/Scripted) ---

#: Widget method -> calls it must make (by attribute name). ``setParameterNode`` is the only place that
#: connects the GUI to the parameter node, and every place that lets go of the node disconnects it.
LIFECYCLE = {
    "setup": {"loadUI", "setMRMLScene", "addObserver", "initializeParameterNode"},
    "cleanup": {"removeObservers", "setParameterNode"},
    "enter": {"initializeParameterNode"},
    "exit": {"disconnectGui", "removeObserver"},
    "onSceneStartClose": {"setParameterNode"},
    "onSceneEndClose": {"initializeParameterNode"},
    "initializeParameterNode": {"setParameterNode", "getParameterNode"},
    "setParameterNode": {"disconnectGui", "connectGui", "removeObserver", "addObserver", "_checkCanApply"},
    "_checkCanApply": set(),
}


def _widget_class(module: str, source: str | None = None) -> ast.ClassDef:
    source = source if source is not None else (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{module}Widget")


def _called_names(node: ast.AST) -> set[str]:
    """Names of everything called inside ``node`` (``a.b.c()`` -> ``c``, ``f()`` -> ``f``)."""
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def lifecycle_problems(widget: ast.ClassDef) -> list[str]:
    """What the Widget class lacks of the template lifecycle (empty when it follows it)."""
    methods = {n.name: n for n in widget.body if isinstance(n, ast.FunctionDef)}
    problems = [f"no {name}()" for name in LIFECYCLE if name not in methods]
    for name, needed in LIFECYCLE.items():
        if name in methods:
            missing = needed - _called_names(methods[name])
            problems += [f"{name}() does not call {call}()" for call in sorted(missing)]
    setup = ast.unparse(methods["setup"]) if "setup" in methods else ""
    for event in ("StartCloseEvent", "EndCloseEvent"):
        if event not in setup:
            problems.append(f"setup() does not observe the scene's {event}")
    for name, method in methods.items():
        if name != "setParameterNode" and "connectGui" in _called_names(method):
            problems.append(f"{name}() connects the GUI outside setParameterNode (never disconnected)")
    if "setParameterNode" in methods and "self._parameterNodeGuiTag = " not in ast.unparse(
        methods["setParameterNode"]
    ):
        problems.append("setParameterNode() does not keep the GUI tag that disconnectGui needs")
    if "exit" in methods and "self._parameterNodeGuiTag = None" not in ast.unparse(methods["exit"]):
        problems.append("exit() does not forget the disconnected GUI tag")
    background = any(m in _called_names(widget) for m in ("JobMonitor", "startLibJob")) or re.search(
        r"InBackground\(", ast.unparse(widget)
    )
    if background and "cleanup" in methods and not {"cleanup", "cancel"} & _called_names(methods["cleanup"]):
        problems.append("cleanup() does not cancel the Widget's running background job")
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_widget_follows_template_lifecycle(module: str) -> None:
    """setup/cleanup/enter/exit/onSceneStartClose/onSceneEndClose/initializeParameterNode/setParameterNode/
    _checkCanApply as in Slicer's template: the GUI is connected in one place and disconnected whenever the
    parameter node is let go (exit, scene close, cleanup); cleanup cancels running background jobs."""
    problems = lifecycle_problems(_widget_class(module))
    assert not problems, f"{module}Widget: {problems}"


def test_lifecycle_check_catches_a_widget_that_never_disconnects() -> None:
    """The check above fails for the pre-template widgets this project had (known bad examples)."""
    no_exit = """
class MWidget:
    def setup(self):
        ui = slicer.util.loadUI("x"); ui.setMRMLScene(s); self.initializeParameterNode()
        self._parameterNode = self.logic.getParameterNode()
        self._parameterNode.connectGui(self.ui)
    def cleanup(self):
        self.removeObservers()
"""
    problems = lifecycle_problems(_widget_class("M", no_exit))
    assert "no exit()" in problems and "no onSceneStartClose()" in problems
    assert "setup() connects the GUI outside setParameterNode (never disconnected)" in problems
    assert "cleanup() does not call setParameterNode()" in problems
    good = (REPO / "TrialAnalysis" / "TrialAnalysis.py").read_text(encoding="utf-8")
    without_cancel = good.replace("self._jobMonitor.cleanup()", "pass")
    assert lifecycle_problems(_widget_class("TrialAnalysis", without_cancel)) == [
        "cleanup() does not cancel the Widget's running background job"
    ]


#: Qt/CTK calls that take enum values; a number there hides what is meant (use qt.Qt.Checked & co.).
QT_ENUM_CALL = re.compile(
    r"(setCheckState|setFlags|setStandardButtons|setSelectionMode|setEditTriggers|setAlignment)\(\s*[\d-]"
    r"|\b(filters|checkState|alignment|standardButtons)\s*=\s*(0x)?\d"
    r"|(checkState\(\)|exec_?\(\)|result\(\))\s*[=!]=\s*\d"
    r"|\|\s*(0x)?\d+\s*\)"
)


@pytest.mark.parametrize("module", MODULES)
def test_widgets_use_named_qt_constants(module: str) -> None:
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    offenders = [line.strip() for line in source.splitlines() if QT_ENUM_CALL.search(line)]
    assert not offenders, f"{module}.py passes numbers where Qt has named constants: {offenders}"
    assert QT_ENUM_CALL.search("item.setCheckState(2)") and QT_ENUM_CALL.search("e.filters = 0x1")
    assert not QT_ENUM_CALL.search("item.setCheckState(qt.Qt.Checked)")


@pytest.mark.parametrize("module", [m for m in MODULES if m != "ParaspinalSeg"])
def test_modules_use_the_shared_slicer_helpers_not_paraspinalseg(module: str) -> None:
    """Slicer-side conversions live in ParaspinalLBPSlicer; no module reaches them through ParaspinalSeg.py."""
    files = [REPO / module / f"{module}.py", *sorted((REPO / module / "Resources" / "Scripts").glob("*.py"))]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "ParaspinalSegLogic" not in text and "ParaspinalSeg" not in _imports(path), (
            f"{path.relative_to(REPO)} uses ParaspinalSeg.py; import ParaspinalLBPSlicer instead"
        )


# --- One vocabulary: structure names, levels and label values are spelled out only in the core ---


def vocabulary_redeclarations(source: str) -> list[str]:
    """The vocabulary re-declared instead of imported from ParaspinalLBPCore.structures: a list/tuple/set
    literal naming three or more structures, both sides of one muscle, or all five levels; a dict literal
    mapping structure names to label values or back. (Selections such as ``("L4", "L5")`` and per-level
    parameter tables are data, not vocabulary.)"""
    from ParaspinalLBPCore.structures import BY_NAME, LEVELS, MUSCLES

    pairs = [{s.name for s in MUSCLES if s.muscle == m.muscle} for m in MUSCLES]

    def words(elts: list) -> set[str]:
        return {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}

    def ints(elts: list) -> bool:
        return bool(elts) and all(isinstance(e, ast.Constant) and type(e.value) is int for e in elts)

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            names = words(node.elts) & set(BY_NAME)
            bad = len(names) >= 3 or any(p <= names for p in pairs) or set(LEVELS) <= words(node.elts)
        elif isinstance(node, ast.Dict) and None not in node.keys:
            keys, values = node.keys, node.values
            bad = (len(words(keys) & set(BY_NAME)) >= 2 and ints(values)) or (
                len(words(values) & set(BY_NAME)) >= 2 and ints(keys)
            )
        else:
            continue
        if bad:
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


@pytest.mark.parametrize("module", MODULES)
def test_libs_import_the_vocabulary_from_the_core(module: str) -> None:
    offenders = {
        str(p.relative_to(REPO)): found
        for p in sorted((REPO / module / f"{module}Lib").rglob("*.py"))
        if (found := vocabulary_redeclarations(p.read_text(encoding="utf-8")))
    }
    assert not offenders, f"vocabulary spelled out outside ParaspinalLBPCore.structures: {offenders}"


def test_vocabulary_has_one_module() -> None:
    """The muscle/level vocabulary lives in ParaspinalLBPCore.structures only: no other ``structures.py``
    (the old ParaspinalSegLib re-export is gone) and no import of one."""
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    copies = [
        f for f in files if Path(f).name == "structures.py" and Path(f).parent.name != "ParaspinalLBPCore"
    ]
    assert not copies, f"the vocabulary has one home, ParaspinalLBPCore/structures.py: {copies}"
    users = []
    for f in files:
        if not (REPO / f).is_file():
            continue
        for node in ast.walk(ast.parse((REPO / f).read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
            )
            if any(n.endswith(".structures") and not n.startswith("ParaspinalLBPCore") for n in names):
                users.append(f)
    assert not users, f"import the vocabulary from ParaspinalLBPCore.structures: {sorted(set(users))}"


def test_vocabulary_check_catches_a_copy() -> None:
    assert vocabulary_redeclarations('for m in ("multifidus_left", "multifidus_right"): pass')
    assert vocabulary_redeclarations('S = ["multifidus_left", "psoas_left", "erector_spinae_right"]')
    assert vocabulary_redeclarations('VALUE = {"erector_spinae_left": 3, "psoas_right": 6}')
    assert vocabulary_redeclarations('NAMES = {1: "multifidus_right", 2: "multifidus_left"}')
    assert vocabulary_redeclarations('LEVELS = ("L1", "L2", "L3", "L4", "L5")')
    assert not vocabulary_redeclarations('x = rows["multifidus_left"]; levels = ("L4", "L5")')
    assert not vocabulary_redeclarations('pick = ("erector_spinae_left", "multifidus_left")')
    assert not vocabulary_redeclarations('FF = {"L1": 0.1, "L2": 0.11, "L3": 0.13, "L4": 0.16, "L5": 0.2}')


# --- Command lines: ``--help`` loads no heavy engine ---

HEAVY_ENGINES = (
    "radiomics", "sklearn", "lightgbm", "xgboost", "shap", "statsmodels", "lifelines", "dask", "distributed",
    "SimpleITK", "matplotlib", "fastapi", "skops", "highdicom",
)  # fmt: skip
_HELP_PROBE = """
import contextlib, importlib, io, json, sys
lib, engines = sys.argv[1], sys.argv[2].split(",")
cli = importlib.import_module(lib + ".cli")
loaded = {}
for argv in [["--help"]] + [[name, "--help"] for name in cli.COMMANDS]:
    before = set(sys.modules)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.main(argv)
        except SystemExit:
            pass
    loaded[" ".join(argv)] = sorted(e for e in engines if e in sys.modules)
print(json.dumps(loaded))
"""


@pytest.mark.parametrize("module", MODULES)
def test_help_loads_no_heavy_engine(module: str) -> None:
    """``<cli> --help`` and ``<cli> CMD --help`` run without importing pyradiomics, scikit-learn, the boosters,
    shap, statsmodels, lifelines, Dask, SimpleITK ...: sub-commands and their engines load lazily."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE, f"{module}Lib", ",".join(HEAVY_ENGINES)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    loaded = {argv: engines for argv, engines in json.loads(out.stdout).items() if engines}
    assert not loaded, f"{module}Lib: help imports heavy engines: {loaded}"


# --- User errors: bad input raises ParaspinalLBPCore.errors types (exit 2, one line); the rest are bugs ---

#: Modules whose ValueErrors/KeyErrors are internal signals or programming errors, never a user's input
#: (requirements.py: a caller names a package that is not pinned; sampledata.py: a malformed SampleData.json).
INTERNAL_ERRORS = {"treeshap.py", "fastpath.py", "explain.py", "requirements.py", "sampledata.py"}
BARE_USER_ERROR = re.compile(
    r"\b(raise|return)\s+(ValueError|FileNotFoundError|KeyError|OSError)\("
    r"|^class \w+\((ValueError|FileNotFoundError|KeyError|OSError)\)"
)


def test_libs_raise_user_error_types_for_bad_input() -> None:
    """A Lib, a module's Logic, the Slicer-side helpers and the headless scripts report bad input with
    BadInputError / MissingInputError / MissingKeyError (the command lines and headless scripts exit 2 with
    the message); a bare ValueError, FileNotFoundError, KeyError or OSError would now show a traceback, as
    bugs do."""
    files = [p for m in MODULES for p in sorted((REPO / m / f"{m}Lib").rglob("*.py"))]
    files += sorted(CORE.rglob("*.py")) + sorted(
        (REPO / "ParaspinalSeg" / "ParaspinalLBPSlicer").glob("*.py")
    )
    files += [REPO / m / f"{m}.py" for m in MODULES]
    files += [p for m in MODULES for p in sorted((REPO / m / "Resources" / "Scripts").glob("*.py"))]
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in files
        if path.name not in INTERNAL_ERRORS
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BARE_USER_ERROR.search(line)
    ]
    assert not offenders, f"raise ParaspinalLBPCore.errors types for bad input: {offenders}"


# --- Imports between a package's modules: no cycles, none hidden inside functions ---

PACKAGES = {
    "ParaspinalLBPCore": CORE,
    **{f"{m}Lib": REPO / m / f"{m}Lib" for m in MODULES},
    "ParaspinalLBPDemo": REPO / "ParaspinalSeg" / "ParaspinalLBPDemo",
}


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sibling_imports(package: str, root: Path) -> tuple[dict[str, set[str]], dict[str, set[tuple[str, str]]]]:
    """Per module of the package: sibling modules imported at top level, and (function, sibling) pairs
    imported inside functions (``if TYPE_CHECKING:`` imports do not run and are left out)."""
    files = sorted(root.rglob("*.py"))
    known = {_module_name(package, root, p) for p in files}

    def targets(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            return set()
        return {n for n in names if n in known and n != package}

    top: dict[str, set[str]] = {}
    lazy: dict[str, set[tuple[str, str]]] = {}
    for path in files:
        name = _module_name(package, root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top[name] = set().union(*(targets(n) for n in tree.body)) - {name}
        lazy[name] = {
            (func.name, target)
            for func in ast.walk(tree)
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(func)
            for target in targets(node)
            if target != name
        }
    return top, lazy


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Cycles of a directed import graph (one per strongly connected component, as a sorted list)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def _lazy_import_allowed(module: str, function: str) -> bool:
    """Function-level imports of siblings are the lazy command line (a ``cli``/``*_cli`` module loads its
    implementation when the command runs) and PEP 562 lazy exports (``__getattr__`` of a package)."""
    leaf = module.rsplit(".", 1)[-1]
    return leaf == "cli" or leaf.endswith("_cli") or function == "__getattr__"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles_and_no_hidden_sibling_imports(package: str) -> None:
    """No cycle among a package's modules, counting imports inside functions too (they hid the schema <->
    schema_validation and simulate <-> simulate_mri cycles); sibling modules are imported at the top,
    except by the command line and lazy package exports."""
    top, lazy = sibling_imports(package, PACKAGES[package])
    every = {m: top[m] | {t for _, t in lazy[m]} for m in top}
    assert not import_cycles(every), f"import cycles in {package}: {import_cycles(every)}"
    hidden = sorted(
        f"{m}.{f} -> {t}" for m, pairs in lazy.items() for f, t in pairs if not _lazy_import_allowed(m, f)
    )
    assert not hidden, f"import these sibling modules at the top of the module instead: {hidden}"


def test_cycle_check_finds_a_hidden_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


# --- Atomic writing has one home: ParaspinalLBPCore.atomic (single outputs) and .staging (output sets) ---

#: The core modules that rename: everything else writes through them.
RENAMING_CORE = {CORE / "atomic.py", CORE / "staging.py"}
HAND_MADE_ATOMIC = re.compile(r"\bos\.replace\(|tempfile\.mkstemp\(|\.tmp[\"']\)?\s*$|[\"']\.tmp[\"']")


def test_atomic_writes_use_the_core() -> None:
    """Libs write through ParaspinalLBPCore.atomic (atomic_write_text/bytes, atomic_path, atomic_dir) or
    .staging (staged_files, staged_dir) instead of their own temp-file-and-rename copies, which a kill
    between two renames can leave half done."""
    roots = [REPO / m / f"{m}Lib" for m in MODULES] + [CORE]
    offenders = [
        f"{rel}:{n}"
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if path not in RENAMING_CORE and (rel := path.relative_to(REPO).as_posix())
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if HAND_MADE_ATOMIC.search(line)
    ]
    assert not offenders, f"use ParaspinalLBPCore.atomic: {offenders}"
