"""Argument checks: one rule, one wording, for the whole library.

Every check names the argument, its value and what is allowed, and returns the value normalised
(``float`` for reals, ``int`` for ints, a tuple for pairs). A wrong *type* raises ``TypeError``, a
value outside the allowed range ``ValueError``. Booleans are never accepted as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from numbers import Integral, Real
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def _range_text(minimum: float | None, maximum: float | None, open_max: bool = False) -> str:
    if minimum is not None and maximum is not None:
        return f"in [{minimum}, {maximum}{')' if open_max else ']'}"
    if minimum is not None:
        return f"≥ {minimum}"
    if maximum is not None:
        return f"{'<' if open_max else '≤'} {maximum}"
    return ""


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An ``int`` (NumPy and torch integer scalars included) within [minimum, maximum]."""
    allowed = " ".join(filter(None, ["an int", _range_text(minimum, maximum)]))
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}={value!r} must be {allowed} (got {type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name}={value!r} must be {allowed}")
    return value


def check_real(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    open_max: bool = False,
) -> float:
    """A finite real number within [minimum, maximum] (``open_max``: maximum excluded). NaN and ±inf
    fail."""
    allowed = " ".join(
        filter(None, ["a finite real number", _range_text(minimum, maximum, open_max)])
    )
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}={value!r} must be {allowed} (got {type(value).__name__})")
    value = float(value)
    if (
        not math.isfinite(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and (value >= maximum if open_max else value > maximum))
    ):
        raise ValueError(f"{name}={value!r} must be {allowed}")
    return value


def check_sparsity(value: Any, name: str = "sparsity") -> float:
    """A sparsity s ∈ [0, 1): the fraction of candidates set to zero.

    1 is excluded everywhere: a layer (or a mask) with every candidate pruned computes nothing.
    """
    return check_real(value, name, 0.0, 1.0, open_max=True)


def check_pair(value: Any, name: str) -> tuple[int, int]:
    """A pair of positive ints (rows, cols); a single int ``k`` means ``(k, k)``."""
    allowed = f"{name}={value!r} must be a positive int or a pair of positive ints (rows, cols)"
    pair = (value, value) if isinstance(value, Integral) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, Sequence)
        or isinstance(pair, str)
        or len(pair) != 2
        or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in pair)
    ):
        raise TypeError(allowed)
    if min(pair) < 1:
        raise ValueError(allowed)
    return int(pair[0]), int(pair[1])


def check_nm(n: Any, m: Any) -> tuple[int, int]:
    """N:M: keep ``n`` of every ``m``; 1 ≤ n < m (n = m would be dense, n = 0 empty)."""
    n, m = check_int(n, "n"), check_int(m, "m")
    if not 1 <= n < m:
        raise ValueError(
            f"n={n}, m={m} must satisfy 1 ≤ n < m (keep n of every m; n = m is dense, n = 0 empty)"
        )
    return n, m


def check_choice(value: T, name: str, choices: Collection[T]) -> T:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {sorted(choices, key=str)}")
    return value


def check_names(names: Iterable[str], name: str, available: Collection[str]) -> list[str]:
    """Every one of ``names`` must be in ``available`` (e.g. layer names of a model)."""
    names = list(names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"{name}={unknown} {'is' if len(unknown) == 1 else 'are'} not known; "
            f"available: {list(available)}"
        )
    return names


def check_tensor(
    value: Any, name: str, dims: Collection[int] | None = None, floating: bool = False
) -> torch.Tensor:
    """A ``torch.Tensor``; ``dims``: allowed numbers of dimensions; ``floating``: a floating
    dtype."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (got {type(value).__name__})")
    if dims is not None and value.dim() not in dims:
        raise ValueError(
            f"{name} has shape {tuple(value.shape)}; it must have "
            f"{' or '.join(map(str, sorted(dims)))} dimensions"
        )
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} has dtype {value.dtype}; a floating-point tensor is required")
    return value


def check_values(value: torch.Tensor, name: str) -> torch.Tensor:
    """A tensor that holds values: not on the ``meta`` device (a shape without data)."""
    if value.is_meta:
        raise ValueError(
            f"{name} is on the meta device: it has a shape but no values; materialise the model "
            "first (model.to_empty(device=...) and initialise or load its weights)"
        )
    return value


__all__ = [
    "check_choice",
    "check_int",
    "check_names",
    "check_nm",
    "check_pair",
    "check_real",
    "check_sparsity",
    "check_tensor",
    "check_values",
]
