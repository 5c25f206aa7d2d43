"""Every exercise fails on its stub and passes with its instructor solution."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("grade", ROOT / "exercises" / "grade.py")
grade = importlib.util.module_from_spec(spec)
spec.loader.exec_module(grade)
CHAPTERS = sorted(p.stem for p in (ROOT / "exercises" / "checks").glob("*.py"))


def test_every_chapter_has_stub_checks_and_solutions():
    assert CHAPTERS
    for chapter in CHAPTERS:
        assert (ROOT / "exercises" / f"{chapter}.py").is_file()
        assert (ROOT / "exercises" / "solutions" / f"{chapter}.py").is_file()
        assert len(grade.checks(chapter)) >= 3, chapter


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stubs_fail_and_solutions_pass(chapter):
    stub = grade.grade(chapter)
    assert all(failure is not None for failure in stub.values()), stub
    solved = grade.grade(chapter, solutions=True)
    assert all(failure is None for failure in solved.values()), solved


def test_grade_command_exit_status(capsys):
    chapter = CHAPTERS[0]
    assert grade.main([chapter]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert grade.main([chapter, "--solutions"]) == 0
