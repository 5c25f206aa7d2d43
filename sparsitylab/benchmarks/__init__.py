"""Benchmarks run by ``sparsitylab bench NAME``: one module per benchmark, each with ``main(argv)``.

Benchmarks print ratios measured side by side in one run and may write JSON to ``data/``. Their
flags use the argument types below, so a bad value is one line on stderr and exit code 2 (argparse);
:func:`announce` prints the first line every benchmark prints and :func:`record_header` starts the
JSON record every benchmark writes (which benchmark, when, where, on how many threads, which torch).
:func:`torch_path` wraps a contender so that it runs with the compiled CPU passes switched off.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import torch

from .._checks import check_int, check_real, check_sparsity
from ..sparsify import native
from ..timing import cpu_name


def _argument_type(convert: Callable[[str], Any], check: Callable[[Any], Any], name: str):
    """An argparse ``type=``: ``convert`` the text, ``check`` the value, or say what was
    expected."""

    def parse(text: str) -> Any:
        try:
            return check(convert(text))
        except (TypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {name}") from err

    parse.__name__ = name
    return parse


def _positive(value: float) -> float:
    if check_real(value, "value") <= 0:
        raise ValueError(f"value={value} must be > 0")
    return value


positive_int = _argument_type(int, lambda v: check_int(v, "value", minimum=1), "positive int")
positive_real = _argument_type(float, _positive, "positive number")
sparsity_value = _argument_type(float, check_sparsity, "sparsity in [0, 1)")


def torch_path(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` with the compiled passes switched off (:mod:`sparsitylab.sparsify.native`): the
    PyTorch path of the same computation, to time beside the compiled one."""

    def run() -> Any:
        with native.disabled():
            return call()

    return run


def announce(name: str) -> str:
    """Print ``sparsitylab bench NAME — torch …, <cpu>`` and return the CPU's description (call it
    inside the benchmark's thread setting, which the description includes)."""
    where = cpu_name()
    print(f"sparsitylab bench {name} — torch {torch.__version__}, {where}\n")
    return where


def record_header(name: str, where: str, threads: int) -> dict[str, Any]:
    """The fields every benchmark's JSON record starts with."""
    return {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": where,
        "threads": threads,
        "torch": torch.__version__,
    }


__all__ = [
    "announce",
    "positive_int",
    "positive_real",
    "record_header",
    "sparsity_value",
    "torch_path",
]
