"""When a module's code assumes the sizes it was built with: find the module, keep its groups whole.

Surgery (:mod:`sparsitylab.deploy.surgery`) slices tensors and updates the size attributes it knows
(``num_heads``, ``head_dim``, ``in_channels``, …). Code that derives a size from *another* tensor
still breaks: torchvision's ``SwinTransformer`` (v1) computes a head's width as the input width //
``num_heads``, so with fewer heads the reshape fails. The trace cannot see where an ``int`` came
from, so this is found by running the pruned model: :func:`failing_module` names the innermost
module whose forward raised, and :func:`groups_of_its_kind` the groups with a tensor in any module
of the same class (the same code: every Swin block at once).
:func:`sparsitylab.deploy.compaction.compact` then keeps those groups whole — their units stay,
zeros and all, so the function is unchanged — and reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..graph import Graph
from ..graph.tracer import call


def failing_module(model: nn.Module, example: Any) -> tuple[str, Exception] | None:
    """(name of the innermost module whose forward raised on ``example``, the error), or None when
    ``model`` runs. A forward that raises outside every submodule names the model ("")."""
    active: list[str] = []

    def enter(name: str) -> Callable[..., None]:
        return lambda module, args: active.append(name)

    def leave(module: nn.Module, args: Any, output: Any) -> None:  # None: the output stays
        active.pop()

    hooks = []
    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(enter(name)))
        hooks.append(module.register_forward_hook(leave))
    try:
        call(model, example)
    except Exception as error:  # the model's own code failed: that is the finding
        return (active[-1] if active else ""), error
    finally:
        for hook in hooks:
            hook.remove()
    return None


def groups_of_its_kind(graph: Graph, model: nn.Module, module_name: str) -> list[str]:
    """The groups with a member tensor inside any module of the class of ``module_name``."""
    kind = type(model.get_submodule(module_name))
    prefixes = [f"{n}." if n else "" for n, m in model.named_modules() if type(m) is kind]
    return [
        g.name
        for g in graph.groups
        if any(m.tensor.startswith(p) for m in g.members for p in prefixes)
    ]


__all__ = ["failing_module", "groups_of_its_kind"]
