"""torchvision and timm, the models users bring most (:mod:`zoo_libraries`): every method on small
configs of their classes, and the standard classification builders compacted exactly after random
halves of every group are zeroed."""

from __future__ import annotations

import warnings

import pytest
import torch
import zoo_libraries as libraries
import zoo_models as zoo
from test_zoo_graph import _zeroed

from sparsitylab import graph
from sparsitylab.deploy import compaction, surgery
from sparsitylab.deploy.surgery import TOLERANCE


@pytest.mark.parametrize("method", zoo.METHODS)
@pytest.mark.parametrize("name", zoo.LIBRARIES)
def test_every_method_on_torchvision_and_timm_classes(name, method, tmp_path):
    cell = zoo.run_cell(name, method, tmp_path)
    assert cell.status == zoo.expected(name, method)
    if cell.status == "works":
        assert cell.error <= TOLERANCE
        assert cell.params[1] <= cell.params[0] and cell.macs[1] <= cell.macs[0]


# Models whose own code fixes some sizes (a head's width, a split's width): compaction keeps those
# groups whole and says so; for every other model it keeps nothing whole.
KEEPS_WHOLE = {"swin_t", "deit_tiny_patch16_224", "levit_128s", "cspresnet50", "res2net50_14w_8s"}


@pytest.mark.parametrize(
    "library, name",
    [("torchvision", n) for n in libraries.TORCHVISION] + [("timm", n) for n in libraries.TIMM],
)
def test_standard_models_compact_exactly(library, name):
    torch.manual_seed(0)
    model = libraries.standard(library, name).eval()
    side = libraries.IMAGE_SIDE.get(name, 64)
    x = torch.randn(1, 3, side, side)
    g = graph.trace(model, x)
    removed = {}
    for group in g.groups:
        flags = torch.rand(group.size) < 0.5
        flags[0] = False
        removed[group.name] = flags
    masked = _zeroed(model, g, removed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small = compaction.compact(masked, example_input=x)
    assert surgery.relative_error(surgery.outputs(small, x), surgery.outputs(masked, x)) < 1e-5
    assert sum(p.numel() for p in small.parameters()) < 0.8 * sum(
        p.numel() for p in model.parameters()
    )
    kept = small.sparsitylab_kept_whole
    assert bool(kept) == (name in KEEPS_WHOLE)
    assert bool(kept) == any("code assumes the sizes" in str(w.message) for w in caught)
