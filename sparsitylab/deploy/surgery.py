"""Remove units from any model, physically: slice every member tensor, then fix the modules.

A :class:`Plan` is plain data — for each tensor, the indices kept along each axis it loses units on
(and which convolutions were lowered to a column GEMM) — so it can be saved next to a
``state_dict`` and replayed on a freshly built model of the user's own class
(:func:`apply_plan`), with nothing pickled.

Applying a plan slices the tensors (``index_select`` on the stated axes; a tensor shared by several
modules, such as tied embeddings, is replaced everywhere) and then makes each module agree with its
new tensors: the sizes of ``Linear``, convolutions (``groups`` for depthwise ones), norms,
embeddings, RNNs and Hugging Face's ``Conv1D``; an ``nn.MultiheadAttention`` that loses heads
becomes a :class:`~sparsitylab.deploy.attention.PrunedMultiheadAttention`; attention modules that
store a head count (``num_heads``, ``num_attention_heads``, ``num_key_value_heads``…) or a width
computed from it (``all_head_size``, ``split_size``) get it updated. Whatever else a module's code
assumes is caught by the output check of :func:`prune`.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..graph import Graph
from ..graph.tracer import call
from ..models import eval_mode
from .attention import PrunedMultiheadAttention

HEAD_COUNTS = (
    "num_heads",
    "num_attention_heads",
    "n_head",
    "n_heads",
    "num_key_value_heads",
    "num_kv_heads",
    "n_kv_heads",
)
HEAD_DIMS = ("head_dim", "attention_head_size", "head_size", "dim_head")
HEAD_WIDTHS = ("all_head_size", "split_size", "inner_dim")
TOLERANCE = 1e-5  # relative max error allowed between the pruned and the reference model


@dataclass
class Plan:
    """What to remove: ``keep[tensor][axis]`` = kept indices (ascending) of that axis;
    ``lowered[conv]`` = the GEMM columns a column-sparse conv keeps (it becomes a ``GemmConv2d``).
    Plain data (ints, lists, strings)."""

    keep: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    lowered: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keep": {
                t: {str(a): list(i) for a, i in axes.items()} for t, axes in self.keep.items()
            },
            "lowered": {m: list(c) for m, c in self.lowered.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        keep = {
            t: {int(a): [int(i) for i in idx] for a, idx in axes.items()}
            for t, axes in data["keep"].items()
        }
        lowered = {m: [int(c) for c in cols] for m, cols in data.get("lowered", {}).items()}
        return cls(keep, lowered)

    def __bool__(self) -> bool:
        return bool(self.keep or self.lowered)

    def merge(self, other: Plan) -> Plan:
        """This plan followed by ``other`` (whose indices refer to the already-pruned tensors)."""
        keep = {t: dict(axes) for t, axes in self.keep.items()}
        for tensor, axes in other.keep.items():
            mine = keep.setdefault(tensor, {})
            for axis, kept in axes.items():
                mine[axis] = [mine[axis][i] for i in kept] if axis in mine else list(kept)
        return Plan(keep, {**self.lowered, **other.lowered})


def plan_from(model: nn.Module, graph: Graph, removed: dict[str, torch.Tensor]) -> Plan:
    """The plan that removes from ``model`` (the one ``graph`` traced), for each named group, the
    units flagged True in ``removed[name]`` (one bool per unit). A group keeps at least one unit."""
    drop: dict[tuple[str, int], set[int]] = defaultdict(set)
    for name, flags in removed.items():
        group = graph.group(name)
        flags = torch.as_tensor(flags, dtype=torch.bool).cpu()
        if flags.shape != (group.size,):
            raise ValueError(
                f"removed[{name!r}] has shape {tuple(flags.shape)}; group {name!r} has "
                f"{group.size} units"
            )
        if bool(flags.all()):
            raise ValueError(
                f"removing every unit of group {name!r} would empty its layers; keep at least one"
            )
        for key, index in group.index.items():
            drop[key] |= set(index[flags].reshape(-1).tolist())
    plan = Plan()
    for (tensor, axis), gone in sorted(drop.items()):
        if gone:
            size = _tensor(model, tensor).shape[axis]
            plan.keep.setdefault(tensor, {})[axis] = [i for i in range(size) if i not in gone]
    return plan


def _owners(model: nn.Module) -> dict[int, list[tuple[nn.Module, str, bool]]]:
    """id(tensor) → every (module, attribute, is_parameter) holding it (tied weights: several)."""
    found: dict[int, list[tuple[nn.Module, str, bool]]] = defaultdict(list)
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                found[id(p)].append((module, name, True))
        for name, b in module._buffers.items():
            if b is not None:
                found[id(b)].append((module, name, False))
    return found


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    module_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        module = None
    value = getattr(module, attr, None)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"the plan names {name!r}, which this model does not have")
    return value


@torch.no_grad()
def _slice_tensors(
    model: nn.Module, keep: dict[str, dict[int, list[int]]]
) -> dict[nn.Module, dict]:
    """Slice every planned tensor in place; returns module → {attr: old shape} of what changed."""
    owners = _owners(model)
    changed: dict[nn.Module, dict] = defaultdict(dict)
    for name, axes in keep.items():
        old = _tensor(model, name)
        new = old.detach()
        for axis, kept in sorted(axes.items()):
            index = torch.as_tensor(kept, dtype=torch.long, device=new.device)
            if len(kept) and (int(index.max()) >= new.shape[axis] or int(index.min()) < 0):
                raise ValueError(
                    f"the plan keeps index {int(index.max())} of {name!r} axis {axis}, which "
                    f"has {new.shape[axis]} entries"
                )
            new = new.index_select(axis, index)
        new = new.contiguous()
        if isinstance(old, nn.Parameter):  # one new Parameter, shared as the old one was
            new = nn.Parameter(new, requires_grad=old.requires_grad)
        for module, attr, is_param in owners[id(old)]:
            (module._parameters if is_param else module._buffers)[attr] = new
            changed[module][attr] = tuple(old.shape)
    return changed


def _fix_conv(conv: nn.Module, old: dict, rows: list[int] | None) -> None:
    w = conv.weight
    old_w = old.get("weight", tuple(w.shape))
    transposed = isinstance(conv, nn.modules.conv._ConvTransposeNd)
    out_axis, in_axis = (1, 0) if transposed else (0, 1)
    if conv.groups == 1:
        conv.out_channels = w.shape[out_axis] if not transposed else w.shape[1]
        conv.in_channels = w.shape[in_axis]
        return
    if rows is not None:  # whole groups may have gone (depthwise), or rows inside every group
        per_group = old_w[0] // conv.groups
        counts = Counter(r // per_group for r in rows)
        if len(set(counts.values())) > 1:
            raise ValueError(
                f"the plan keeps different numbers of output channels in the groups of a grouped "
                f"convolution ({dict(counts)}); keep its group whole"
            )
        conv.groups = len(counts)
    conv.out_channels = w.shape[0]
    conv.in_channels = w.shape[1] * conv.groups


def _fix_rnn(rnn: nn.RNNBase) -> None:
    rnn.input_size = rnn.weight_ih_l0.shape[1]
    rnn.hidden_size = rnn.weight_hh_l0.shape[1]
    rnn._init_flat_weights()


def fix_module(module: nn.Module, old: dict, rows: list[int] | None = None) -> nn.Module:
    """Make ``module``'s sizes agree with its (sliced) tensors (``old``: attribute → old shape;
    ``rows``: the weight rows kept, when they were sliced); returns it, or its replacement."""
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.conv._ConvNd):
        _fix_conv(module, old, rows)
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = next(
            t for t in (module.running_mean, module.weight) if t is not None
        ).shape[0]
    elif isinstance(module, nn.LayerNorm) and module.weight is not None:
        module.normalized_shape = tuple(module.weight.shape)
    elif isinstance(module, nn.GroupNorm) and module.weight is not None:
        module.num_channels = module.weight.shape[0]
    elif isinstance(module, nn.Embedding):
        module.num_embeddings, module.embedding_dim = module.weight.shape
    elif isinstance(module, nn.RNNBase):
        _fix_rnn(module)
    elif isinstance(module, nn.MultiheadAttention) and "in_proj_weight" in old:
        heads = module.in_proj_weight.shape[0] // (3 * module.head_dim)
        if heads != module.num_heads or module.in_proj_weight.shape[1] != module.embed_dim:
            return _to_pruned(module, heads)
    elif any(c.__name__ == "Conv1D" for c in type(module).__mro__) and hasattr(module, "nf"):
        module.nf = module.weight.shape[1]
        if hasattr(module, "nx"):
            module.nx = module.weight.shape[0]
    return module


@torch.no_grad()
def _to_pruned(mha: nn.MultiheadAttention, heads: int) -> PrunedMultiheadAttention:
    new = PrunedMultiheadAttention.like(mha, heads)
    new.in_proj_weight = nn.Parameter(mha.in_proj_weight.detach().clone())
    if mha.in_proj_bias is not None:
        new.in_proj_bias = nn.Parameter(mha.in_proj_bias.detach().clone())
    new.out_proj = copy.deepcopy(mha.out_proj)
    new.out_proj.in_features = new.out_proj.weight.shape[1]
    new.train(mha.training)
    return new


def _fix_heads(model: nn.Module, changed: dict[nn.Module, dict]) -> None:
    """Update head counts and widths stored on attention modules whose parameters lost heads."""
    touched = set(changed)
    for module in model.modules():
        below = [m for m in module.modules() if m in touched]
        if not below:
            continue
        sizes: dict[int, int] = {}
        for m in below:
            for attr, old_shape in changed[m].items():
                new_shape = getattr(m, attr).shape
                for a, b in zip(old_shape, new_shape):
                    if a != b:
                        sizes[a] = b
        head_dim = next(
            (getattr(module, n) for n in HEAD_DIMS if isinstance(getattr(module, n, None), int)),
            None,
        )
        if not head_dim:
            continue
        for name in HEAD_COUNTS:
            count = getattr(module, name, None)
            if isinstance(count, int) and count * head_dim in sizes:
                setattr(module, name, sizes[count * head_dim] // head_dim)
        for name in HEAD_WIDTHS:
            width = getattr(module, name, None)
            if isinstance(width, int) and width in sizes:
                setattr(module, name, sizes[width])
        groups = getattr(module, "num_key_value_groups", None)
        q, kv = (
            getattr(module, "num_attention_heads", None),
            getattr(module, "num_key_value_heads", None),
        )
        if isinstance(groups, int) and isinstance(q, int) and isinstance(kv, int) and kv:
            module.num_key_value_groups = q // kv


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in parent._modules.items():
            if child is old:
                parent._modules[name] = new


@torch.no_grad()
def apply_plan(model: nn.Module, plan: Plan) -> nn.Module:
    """Apply ``plan`` to ``model`` in place (see the module docstring); returns ``model``."""
    from .compaction import GemmConv2d

    changed = _slice_tensors(model, plan.keep)  # (checks every name first)
    rows = {  # the output channels a grouped convolution keeps decide its new group count
        model.get_submodule(name.rpartition(".")[0]): axes[0]
        for name, axes in plan.keep.items()
        if name.endswith(".weight") and 0 in axes
    }
    for module, old in list(changed.items()):
        fixed = fix_module(module, old, rows.get(module))
        if fixed is not module:
            _replace(model, module, fixed)
    _fix_heads(model, changed)
    for name, columns in plan.lowered.items():
        conv = model.get_submodule(name)
        _replace(
            model, conv, GemmConv2d.from_conv(conv, torch.as_tensor(columns, dtype=torch.long))
        )
    return model


def outputs(model: nn.Module, example: Any) -> list[torch.Tensor]:
    """The tensors ``model(example)`` returns, in eval mode, as a flat list."""
    with eval_mode(model), torch.no_grad():
        result = call(model, example)
    return [t for t in pytree.tree_leaves(result) if isinstance(t, torch.Tensor)]


def relative_error(got: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    """max |got − expected| / max |expected| over every output (inf when the shapes differ)."""
    if len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected)):
        return float("inf")
    scale = max((e.detach().abs().max().item() for e in expected if e.numel()), default=0.0)
    error = max(
        ((g - e).abs().max().item() for g, e in zip(got, expected) if g.numel()), default=0.0
    )
    return error / scale if scale else error


def check_same(model: nn.Module, reference: Any, example: Any, what: str) -> float:
    """Raise ``ValueError`` unless ``model`` computes ``reference`` (a model, or its outputs) on
    ``example`` within :data:`TOLERANCE`; returns the relative error."""
    expected = outputs(reference, example) if isinstance(reference, nn.Module) else reference
    try:
        got = outputs(model, example)
    except Exception as error:
        raise ValueError(
            f"{what}: the pruned {type(model).__name__} no longer runs on the example input "
            f"({type(error).__name__}: {error}). A module's code assumes a size the plan changed; "
            "keep the groups it owns whole (scope=) and report the model"
        ) from error
    error = relative_error(got, expected)
    if not error <= TOLERANCE:
        raise ValueError(
            f"{what}: the pruned {type(model).__name__} computes a different function (relative "
            f"max error {error:.3g} > {TOLERANCE:g}); nothing was returned. Keep the groups of the "
            "modules whose code assumes their old sizes whole (scope=), and report the model"
        )
    return error


def prune(model: nn.Module, plan: Plan, example: Any, reference: Any = None) -> nn.Module:
    """A pruned copy of ``model`` that computes what ``reference`` (default: ``model``) computes on
    ``example`` — else ``ValueError``, and ``model`` is untouched either way."""
    expected = outputs(reference if reference is not None else model, example)
    small = apply_plan(copy.deepcopy(model), plan).eval()
    check_same(small, expected, example, "pruning")
    return small


__all__ = [
    "HEAD_COUNTS",
    "Plan",
    "TOLERANCE",
    "apply_plan",
    "check_same",
    "fix_module",
    "outputs",
    "plan_from",
    "prune",
    "relative_error",
]
