"""built_library: a shared library built once per content, found afterwards, replaced atomically,
and a failed build reported with the compiler's words and no files left behind."""

from __future__ import annotations

import ctypes
import shutil
import tempfile

import pytest

from sparsitylab.files import built_library

CODE = "int answer(void) { return %d; }\n"


@pytest.fixture
def compiler(tmp_path, monkeypatch):
    found = shutil.which("cc") or shutil.which("gcc")
    if found is None:
        pytest.skip("no C compiler here")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the cache lives in tmp_path
    return lambda paths, out: [found, "-shared", "-fPIC", *paths, "-o", out]


def test_a_library_is_built_once_and_found_afterwards(compiler, tmp_path):
    first = built_library("cache", [(".c", CODE % 42)], compiler)
    assert ctypes.CDLL(str(first)).answer() == 42
    stamp = first.stat().st_mtime_ns
    assert built_library("cache", [(".c", CODE % 42)], compiler) == first
    assert first.stat().st_mtime_ns == stamp  # found, not rebuilt
    other = built_library("cache", [(".c", CODE % 7)], compiler)
    assert other != first and ctypes.CDLL(str(other)).answer() == 7
    header = built_library("cache", [(".c", CODE % 42)], compiler, depends=["// v2"])
    assert header not in (first, other)  # a changed dependency rebuilds
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".so"] * 3


def test_a_failed_build_says_why_and_leaves_nothing(compiler, tmp_path):
    with pytest.raises(RuntimeError, match="error"):
        built_library("cache", [(".c", "this is not C")], compiler)
    assert not list((tmp_path / "cache").iterdir())
