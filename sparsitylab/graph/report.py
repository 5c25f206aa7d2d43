"""A traced graph as text: its prunable groups, what is kept whole and why, and the boundaries
(what :meth:`Graph.explain <sparsitylab.graph.graph.Graph.explain>` prints)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .graph import Graph


def _table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = list(rows)
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]


def explain_graph(graph: Graph) -> str:
    """The graph as text: prunable groups, what is kept whole and why, the boundaries."""
    lines = [
        f"{graph.model}: {graph.ops} ATen ops traced in {graph.seconds:.2f} s; "
        f"{len(graph.groups)} prunable groups ({sum(g.size for g in graph.groups)} units), "
        f"{len(graph.kept)} kept whole, {len(graph.boundaries)} boundaries",
        "",
        "Prunable groups (units removed together across every member):",
    ]
    lines += _table(
        (g.name, f"{g.size} {'heads' if g.heads else 'units'}", g.describe()) for g in graph.groups
    ) or ["  (none)"]
    lines += ["", "Kept whole:"]
    lines += _table((k.name, f"{k.units} units", "; ".join(k.reasons)) for k in graph.kept) or [
        "  (nothing)"
    ]
    if graph.boundaries:
        lines += ["", "Boundaries (everything crossing them is kept):"]
        lines += [f"  {b.where}: {b.reason}" for b in graph.boundaries]
    if graph.notes:
        lines += ["", "Notes:"] + [f"  {n}" for n in graph.notes]
    return "\n".join(lines)


__all__ = ["explain_graph"]
