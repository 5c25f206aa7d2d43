"""The dependency graph of any model: which parameters must shrink together.

::

    graph = sparsitylab.graph.trace(model, example_input)   # one traced forward pass
    print(graph.explain())          # prunable groups, what is kept whole and why, boundaries
    graph.groups                    # ChannelGroup: member tensors, axis, indices of each unit

:mod:`~sparsitylab.graph.tracer` records the model's ATen ops; :mod:`~sparsitylab.graph.rules`
(with :mod:`~sparsitylab.graph.moves`, :mod:`~sparsitylab.graph.pointwise`,
:mod:`~sparsitylab.graph.contract` and :mod:`~sparsitylab.graph.norms`) says how each op couples
the units of its operands; :mod:`~sparsitylab.graph.graph` turns that into groups, and
:mod:`~sparsitylab.graph.report` writes them as text.
"""

from .graph import Boundary, ChannelGroup, Graph, KeptGroup, Member, explain, input_error, trace

__all__ = [
    "Boundary",
    "ChannelGroup",
    "Graph",
    "KeptGroup",
    "Member",
    "explain",
    "input_error",
    "trace",
]
