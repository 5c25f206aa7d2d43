"""Grade the exercises of a chapter: ``python exercises/grade.py 05_nm_sparsity``.

Loads ``exercises/<chapter>.py`` (or, with ``--solutions``, ``exercises/solutions/<chapter>.py``)
and runs every ``check_*`` function of ``exercises/checks/<chapter>.py`` on it. Prints one line per
exercise and exits with status 1 unless all pass.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load(path: Path) -> ModuleType:
    """Import a Python file by path (chapter files start with a digit, so no plain import)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checks(chapter: str) -> dict[str, Callable[[ModuleType], None]]:
    """The graders of ``chapter``: name → check function, in file order."""
    module = load(HERE / "checks" / f"{chapter}.py")
    return {name: fn for name, fn in vars(module).items() if name.startswith("check_")}


def grade(chapter: str, solutions: bool = False) -> dict[str, str | None]:
    """Run every check; name → None when it passes, else the reason it failed."""
    student = load(HERE / ("solutions" if solutions else "") / f"{chapter}.py")
    results = {}
    for name, check in checks(chapter).items():
        try:
            check(student)
            results[name] = None
        except (AssertionError, NotImplementedError) as error:
            results[name] = f"{type(error).__name__}: {error}"
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", help="e.g. 05_nm_sparsity")
    parser.add_argument("--solutions", action="store_true", help="grade the instructor solutions")
    args = parser.parse_args(argv)
    results = grade(args.chapter, args.solutions)
    for name, failure in results.items():
        print(
            f"{'PASS' if failure is None else 'FAIL'}  {name[len('check_') :]}"
            + (f"  — {failure}" if failure else "")
        )
    passed = sum(failure is None for failure in results.values())
    print(f"{passed} of {len(results)} exercises solved")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
