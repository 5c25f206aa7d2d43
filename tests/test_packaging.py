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
    """Each chapter ends its key cells with hidden assert cells (tag remove-cell)."""
    missing = [
        p.relative_to(ROOT)
        for p in notebooks()
        if not any(
            "remove-cell" in c.get("metadata", {}).get("tags", [])
            and "assert" in "".join(c["source"])
            for c in code_cells(p)
        )
    ]
    assert not missing, f"notebooks without a hidden assert cell: {missing}"


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    absent = [
        p.relative_to(ROOT)
        for p in notebooks()
        if str(p.relative_to(ROOT).with_suffix("")) not in toc
    ]
    assert not absent, f"notebooks missing from _toc.yml: {absent}"


def test_imports_run_from_methods_to_primitives():
    """Primitives never import methods, benchmarks or the CLI (README: chapters → methods →
    primitives)."""
    import ast

    upward = ("methods", "benchmarks", "cli")
    offenders = []
    for path in sorted((ROOT / "sparsitylab").glob("*.py")):
        if path.stem in upward + ("__init__", "__main__"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = (node.module or "").removeprefix("sparsitylab.")
                names = [a.name for a in node.names] if node.level and not node.module else [target]
                if any(n.split(".")[0] in upward for n in names):
                    offenders.append(
                        f"{path.name}: from {'.' * node.level}{node.module or ''} import ..."
                    )
    assert not offenders, offenders
