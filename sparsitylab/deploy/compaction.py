"""Compaction: turn structural zeros into a smaller *dense* model (Wen et al., NIPS 2016,
https://arxiv.org/abs/1608.03665, Table 4: the speedups of structured sparsity come from this), for
any model.

The model is traced once on an example input (:func:`sparsitylab.graph.trace`), and every unit of a
coupled group that is exactly zero wherever it is read is removed from every member tensor
(:mod:`sparsitylab.deploy.surgery`) — a unit is removed only when that cannot change the output
(eval mode):

- a unit whose producers (weight rows, biases) are zero and whose every path to a reader keeps it
  zero (ReLU, pooling; a BatchNorm that maps 0 to 0 on its channel, β − γ·μ/√(σ² + ε) = 0): an
  SSL-zeroed filter group, which owns its bias and BatchNorm γ, β;
- a channel whose BatchNorm has γ = 0 and β = 0 (STR-BN's and channel pruning's): the BatchNorm
  outputs exactly 0 on it whatever the filter computes, so the filter feeding it goes too;
- a unit nobody reads: every input column that multiplies it is zero;
- across residual adds, concatenations, depthwise and grouped convolutions, flatten → linear,
  attention heads and MLP hidden units alike (the graph couples them); units the graph keeps whole
  (module doc of :mod:`sparsitylab.graph`) are never touched.

Three passes are specific to the library's own models: a residual branch (any
:class:`~sparsitylab.sparsify.groups.ResidualBlock`) whose parameters are all zero is dropped
(``drop_branch()``), one whose last conv is zero but whose last BatchNorm still adds a per-channel
constant becomes a :class:`ConstantBranch`; the zero input columns of the first layer of an
``nn.Sequential`` model are skipped by a :class:`Gather`. For every model, shape fibers (GEMM
columns) that are zero in every filter turn the conv into a :class:`GemmConv2d`, an im2col GEMM
over the surviving columns.

A layer keeps at least one unit. A model still reparametrised (masks attached) is refused with a
``TypeError``: bake it first (``reparam.remove``). :func:`compact` always checks the outputs on the
example input (``ValueError`` if they differ) and never changes its argument. The result keeps the
layer names of the original, and trains, saves and loads like any PyTorch model; its
``sparsitylab_plan`` attribute holds the removal as plain data, replayable on a fresh instance of
the user's class (:mod:`sparsitylab.deploy.serialize`).
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..gemm import alive_columns, alive_inputs, alive_rows, gemm_view
from ..graph import ChannelGroup, Graph, input_error, trace
from ..metrics import BATCHNORMS, layer_costs
from ..sparsify.groups import ResidualBlock, branch_alive
from .layers import ConstantBranch, Gather, GemmConv2d
from .repair import culprit, failing_modules, groups_of_its_kind
from .surgery import Plan, apply_plan, check_same, outputs, plan_from

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)
PASS_THROUGH = (
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)  # (with WEIGHT_LAYERS: what the library's own models are made of; serialize allows them)


def _keep_at_least_one(keep: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """An all-False keep mask keeps its highest-score unit (a layer needs ≥ 1 unit; still exact)."""
    if keep.any():
        return keep
    keep = torch.zeros_like(keep)
    keep[int(score.argmax())] = True
    return keep


@torch.no_grad()
def batchnorm_zero_response(bn: nn.Module) -> torch.Tensor:
    """What an eval-mode BatchNorm outputs on each channel for an input of exactly 0: β − γ·μ/√(σ² +
    ε) (without running statistics a zero channel normalises to 0, leaving β)."""
    if bn.running_mean is not None:
        value = -bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
    else:
        value = torch.zeros(bn.num_features, device=bn.weight.device if bn.affine else None)
    if bn.affine:
        value = value * bn.weight + bn.bias
    return value


@torch.no_grad()
def lower_if_column_sparse(layer: nn.Module) -> nn.Module:
    """A Conv2d with all-zero GEMM columns becomes a :class:`GemmConv2d` without them; else
    unchanged."""
    if not isinstance(layer, nn.Conv2d):
        return layer
    alive = alive_columns(gemm_view(layer.weight))
    if bool(alive.all()):
        return layer
    alive = _keep_at_least_one(alive, alive.float())
    return GemmConv2d.from_conv(layer, alive.nonzero().flatten())


def _last_conv_is_zero(branch: nn.Module) -> bool:
    if not isinstance(branch, nn.Sequential):
        return False
    convs = [m for m in branch if isinstance(m, nn.Conv2d)]
    after = list(branch)[list(branch).index(convs[-1]) + 1 :] if convs else []
    return (
        bool(convs)
        and not bool(alive_rows(gemm_view(convs[-1].weight), convs[-1].bias).any())
        and all(isinstance(m, BATCHNORMS) for m in after)
    )


@torch.no_grad()
def drop_zero_branches(model: nn.Module) -> list[str]:
    """Remove residual branches that compute nothing input-dependent; return their names.

    A branch whose parameters are all exactly zero outputs 0: ``drop_branch()``. A branch whose last
    conv is all zero outputs (eval mode) the constant β − γ·μ/√(σ² + ε) of its last BatchNorm: it
    becomes a :class:`ConstantBranch` (no weight layers left), or is dropped when that constant is
    0.
    """
    removed = []
    for name, block in model.named_modules():
        if (
            not isinstance(block, ResidualBlock)
            or block.branch is None
            or isinstance(block.branch, ConstantBranch)
        ):
            continue
        if not branch_alive(block):
            block.drop_branch()
        elif _last_conv_is_zero(block.branch):
            conv = next(m for m in block.branch if isinstance(m, nn.Conv2d))
            value = block.branch.eval()(
                torch.zeros(1, conv.in_channels, 1, 1, device=conv.weight.device)
            )
            if bool(value.ne(0).any()):
                block.branch = ConstantBranch(value)
            else:
                block.drop_branch()
        else:
            continue
        removed.append(name)
    return removed


def reparametrised_tensors(model: nn.Module) -> list[str]:
    """``layer.tensor`` names that still carry a ``torch.nn.utils.parametrize``
    reparametrisation."""
    return [
        f"{name}.{tensor}" if name else tensor
        for name, m in model.named_modules()
        if parametrize.is_parametrized(m)
        for tensor in m.parametrizations
    ]


def layer_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> dict[str, int]:
    """Per-sample MACs of every Linear, Conv2d and GemmConv2d actually run: positions × weight
    size."""
    return {c.name: c.macs for c in layer_costs(model, input_shape, (*WEIGHT_LAYERS, GemmConv2d))}


def producer_scores(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Σ of squares of each unit's producer rows (its weights and biases): which unit to keep when
    all are zero-valued … and, in general, how strong a unit is."""
    score = torch.zeros(group.size)
    for member in group.members:
        if member.role not in ("produces", "passes"):
            continue
        tensor = model.get_parameter(member.tensor) if _is_parameter(model, member.tensor) else None
        if tensor is None:
            continue
        sq = (
            tensor.detach()
            .float()
            .pow(2)
            .movedim(member.axis, 0)
            .reshape(tensor.shape[member.axis], -1)
        )
        score += sq.sum(1).cpu()[group.unit_slices(member)].sum(1)
    return score


def _is_parameter(model: nn.Module, name: str) -> bool:
    try:
        model.get_parameter(name)
        return True
    except AttributeError:
        return False


def dead_units(model: nn.Module, graph: Graph) -> dict[str, torch.Tensor]:
    """Group name → the units to remove: exactly zero wherever they are read (at least one unit of
    every group stays: the strongest)."""
    removed = {}
    for group in graph.groups:
        dead = group.dead.clone()
        if bool(dead.all()):
            dead[int(producer_scores(model, group).argmax())] = False
        if bool(dead.any()):
            removed[group.name] = dead
    return removed


def default_input(model: nn.Module) -> torch.Tensor:
    """The example input of the library's own models when none is given: one 28×28 image for a
    model whose first weight layer is a Conv2d, one feature vector for a Linear (fixed seed)."""
    first = next((m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)), None)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    if isinstance(first, nn.Conv2d):
        return torch.randn(1, first.in_channels, 28, 28, generator=generator).to(device)
    if isinstance(first, nn.Linear):
        return torch.randn(1, first.in_features, generator=generator).to(device)
    raise ValueError(
        f"{type(model).__name__}: pass example_input= (an input the model accepts); compaction "
        "traces the model on it and checks the compacted outputs against it"
    )


@torch.no_grad()
def gather_first_inputs(model: nn.Sequential) -> nn.Sequential:
    """Skip the zero input columns (features or channels) of the first weight layer of a
    Sequential with a :class:`Gather` named ``input_gather``; ``model`` itself is changed."""
    children = list(model.named_children())
    position = next((i for i, (_, m) in enumerate(children) if isinstance(m, WEIGHT_LAYERS)), None)
    if position is None:
        return model
    layer = children[position][1]
    fed = alive_inputs(layer.weight)
    if bool(fed.all()):
        return model
    fed = _keep_at_least_one(fed, fed.float())
    index = fed.nonzero().flatten()
    layer.weight = nn.Parameter(layer.weight.detach().index_select(1, index).clone())
    if isinstance(layer, nn.Linear):
        layer.in_features = layer.weight.shape[1]
    else:
        layer.in_channels = layer.weight.shape[1]
    children.insert(position, ("input_gather", Gather(index, dim=1)))
    return nn.Sequential(OrderedDict(children))


@torch.no_grad()
def lower_column_sparse(model: nn.Module) -> dict[str, list[int]]:
    """Replace every Conv2d with all-zero GEMM columns by a :class:`GemmConv2d` (in place);
    returns conv name → kept columns."""
    lowered = {}
    for name, conv in list(model.named_modules()):
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or isinstance(conv.padding, str):
            continue
        small = lower_if_column_sparse(conv)
        if small is conv:
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, small)
        lowered[name] = small.columns.tolist()
    return lowered


def unit_plan(
    model: nn.Module, example_input: Any, keep: Collection[str] = ()
) -> tuple[Plan, Graph]:
    """The plan removing every unit of ``model`` that is zero wherever it is read (except in the
    groups named in ``keep``), and the graph."""
    graph = trace(model, example_input)
    removed = {k: v for k, v in dead_units(model, graph).items() if k not in keep}
    return (plan_from(model, graph, removed) if removed else Plan()), graph


def _attempt(
    model: nn.Module, example: Any, keep: Collection[str], gather_inputs: bool, shapes: bool
) -> tuple[nn.Module, Plan, bool, Graph]:
    """One compaction of a copy of ``model``, the groups in ``keep`` left whole (unchecked)."""
    small = copy.deepcopy(model).eval()
    dropped = drop_zero_branches(small)
    plan, graph = unit_plan(small, example, keep)
    apply_plan(small, plan)
    replayable = not dropped
    if gather_inputs and isinstance(small, nn.Sequential):
        gathered = gather_first_inputs(small)
        replayable &= gathered is small
        small = gathered
    if shapes:
        plan.lowered = lower_column_sparse(small)
    return small.eval(), plan, replayable, graph


def _code_to_keep(
    small: nn.Module, graph: Graph, example: Any, kept: Collection[str]
) -> tuple[list[str], str]:
    """The groups to keep whole (besides ``kept``) because a module's own code broke on the
    compacted sizes (:mod:`sparsitylab.deploy.repair`): those inside modules of its class, else
    those touching one; and why. Nothing when a torch layer failed on its own (a bug, not user
    code)."""
    found = failing_modules(small, example)
    where = culprit(small, found[0]) if found is not None else None
    if where is None:
        return [], ""
    error = found[1]
    reason = (
        f"{type(small.get_submodule(where)).__name__}'s code assumes the sizes it was built with "
        f"({type(error).__name__}: {str(error)[:120]})"
    )
    for within in (True, False):
        groups = [g for g in groups_of_its_kind(graph, small, where, within) if g not in kept]
        if groups:
            return groups, reason
    return [], reason


@torch.no_grad()
def compact(
    model: nn.Module,
    gather_inputs: bool = True,
    shapes: bool = True,
    example_input: Any = None,
) -> nn.Module:
    """A smaller dense copy of ``model`` whose outputs equal the original's (eval mode); ``model``
    is unchanged (see the module docstring).

    example_input: an input the model accepts (a tensor, a tuple of arguments or a dict of keyword
    arguments; 1–2 samples are enough), used to trace the model and to check the result; the
    library's own models default to one 28×28 image. gather_inputs: skip a Sequential model's
    zero input columns; shapes: lower column-sparse convs to GEMM.
    """
    still = reparametrised_tensors(model)
    if still:
        raise TypeError(
            f"model is still reparametrised ({still}); bake the reparametrisations in first "
            "(sparsitylab.reparam.remove(model), or the method's finalize)"
        )
    example = default_input(model) if example_input is None else example_input
    try:
        expected = outputs(model, example)
    except Exception as error:
        raise input_error(model, example, error) from error
    kept: dict[str, str] = {}
    while True:
        small, plan, replayable, graph = _attempt(model, example, kept, gather_inputs, shapes)
        try:
            check_same(small, expected, example, "compaction")
            break
        except ValueError:
            groups, reason = _code_to_keep(small, graph, example, kept)
            if not groups:
                raise
            kept.update(dict.fromkeys(groups, reason))
    if kept:
        warnings.warn(
            f"compaction kept {len(kept)} groups whole (their zeros stay): "
            + "; ".join(sorted(set(kept.values()))),
            stacklevel=2,
        )
    small.sparsitylab_plan = plan.to_dict() if replayable else None
    small.sparsitylab_kept_whole = kept
    return small


__all__ = [
    "ConstantBranch",
    "Gather",
    "GemmConv2d",
    "PASS_THROUGH",
    "WEIGHT_LAYERS",
    "batchnorm_zero_response",
    "compact",
    "dead_units",
    "default_input",
    "drop_zero_branches",
    "gather_first_inputs",
    "layer_macs",
    "lower_column_sparse",
    "lower_if_column_sparse",
    "producer_scores",
    "reparametrised_tensors",
    "unit_plan",
]
