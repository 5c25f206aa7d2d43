"""The dependency graph of a traced model: coupled channel groups, what is kept whole, and why.

:func:`trace` runs the model once (:mod:`sparsitylab.graph.tracer`) and turns the recorded links
into **units**: a unit is one connected component of linked ids — e.g. output channel 5 of a conv,
γ₅, β₅ and the running statistics of the BatchNorm after it, and input channel 5 of every conv that
reads it. Units with the same members form a :class:`ChannelGroup` (one layer's 64 channels; one
attention block's 12 heads). A group is data: for each member tensor, the axis and the indices of
each unit. Masks, importances, group norms and compaction all read it.

A unit linked to anything that cannot shrink with it (the model's input or output, a LayerNorm's
statistics, a fixed index, an op without a rule, a boundary) is *kept*; :func:`explain` lists the
kept units with their reasons, and the boundaries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from .labels import PIN
from .report import explain_graph
from .tracer import Trace, Tracer, run_trace

ROLE_ORDER = ("produces", "passes", "reads", "scales", "shifts", "stats")


@dataclass(frozen=True)
class Member:
    """One tensor axis a group's units occupy: ``role`` says what the tensor does with the unit
    (``produces`` it — a weight's output rows —, ``passes`` it — a depthwise conv —, ``reads`` it
    — a consumer's input columns —, ``scales``/``shifts`` it — norm γ, β, biases — or holds its
    running ``stats``)."""

    tensor: str
    axis: int
    role: str

    @property
    def module(self) -> str:
        return self.tensor.rpartition(".")[0]


@dataclass
class ChannelGroup:
    """Coupled units that a structured method removes together.

    ``index[(tensor, axis)]`` is a (units, k) long tensor: unit u occupies indices
    ``index[...][u]`` of that axis (k > 1 when one unit spans several indices: a channel read by a
    Linear after Flatten, a head's rows). ``heads`` is True for attention heads."""

    name: str
    members: tuple[Member, ...]
    index: dict[tuple[str, int], torch.Tensor]
    heads: bool = False
    dead: torch.Tensor | None = None  # units exactly zero wherever they are read (at trace time)

    @property
    def size(self) -> int:
        return next(iter(self.index.values())).shape[0]

    def of(self, role: str) -> list[Member]:
        """The members with ``role``."""
        return [m for m in self.members if m.role == role]

    @property
    def producers(self) -> list[Member]:
        """Weights whose output rows make the units (a residual group has several)."""
        return self.of("produces")

    def unit_slices(self, member: Member) -> torch.Tensor:
        return self.index[(member.tensor, member.axis)]

    def describe(self) -> str:
        by_module: dict[str, list[str]] = defaultdict(list)
        for m in self.members:
            by_module[m.module].append(f"{m.tensor.rpartition('.')[2]}[{m.axis}]")
        return "; ".join(f"{mod or '·'}: {', '.join(parts)}" for mod, parts in by_module.items())


@dataclass(frozen=True)
class KeptGroup:
    """Units that stay whole, with the first reasons found."""

    name: str
    units: int
    members: tuple[Member, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Boundary:
    """Something the trace could not follow, kept whole: a module or an op, and why."""

    where: str
    reason: str


@dataclass
class Graph:
    """What :func:`trace` found (see the module docstring)."""

    model: str
    seconds: float
    ops: int
    groups: list[ChannelGroup]
    kept: list[KeptGroup]
    boundaries: list[Boundary]
    notes: list[str] = field(default_factory=list)
    norm_after: dict[str, str] = field(default_factory=dict)  # layer → BatchNorm fed by it
    calls: dict[str, int] = field(default_factory=dict)  # module → calls, in order of first call
    first_op: dict[str, str] = field(default_factory=dict)  # leaf module → op reading its output

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise ValueError(
            f"group name={name!r} is not a prunable group; groups: {[g.name for g in self.groups]}"
        )

    def explain(self) -> str:
        return explain_graph(self)


def _components(tracer: Tracer, extra: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    pairs = [(a.numpy(), b.numpy()) for a, b in tracer.links] + extra
    n = tracer.count
    if pairs:
        rows = np.concatenate([a for a, _ in pairs])
        cols = np.concatenate([b for _, b in pairs])
    else:
        rows = cols = np.zeros(0, dtype=np.int64)
    matrix = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(matrix, directed=False)[1]


def _rectangles(tracer: Tracer) -> np.ndarray:
    """Components after the rectangular constraints (rows whole, else columns tied)."""
    extra: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(8):
        comp = _components(tracer, extra)
        added = False
        for rect in tracer.rects:
            ids = rect.numpy()
            valid = ids >= 0
            c = np.where(valid, comp[np.clip(ids, 0, None)], -1)
            rows_whole = all(len(set(row[row >= 0].tolist())) <= 1 for block in c for row in block)
            if rows_whole:
                continue
            first = np.broadcast_to(ids[:, :1, :], ids.shape)
            keep = valid & (first >= 0)
            pair = (first[keep], ids[keep])
            if not (comp[pair[0]] == comp[pair[1]]).all():
                extra.append(pair)
                added = True
        if not added:
            return comp
    return comp


def _owner_roles(tracer: Tracer) -> list[str]:
    """The role of each owned axis: the most frequent among its indices' (each index keeps its
    highest-ranked role: produces > passes > reads > scales > shifts > stats)."""
    rank = np.full(tracer.count, len(ROLE_ORDER), dtype=np.int64)
    for ids, role in tracer.roles:
        np.minimum.at(rank, ids.numpy(), ROLE_ORDER.index(role))
    roles = []
    for owner in tracer.owners:
        counts = np.bincount(
            rank[owner.start : owner.start + owner.size], minlength=len(ROLE_ORDER) + 1
        )
        best = int(counts[: len(ROLE_ORDER)].argmax())
        roles.append(ROLE_ORDER[best] if counts[best] else "unused")
    return roles


@dataclass
class _Units:
    """Every owned index sorted by (component, owner, index), run-length encoded by (component,
    owner): ``pair_*`` describe one owner's indices in one component."""

    index: np.ndarray
    pair_start: np.ndarray
    pair_count: np.ndarray
    pair_owner: np.ndarray
    comps: np.ndarray  # the components that own indices
    first_pair: np.ndarray  # per component, its first pair
    signature: np.ndarray  # per component, a hash of its (owner, count) pairs


def _units(tracer: Tracer, comp: np.ndarray) -> _Units:
    owner = np.concatenate(
        [np.full(o.size, k) for k, o in enumerate(tracer.owners)] or [np.zeros(0, np.int64)]
    )
    index = np.concatenate([np.arange(o.size) for o in tracer.owners] or [np.zeros(0, np.int64)])
    ids = np.concatenate(
        [np.arange(o.start, o.start + o.size) for o in tracer.owners] or [np.zeros(0, np.int64)]
    )
    of = comp[ids]
    order = np.lexsort((index, owner, of))
    of, owner, index = of[order], owner[order], index[order]
    new_pair = np.r_[True, (of[1:] != of[:-1]) | (owner[1:] != owner[:-1])] if len(of) else of
    pair_start = np.flatnonzero(new_pair)
    pair_count = np.diff(np.r_[pair_start, len(of)])
    pair_owner, pair_comp = owner[pair_start], of[pair_start]
    comps, first_pair = np.unique(pair_comp, return_index=True)
    codes = np.random.default_rng(0).integers(
        1, 2**62, size=len(tracer.owners) + 1, dtype=np.uint64
    )
    hashed = codes[pair_owner] * (pair_count.astype(np.uint64) + np.uint64(1))
    signature = np.add.reduceat(hashed, first_pair) if len(first_pair) else hashed
    return _Units(index, pair_start, pair_count, pair_owner, comps, first_pair, signature)


def _pins(tracer: Tracer, comp: np.ndarray) -> tuple[np.ndarray, dict[int, list[str]]]:
    """Which components are pinned, and the first reasons of each (silent pins have none)."""
    pinned = np.zeros(comp.max() + 1 if len(comp) else 1, dtype=bool)
    pinned[comp[PIN]] = True
    reasons: dict[int, list[str]] = defaultdict(list)
    for ids, reason, quiet in tracer.pins:
        hit = np.unique(comp[ids.numpy()])
        pinned[hit] = True
        if quiet:
            continue
        for c in hit.tolist():
            if len(reasons[c]) < 6 and reason not in reasons[c]:
                reasons[c].append(reason)
    return pinned, reasons


def _flags(parts: list[torch.Tensor], comp: np.ndarray, size: int) -> np.ndarray:
    flags = np.zeros(size, dtype=bool)
    if parts:
        flags[comp[torch.cat(parts).numpy()]] = True
    return flags


def build(result: Trace) -> Graph:
    """Units, groups, kept groups and boundaries from a raw trace."""
    tracer = result.tracer
    comp = _rectangles(tracer)
    pinned, reasons_of = _pins(tracer, comp)
    alive = _flags([ids[nz] for ids, nz in tracer.sinks], comp, len(pinned))
    heads = _flags(tracer.head_ids, comp, len(pinned))
    roles = _owner_roles(tracer)
    u = _units(tracer, comp)
    by_signature: dict[tuple, list[int]] = defaultdict(list)  # position of the component in u
    for position, (c, signature) in enumerate(zip(u.comps.tolist(), u.signature.tolist())):
        by_signature[(bool(pinned[c]), signature)].append(position)

    def first_owner(positions):  # the group's earliest owner, then its earliest unit
        p = u.first_pair[positions]
        return (int(u.pair_owner[p].min()), int(p.min()))

    groups, kept = [], []
    names: Counter = Counter()
    for (is_pinned, _), positions in sorted(
        by_signature.items(), key=lambda kv: first_owner(kv[1])
    ):
        positions = np.array(positions)
        start = u.first_pair[positions[0]]
        width = (
            u.first_pair[positions[0] + 1] if positions[0] + 1 < len(u.comps) else len(u.pair_start)
        ) - start
        owners = u.pair_owner[start : start + width].tolist()
        counts = u.pair_count[start : start + width].tolist()
        members = tuple(
            Member(tracer.owners[o].tensor, tracer.owners[o].axis, roles[o]) for o in owners
        )
        index = {}
        for k, (o, count) in enumerate(zip(owners, counts)):
            starts = u.pair_start[u.first_pair[positions] + k]
            index[(tracer.owners[o].tensor, tracer.owners[o].axis)] = torch.from_numpy(
                u.index[starts[:, None] + np.arange(count)]
            )
        first = index[(members[0].tensor, members[0].axis)][:, 0]
        order = torch.argsort(first, stable=True)
        index = {key: value[order] for key, value in index.items()}
        comps = u.comps[positions][order.numpy()]
        producers = [m for m in members if m.role in ("produces", "passes")]
        reasons: list[str] = []
        if is_pinned:
            found = [r for c in comps.tolist() for r in reasons_of.get(c, [])]
            reasons = list(dict.fromkeys(found))[:3]
            if not reasons:  # pinned silently (kernel taps, vocabulary rows): not channels
                continue
        label = producers[0].module if producers else f"{members[0].tensor}[{members[0].axis}]"
        names[label] += 1
        name = label if names[label] == 1 else f"{label}#{names[label]}"
        if not reasons and not producers:
            reasons = ["no layer produces these units"]
        elif not reasons and len(comps) < 2:
            reasons = ["a single unit (removing it would empty the layer)"]
        if reasons:
            kept.append(KeptGroup(name, len(comps), members, tuple(reasons)))
            continue
        dead = torch.from_numpy(~alive[comps])
        groups.append(ChannelGroup(name, members, index, bool(heads[comps].any()), dead))
    boundaries = [Boundary(m or "the model", r) for m, r in tracer.boundaries]
    boundaries += [
        Boundary(m or "the model", f"op {op} has no rule")
        for m, op in dict.fromkeys(tracer.unknown)
    ]
    return Graph(
        result.model_name,
        result.seconds,
        tracer.ops,
        groups,
        kept,
        boundaries,
        list(tracer.notes),
        dict(tracer.norm_after),
        dict(tracer.called),
        dict(tracer.first_op),
    )


def trace(model: nn.Module, example_input: Any) -> Graph:
    """The dependency graph of ``model`` on ``example_input`` (a tensor, a tuple of positional
    arguments or a dict of keyword arguments; a batch of 1–2 is enough). The model is not changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if example_input is None:
        raise ValueError(
            "example_input is None: tracing needs an input the model accepts, e.g. one batch of "
            "your data (model(example_input) must run)"
        )
    try:
        result = run_trace(model, example_input)
    except Exception as error:
        raise input_error(model, example_input, error) from error
    return build(result)


def input_error(model: nn.Module, example_input: Any, error: Exception) -> ValueError:
    """The error to raise when ``model(example_input)`` failed with ``error``."""
    return ValueError(
        f"{type(model).__name__} could not run on example_input {_shapes(example_input)}: "
        f"{type(error).__name__}: {error}. Pass an input the model accepts (a tensor, a tuple "
        "of arguments or a dict of keyword arguments)"
    )


def _shapes(example: Any) -> str:
    if isinstance(example, torch.Tensor):
        return f"of shape {tuple(example.shape)}"
    if isinstance(example, dict):
        return "{" + ", ".join(f"{k}: {_shapes(v)}" for k, v in example.items()) + "}"
    if isinstance(example, (tuple, list)):
        return "(" + ", ".join(_shapes(v) for v in example) + ")"
    return type(example).__name__


def explain(model: nn.Module, example_input: Any) -> str:
    """What a user reads first: :func:`trace` and the groups it found, as text."""
    return trace(model, example_input).explain()


__all__ = [
    "Boundary",
    "ChannelGroup",
    "Graph",
    "KeptGroup",
    "Member",
    "build",
    "explain",
    "explain_graph",
    "input_error",
    "trace",
]
