"""Sparsification methods, one module per source document, and a registry by name.

Every method has the same life cycle (:class:`Method`; its docstring states each phase's contract)::

    method = methods.build("magnitude", sparsity=0.9)   # or MagnitudePruning(OneShot(0.9))
    run = runner.run(method, model, loaders, epochs=3)  # prepare → (calibrate) → train → (freeze +
                                                        # fine-tune) → finalize → compact

A method registers itself with :func:`register` under its ``name``; the runner and the command line
look methods up in :data:`REGISTRY`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from .base import Method

REGISTRY: dict[str, type[Method]] = {}
M = TypeVar("M", bound=type[Method])


def register(cls: M) -> M:
    """Class decorator: make a :class:`Method` available by its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
        raise TypeError(f"{cls!r} must be a Method subclass with a non-empty name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(
            f"a method named {cls.name!r} is registered already ({REGISTRY[cls.name].__name__})"
        )
    REGISTRY[cls.name] = cls
    return cls


def build(name: str, **options: Any) -> Method:
    """The method registered as ``name``, built with ``options`` (each class's ``from_options``)."""
    if name not in REGISTRY:
        raise ValueError(f"method name={name!r} is not known; choose one of {sorted(REGISTRY)}")
    cls = REGISTRY[name]
    factory = getattr(cls, "from_options", cls)
    return factory(**options)


from . import (  # noqa: E402  (each module registers its methods)
    channels,
    dense,
    growth,
    hbs,
    magnitude,
    nm,
    posttrain,
    sis,
    slimming,
    soft_threshold,
    sparse_momentum,
    ssl,
    units,
)

__all__ = [
    "Method",
    "REGISTRY",
    "build",
    "channels",
    "dense",
    "growth",
    "hbs",
    "magnitude",
    "nm",
    "posttrain",
    "register",
    "sis",
    "slimming",
    "soft_threshold",
    "sparse_momentum",
    "ssl",
    "units",
]
