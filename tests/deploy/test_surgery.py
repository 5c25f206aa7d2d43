"""Surgery: plans are plain data that replay on a fresh model; attention with fewer heads computes
what nn.MultiheadAttention computes; tied tensors are sliced everywhere; a changed function is
refused and the caller's model is never touched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsitylab import graph
from sparsitylab.deploy import surgery
from sparsitylab.deploy.attention import PrunedMultiheadAttention


def encoder() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 4, 16, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 1, enable_nested_tensor=False).eval()


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_pruned_attention_equals_multihead_attention(batch_first, need_weights):
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first).eval()
    pruned = PrunedMultiheadAttention.like(mha, 2)
    pruned.load_state_dict(mha.state_dict())
    q = torch.randn(3, 5, 8) if batch_first else torch.randn(5, 3, 8)
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[0, -1] = True
    want = mha(q, q, q, key_padding_mask=padding, attn_mask=mask, need_weights=need_weights)
    got = pruned(q, q, q, key_padding_mask=padding, attn_mask=mask, need_weights=need_weights)
    assert torch.allclose(got[0], want[0], atol=1e-5)
    if need_weights:
        assert torch.allclose(got[1], want[1], atol=1e-5)


def test_removing_heads_swaps_in_a_pruned_attention_and_the_plan_replays():
    model, x = encoder(), torch.randn(2, 6, 8)
    g = graph.trace(model, x)
    heads = next(grp for grp in g.groups if grp.heads)
    removed = {heads.name: torch.tensor([True, False, True, False])}
    plan = surgery.plan_from(model, g, removed)
    data = plan.to_dict()
    assert data["keep"]["layers.0.self_attn.in_proj_weight"] == {
        "0": [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23]
    }
    fresh = surgery.apply_plan(encoder(), surgery.Plan.from_dict(data))
    attention = fresh.layers[0].self_attn
    assert isinstance(attention, PrunedMultiheadAttention) and attention.num_heads == 2
    zeroed = encoder()
    with torch.no_grad():
        rows = torch.tensor([0, 1, 4, 5])
        for offset in (0, 8, 16):
            zeroed.layers[0].self_attn.in_proj_weight[offset + rows] = 0
            zeroed.layers[0].self_attn.in_proj_bias[offset + rows] = 0
        zeroed.layers[0].self_attn.out_proj.weight[:, rows] = 0
    assert surgery.relative_error(surgery.outputs(fresh, x), surgery.outputs(zeroed, x)) < 1e-5


def test_tied_tensors_are_sliced_everywhere():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)
            self.c = nn.Linear(3, 4)
            self.c.weight = self.a.weight

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + self.c(x))

    model = Tied()
    surgery.apply_plan(model, surgery.Plan({"a.weight": {0: [0, 2]}, "a.bias": {0: [0, 2]}}))
    assert model.c.weight is model.a.weight and model.c.weight.shape == (2, 3)


def test_bad_plans_and_changed_functions_are_refused():
    model, x = encoder(), torch.randn(2, 6, 8)
    g = graph.trace(model, x)
    heads = next(grp for grp in g.groups if grp.heads)
    with pytest.raises(ValueError, match="would empty its layers"):
        surgery.plan_from(model, g, {heads.name: torch.ones(4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="has 4 units"):
        surgery.plan_from(model, g, {heads.name: torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not a prunable group"):
        surgery.plan_from(model, g, {"nothing": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="which this model does not have"):
        surgery.apply_plan(encoder(), surgery.Plan({"layers.9.weight": {0: [0]}}))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = surgery.plan_from(model, g, {heads.name: torch.tensor([True, False, False, False])})
    with pytest.raises(ValueError, match="different function"):  # the reference is the dense model
        surgery.prune(model, plan, x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def grouped_block() -> nn.Module:
    """A ResNeXt-style block: 1×1 conv, a grouped 3×3 conv (4 groups of 2 in → 2 out), 1×1 conv."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.ReLU(),
        nn.Conv2d(8, 5, 1),
    ).eval()  # fmt: skip


def masked_copy(model: nn.Module, g: graph.Graph, removed: dict) -> nn.Module:
    """``model`` with every parameter slice of the removed units zeroed."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for name, flags in removed.items():
            for (tensor, axis), index in g.group(name).index.items():
                module_name, _, attr = tensor.rpartition(".")
                module = masked.get_submodule(module_name)
                if attr in module._parameters:
                    getattr(module, attr).index_fill_(axis, index[flags].reshape(-1), 0.0)
    return masked


@pytest.mark.parametrize("outputs_side, inputs_side", [(True, False), (False, True), (True, True)])
def test_a_grouped_conv_loses_channels_inside_every_group(outputs_side, inputs_side):
    model, x = grouped_block(), torch.randn(2, 3, 6, 6)
    g = graph.trace(model, x)
    outputs = next(grp for grp in g.groups if any(m.tensor == "2.weight" for m in grp.producers))
    inputs = next(grp for grp in g.groups if any(m.tensor == "0.weight" for m in grp.producers))
    assert outputs.size == inputs.size == 2  # a unit: one position in each of the 4 groups
    removed = {}
    if outputs_side:
        removed[outputs.name] = torch.tensor([False, True])
    if inputs_side:
        removed[inputs.name] = torch.tensor([False, True])
    reference = masked_copy(model, g, removed)
    small = surgery.prune(model, surgery.plan_from(model, g, removed), x, reference=reference)
    conv = small[2]
    assert conv.groups == 4
    assert conv.in_channels == conv.weight.shape[1] * 4 == small[0].out_channels
    assert conv.out_channels == conv.weight.shape[0] == small[4].in_channels
    assert conv.weight.shape[:2] == (4 if outputs_side else 8, 1 if inputs_side else 2)
