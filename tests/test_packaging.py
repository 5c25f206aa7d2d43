"""Packaging: environment.yml agrees with pyproject.toml; committed notebooks carry no outputs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = (
        project["dependencies"]
        + project["optional-dependencies"]["book"]
        + project["optional-dependencies"]["test"]
    )
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in reqs}


def environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            specs += [p for p in dep["pip"] if not p.startswith("-e")]
        elif not dep.startswith(("python=", "pip", "nodejs")):
            specs.append(dep)
    return {Requirement(s).name.lower(): str(Requirement(s).specifier) for s in specs}


def test_environment_yml_matches_pyproject():
    assert environment_requirements() == pyproject_requirements()


def test_torch_and_jupyter_book_are_pinned():
    reqs = pyproject_requirements()
    assert reqs["torch"] == "==2.13.0"
    assert Requirement("jupyter-book" + reqs["jupyter-book"]).specifier.contains("1.0.4.post1")
    assert not Requirement("jupyter-book" + reqs["jupyter-book"]).specifier.contains("2.0.0")
    constraints = (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in constraints


def notebooks() -> list[Path]:
    return sorted(
        p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert notebooks(), "book/ holds no notebooks"


def test_no_committed_outputs():
    dirty = [
        p.relative_to(ROOT)
        for p in notebooks()
        if any(c.get("outputs") or c.get("execution_count") for c in code_cells(p))
    ]
    assert not dirty, f"notebooks with outputs (run nbstripout on them): {dirty}"


def test_every_notebook_checks_its_claims():
    """Each chapter ends its key cells with assert cells that readers can unfold (tag hide-cell),
    and never removes one from the page (remove-cell would hide what is verified)."""
    missing = [
        p.relative_to(ROOT)
        for p in notebooks()
        if not any(
            "hide-cell" in c.get("metadata", {}).get("tags", [])
            and "assert" in "".join(c["source"])
            for c in code_cells(p)
        )
    ]
    assert not missing, f"notebooks without a collapsible assert cell: {missing}"
    removed = [
        f"{p.relative_to(ROOT)} cell {i}"
        for p in notebooks()
        for i, c in enumerate(code_cells(p))
        if "remove-cell" in c.get("metadata", {}).get("tags", [])
        and any(line.lstrip().startswith("assert") for line in "".join(c["source"]).splitlines())
    ]
    assert not removed, f"assert cells removed from the page (tag them hide-cell): {removed}"


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    absent = [
        p.relative_to(ROOT)
        for p in notebooks()
        if str(p.relative_to(ROOT).with_suffix("")) not in toc
    ]
    assert not absent, f"notebooks missing from _toc.yml: {absent}"


# The import layers of README.md, "How the code is organised": a unit may import units of its own
# layer or of a lower one. A unit is a top-level module (sparsitylab/x.py) or a subpackage
# (sparsitylab/x/).
LAYERS = [
    {"_checks", "modes"},
    {
        "timing",
        "gemm",
        "frames",
        "files",
        "distributed",
        "graph",
        "coverage",
        "significance",
        "config",
    },
    {"data", "models", "metrics", "widgets", "evaluation"},
    {"train"},
    {"callbacks"},
    {"sparsify"},
    {"reparam", "deploy"},
    {"methods"},
    {"benchmarks"},
    {"runner", "checkpoints", "experiment", "lottery", "suite"},
    {"cli", "__main__", "__init__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
# Narrower rules on top of the layers.
MAY_IMPORT = {
    "frames": {"_checks"},
    "widgets": {"_checks", "frames", "modes"},
    # deploy never imports reparam or methods
    "deploy": {
        "_checks",
        "files",
        "timing",
        "gemm",
        "graph",
        "coverage",
        "models",
        "metrics",
        "sparsify",
    },
    # benchmarks time methods (a training step with their reparametrisations), never the runner;
    # data and train where a benchmark needs a trained layer (bench sis)
    "benchmarks": {
        "_checks",
        "modes",
        "data",
        "train",
        "timing",
        "gemm",
        "graph",
        "coverage",
        "files",
        "models",
        "metrics",
        "sparsify",
        "reparam",
        "deploy",
        "methods",
    },
}


def _unit(path: Path) -> str:
    parts = path.relative_to(ROOT / "sparsitylab").with_suffix("").parts
    return parts[0] if len(parts) > 1 else parts[0]


def _imported_units(path: Path) -> set[str]:
    """Every sparsitylab unit that ``path`` imports (absolute or relative imports)."""
    import ast

    package = path.relative_to(ROOT).with_suffix("").parts[:-1]  # e.g. ("sparsitylab", "sparsify")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            targets = [module + [a.name] for a in node.names] if not node.module else [module]
        else:
            continue
        for target in targets:
            if target[:1] == ["sparsitylab"] and len(target) > 1:
                found.add(target[1])
    units = {
        p.stem
        for p in (ROOT / "sparsitylab").iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    return (found & units) - {
        _unit(path)
    }  # `from . import __version__` names an attribute, not a unit


def test_every_import_follows_the_layer_table():
    """README's import layers: nothing in sparsify imports reparam or above, deploy never imports
    methods, only the CLI (and experiment.py, lottery.py and suite/ behind it) imports the
    runner."""
    offenders = []
    for path in sorted((ROOT / "sparsitylab").rglob("*.py")):
        unit = _unit(path)
        assert unit in LAYER, (
            f"{path.relative_to(ROOT)}: unit {unit!r} is missing from the layer table"
        )
        for target in _imported_units(path):
            allowed = MAY_IMPORT.get(unit)
            if LAYER.get(target, 99) > LAYER[unit] or (
                allowed is not None and target not in allowed
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not offenders, offenders


def test_only_the_cli_imports_the_runner_and_no_chapter_imports_tests():
    users = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "sparsitylab").rglob("*.py")
        if "runner" in _imported_units(p)
        and _unit(p) not in ("cli", "runner", "experiment", "lottery", "suite")
    ]
    assert not users, users
    bad = [
        p.name
        for p in notebooks()
        if any(
            s in "".join(c["source"])
            for c in code_cells(p)
            for s in ("sys.path", "from tests", "import tests", "from emulation")
        )
    ]
    assert not bad, f"chapters reaching into tests/ or sys.path: {bad}"


def test_every_chapter_installs_itself_on_colab_from_the_configured_repository():
    """The first code cell of each chapter installs the package on Colab (and only there), from
    the repository the launch buttons point at."""
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for path in notebooks():
        cells = json.loads(path.read_text())["cells"]
        first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        assert 'if "google.colab" in sys.modules:' in first, path.name
        assert f'REPOSITORY = "{url}"' in first, (path.name, url)


def test_every_subpackage_is_in_the_wheel():
    """A folder of the library missing from pyproject's package list installs everywhere but in
    a non-editable install (where its imports then fail)."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        "sparsitylab." + ".".join(p.parent.relative_to(ROOT / "sparsitylab").parts)
        for p in (ROOT / "sparsitylab").rglob("__init__.py")
        if p.parent != ROOT / "sparsitylab"
    }
    assert folders <= listed, f"missing from [tool.setuptools] packages: {folders - listed}"
