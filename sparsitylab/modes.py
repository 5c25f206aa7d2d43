"""Quick mode vs full mode: the one place that decides how much work a chapter does.

Every chapter runs the same code in both modes; only the budgets differ. Quick mode
(``SPARSITYLAB_QUICK=1``) is what the test suite uses (≤ 2 min per chapter on 2 CPU cores);
full mode is what the book is built with (≤ 10 min per chapter).
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "SPARSITYLAB_QUICK"


def is_quick() -> bool:
    """True when ``SPARSITYLAB_QUICK`` is set to a true value ("1", "true", "yes", "on")."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(
        f"{ENV_VAR}={value!r} is not understood; use 1/0, true/false, yes/no or on/off"
    )


def pick(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``full`` otherwise.

    >>> epochs = pick(full=10, quick=1)
    """
    return quick if is_quick() else full


def mode_name() -> str:
    """ "quick" or "full", for labelling printed results."""
    return "quick" if is_quick() else "full"
