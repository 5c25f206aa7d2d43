"""Sparsification methods, one small module per source document.

Every method has the same life cycle (:class:`Method`)::

    method = SomeMethod(...)
    model = method.prepare(model)            # attach masks / reparametrisations
    fit(model, loader, epochs, callbacks=[method])   # penalty() and after_step() during training
    model = method.finalize(model)           # bake masks in, compact, freeze structure
"""

from .base import Method

__all__ = ["Method"]
