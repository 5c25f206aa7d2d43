"""Trace any model once, at the ATen level, and record how its parameters' units are coupled.

**Why this tracer.** ``torch.fx`` symbolic tracing stops at the first Python ``if`` on a tensor and
at most Hugging Face models; ``torch.export`` refuses data-dependent control flow and specialises
what it cannot follow; autograd-graph tracing (Torch-Pruning's) sees neither ops run without grad
nor buffers. This module runs the model's real forward on the example input under a
``TorchDispatchMode`` (the dispatcher-level hook that ``make_fx`` and ``torch.export`` are built
on), so it sees the same canonical ATen ops with real shapes, follows whatever Python the model
runs, and costs one forward pass. What it cannot see (the branch an ``if`` did not take) it reports:

- an op that reads an activation's *value* into Python (``.item()``, ``bool(tensor)``,
  ``nonzero``) marks the module running it as a **boundary**: everything crossing it is kept whole;
- a module whose parameters were never used on the traced path is kept whole;
- an op without a rule (:mod:`sparsitylab.graph.rules`) keeps every unit it touches whole.

Fast paths that fuse whole layers into one opaque op (``nn.TransformerEncoderLayer``'s, oneDNN's
RNN kernel) are switched off while tracing, so their parts are traced like any other code.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from .labels import PIN, UNLABELED, Labeling, axis_labeling


@dataclass
class State:
    """What the tracer knows about one tensor: its labelings, whether it was computed from
    parameters (an activation, as opposed to input data or constants), and, for a constant fill
    (zeros, ones, ``full``), its value (it resizes with any unit)."""

    labelings: list[Labeling] = field(default_factory=list)
    active: bool = False
    fill: float | None = None
    source: str | None = None  # the weight whose matmul or convolution made it (moves keep it)


@dataclass(frozen=True)
class Owner:
    """The parameter or buffer axis whose indices a block of unit ids stands for."""

    tensor: str
    axis: int
    start: int
    size: int


def tensor_names(model: nn.Module) -> dict[int, str]:
    """id(tensor) → name of every parameter and persistent buffer (a non-persistent buffer, such
    as rotary frequencies or position ids, is a constant the model recomputes); a parametrised
    tensor's ``original`` is named after the tensor it stands for (``fc1.weight``)."""
    names = {}
    buffers = [
        (f"{prefix}.{name}" if prefix else name, t)
        for prefix, module in model.named_modules()
        for name, t in module._buffers.items()
        if t is not None and name not in module._non_persistent_buffers_set
    ]
    for name, t in [*buffers, *model.named_parameters()]:
        if ".parametrizations." in name and name.endswith(".original"):
            layer, rest = name.split(".parametrizations.")
            name = f"{layer}.{rest.removesuffix('.original')}"
        names[id(t)] = name
    return names


def call(model: nn.Module, example: Any) -> Any:
    """``model(example)``: a mapping is passed as keywords, a tuple as positional arguments."""
    if isinstance(example, Mapping):
        return model(**example)
    if isinstance(example, tuple):
        return model(*example)
    return model(example)


class Tracer(TorchDispatchMode):
    """Runs the rules of :mod:`sparsitylab.graph.rules` on every ATen op and keeps the unit
    registry: links (id pairs that are one unit), pins (ids that must stay), sinks (where a unit is
    read by a weight, with its may-be-non-zero flag), roles, rectangular constraints and heads."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names = tensor_names(model)
        self.states: dict[int, tuple[torch.Tensor, State]] = {}
        self.count = 1  # id 0 is PIN
        self.owners: list[Owner] = []
        self.links: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.pins: list[tuple[torch.Tensor, str, bool]] = []
        self.sinks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.roles: list[tuple[torch.Tensor, str]] = []
        self.rects: list[torch.Tensor] = []
        self.head_ids: list[torch.Tensor] = []
        self.stack: list[str] = []
        self.called: dict[str, int] = {}  # module → calls, in the order of first call
        self.outputs_of: dict[int, tuple[torch.Tensor, str]] = {}  # leaf module outputs
        self.first_op: dict[str, str] = {}  # leaf module → the first op reading its output
        self.norm_after: dict[str, str] = {}  # weight tensor → the BatchNorm that normalises it
        self.boundaries: list[tuple[str, str]] = []  # (module, reason): crossing units are pinned
        self.unknown: list[tuple[str, str]] = []  # (module, op) ops without a rule
        self.notes: list[str] = []
        self.inputs: dict[str, list[torch.Tensor]] = {}
        self.ops = 0

    # --- the unit registry -------------------------------------------------------------------
    def fresh(self, name: str, axis: int, size: int) -> torch.Tensor:
        ids = torch.arange(self.count, self.count + size)
        self.owners.append(Owner(name, axis, self.count, size))
        self.count += size
        return ids

    def link(self, a: torch.Tensor, b: torch.Tensor, reason: str = "") -> None:
        """a[i] and b[i] are one unit; a unit linked to an unlabeled position is pinned."""
        a, b = a.reshape(-1), b.reshape(-1)
        both = (a >= 0) & (b >= 0)
        if bool(both.any()):
            self.links.append((a[both], b[both]))
        lone = torch.cat([a[(a >= 0) & (b < 0)], b[(b >= 0) & (a < 0)]])
        if lone.numel():
            self.pin(lone, reason or f"meets data that cannot shrink with it in {self.where}")

    def pin(self, ids: torch.Tensor, reason: str, silent: bool = False) -> None:
        ids = ids.reshape(-1)
        ids = ids[ids >= 0]
        if ids.numel():
            self.pins.append((ids, reason, silent))

    def sink(self, ids: torch.Tensor, nz: torch.Tensor) -> None:
        self.sinks.append((ids.reshape(-1), nz.reshape(-1)))

    def role(self, ids: torch.Tensor, role: str) -> None:
        self.roles.append((ids.reshape(-1), role))

    def rect(self, ids: torch.Tensor) -> None:
        """ids (…, A, B): after pruning, rows must stay whole or columns go in every row."""
        if ids.shape[-1] > 1 and ids.shape[-2] > 1:
            self.rects.append(ids.reshape(-1, *ids.shape[-2:]))

    def heads(self, ids: torch.Tensor) -> None:
        self.head_ids.append(ids.reshape(-1))

    @property
    def where(self) -> str:
        return (self.stack[-1] if self.stack else "") or "the model"

    # --- tensor states -----------------------------------------------------------------------
    def state(self, t: Any) -> State | None:
        """The state of a tensor argument (None for anything else); a parameter's or buffer's is
        created on first use, one labeling per axis longer than 1."""
        if not isinstance(t, torch.Tensor):
            return None
        found = self.states.get(id(t))
        if found is not None and found[0] is t:
            return found[1]
        name = self.names.get(id(t))
        if name is None:
            return State()
        state = State(active=isinstance(t, nn.Parameter))
        flat_nz = t.detach().ne(0)
        for axis, size in enumerate(t.shape):
            if size > 1:
                nz = flat_nz.movedim(axis, 0).reshape(size, -1).any(1)
                state.labelings.append(axis_labeling(self.fresh(name, axis, size), nz, axis))
        self.set(t, state)
        return state

    def set(self, t: torch.Tensor, state: State) -> None:
        self.states[id(t)] = (t, state)

    def pin_state(self, state: State | None, reason: str, silent: bool = False) -> None:
        for lab in state.labelings if state is not None else []:
            self.pin(lab.ids, reason, silent)

    # --- the dispatch hook -------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from .moves import MOVES
        from .rules import apply

        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        for a in args:
            seen = self.outputs_of.get(id(a)) if isinstance(a, torch.Tensor) else None
            if seen is not None and seen[0] is a and seen[1] not in self.first_op:
                self.first_op[seen[1]] = name
        if name.endswith("_") and name[:-1] in MOVES and args and isinstance(args[0], torch.Tensor):
            # an in-place move (transpose_): map the labels with its out-of-place twin, from a
            # copy of the input taken before the op changes its shape
            before = args[0].detach().clone()
            self.set(before, self.state(args[0]))
            out = func(*args, **kwargs)
            apply(self, getattr(torch.ops.aten, name[:-1]), (before, *args[1:]), kwargs, out)
        else:
            out = func(*args, **kwargs)
            apply(self, func, args, kwargs, out)
        self.ops += 1
        return out

    # --- module hooks ------------------------------------------------------------------------
    def enter(self, name: str, args: tuple) -> None:
        self.stack.append(name)
        self.called[name] = self.called.get(name, 0) + 1
        self.inputs[name] = [a for a in pytree.tree_leaves(args) if isinstance(a, torch.Tensor)]

    def leave(self, name: str, output: Any, leaf: bool = False) -> None:
        if self.stack and self.stack[-1] == name:
            self.stack.pop()
        if leaf and isinstance(output, torch.Tensor):
            self.outputs_of[id(output)] = (output, name)
        if any(module == name for module, _ in self.boundaries):
            reason = f"crosses {name or 'the model'}, a boundary the trace cannot follow"
            for t in [*self.inputs.get(name, []), *pytree.tree_leaves(output)]:
                self.pin_state(self.state(t), reason)

    def boundary(self, module: str, reason: str) -> None:
        if (module, reason) not in self.boundaries:
            self.boundaries.append((module, reason))


@dataclass
class Trace:
    """The raw result of :func:`run_trace`: the tracer's registry and what was seen."""

    tracer: Tracer
    model_name: str
    seconds: float
    outputs: list[torch.Tensor]


def _hooks(model: nn.Module, tracer: Tracer) -> list:
    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: tracer.enter(n, a)))
        leaf = not any(True for _ in module.children())
        handles.append(
            module.register_forward_hook(lambda m, a, o, n=name, f=leaf: tracer.leave(n, o, f))
        )
    return handles


@contextmanager
def unfused() -> Iterator[None]:
    """Fused kernels off (oneDNN's RNN, the transformer fast path): their parts run as ordinary
    ATen ops, which a dispatch mode can see. Restores the settings afterwards."""
    previous = torch.backends.mha.get_fastpath_enabled()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # oneDNN's note on TF32 when toggled
            torch.backends.mha.set_fastpath_enabled(False)
            with torch.backends.mkldnn.flags(enabled=False):
                yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@torch.no_grad()
def run_trace(model: nn.Module, example: Any) -> Trace:
    """Run ``model`` once on ``example`` (eval mode, no grad, fused fast paths off) under the
    tracer; the model's outputs are pinned (a model's output width is not ours to change)."""
    tracer = Tracer(model)
    handles = _hooks(model, tracer)
    was_training = model.training
    started = time.perf_counter()
    try:
        model.eval()
        with unfused(), tracer:
            output = call(model, example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    leaves = [t for t in pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]
    for t in leaves:
        tracer.pin_state(tracer.state(t), "reaches the model's output")
        seen = tracer.outputs_of.get(id(t))
        if seen is not None and seen[0] is t:
            tracer.first_op.setdefault(seen[1], "output")
    for name, module in model.named_modules():
        own = [n for n, p in module.named_parameters(recurse=False) if id(p) not in tracer.states]
        if own and name not in tracer.called:  # (a parent may use its parameters functionally)
            tracer.boundary(name, "never called on the traced path (kept whole)")
            prefix = f"{name}." if name else ""
            for p_name in own:
                tensor = module.get_parameter(p_name)
                state = tracer.state(tensor)
                tracer.pin_state(state, f"{prefix}{p_name} is not on the traced path")
    return Trace(tracer, type(model).__name__, time.perf_counter() - started, leaves)


__all__ = ["Owner", "State", "Trace", "Tracer", "call", "run_trace", "tensor_names", "unfused"]

_ = (PIN, UNLABELED)  # re-exported names used by the rules
