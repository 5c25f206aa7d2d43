"""When a module's code assumes the sizes it was built with: find the module, keep its groups whole.

Surgery (:mod:`sparsitylab.deploy.surgery`) slices tensors and updates the size attributes it knows
(``num_heads``, ``head_dim``, ``in_channels``, …). Code that derives a size from *another* tensor
still breaks: torchvision's ``SwinTransformer`` (v1) computes a head's width as the input width //
``num_heads``, so with fewer heads the reshape fails. The trace cannot see where an ``int`` came
from, so this is found by running the pruned model: :func:`failing_modules` and :func:`culprit`
name the innermost module of the model's own code that was running, and
:func:`groups_of_its_kind` the groups inside any module of its class (the same code: every Swin
block at once) — first those wholly inside, then, if that was not enough, every group touching
one. :func:`sparsitylab.deploy.compaction.compact` keeps those groups whole — their units stay,
zeros and all, so the function is unchanged — and reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..graph import Graph
from ..graph.tracer import call


def failing_modules(model: nn.Module, example: Any) -> tuple[list[str], Exception] | None:
    """(the modules whose forwards were running when ``model`` raised on ``example``, outermost
    first — the model itself is ""; the error), or None when ``model`` runs."""
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
        return active, error
    finally:
        for hook in hooks:
            hook.remove()
    return None


def groups_of_its_kind(
    graph: Graph, model: nn.Module, module_name: str, within: bool = True
) -> list[str]:
    """The groups whose member tensors all lie inside modules of the class of ``module_name``
    (``within``), or with any member there."""
    kind = type(model.get_submodule(module_name))
    prefixes = tuple(f"{n}." for n, m in model.named_modules() if type(m) is kind and n)
    test = all if within else any
    return [g.name for g in graph.groups if test(m.tensor.startswith(prefixes) for m in g.members)]


def culprit(model: nn.Module, path: list[str]) -> str | None:
    """The innermost module of ``path`` whose forward is the model's own code (not a ``torch.nn``
    layer, not the whole model): a conv that gets the wrong width was called by code that split
    or reshaped with an old size (Res2Net's ``torch.split(x, self.width)``). None: no such module —
    a torch layer failed on its own, which is a bug, not something to keep whole."""
    for name in reversed(path):
        if name and not type(model.get_submodule(name)).__module__.startswith("torch.nn"):
            return name
    return None


__all__ = ["culprit", "failing_modules", "groups_of_its_kind"]
