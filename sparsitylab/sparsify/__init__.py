"""WHICH weights: pure functions that choose what to prune, with no module state.

- ``masks``        exact top-k, global, block and N:M keep-masks
- ``groups``       SSL's group views (filters, channels, shapes, neurons, residual branches) and
  their norms
- ``hierarchical`` HBsNN: a weight as disjoint block-sparse levels with nested block shapes
- ``nm``           which layers can be N:M, along which axis, and what ASP would skip
- ``budgets``      how an overall sparsity is shared among layers (uniform, global, ERK)
- ``schedules``    when the sparsity target changes (one-shot, Zhu & Gupta's cubic schedule)
- ``sensitivity``  per-layer accuracy-vs-sparsity scans
- ``penalties``    group lasso and ℓ1 penalties, and the steps that make their zeros exact
"""

from . import budgets, groups, hierarchical, masks, nm, penalties, schedules, sensitivity

__all__ = [
    "budgets",
    "groups",
    "hierarchical",
    "masks",
    "nm",
    "penalties",
    "schedules",
    "sensitivity",
]
