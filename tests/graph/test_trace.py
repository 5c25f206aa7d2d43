"""The tracer's rules, one topology at a time: which units are coupled, which are kept whole and
why, the zero flags compaction reads, and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsitylab import graph, models


def _names(g):
    return {grp.name: grp.size for grp in g.groups}


def _members(grp):
    return {(m.tensor, m.axis): m.role for m in grp.members}


def test_a_chain_couples_each_layer_with_the_next_one():
    g = graph.trace(models.lenet5(), torch.randn(1, 1, 28, 28))
    assert _names(g) == {"conv1": 20, "conv2": 50, "fc1": 500}
    conv2 = g.group("conv2")
    assert _members(conv2) == {
        ("conv2.weight", 0): "produces",
        ("conv2.bias", 0): "shifts",
        ("fc1.weight", 1): "reads",
    }
    # flatten → linear: each conv2 channel is read by the 4×4 columns of its feature map
    assert conv2.index[("fc1.weight", 1)][3].tolist() == list(range(48, 64))
    assert [k.name for k in g.kept] == ["fc2"] and "output" in g.kept[0].reasons[0]


def test_a_residual_add_couples_every_producer_of_the_sum():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.a, self.b = (
                nn.Conv2d(1, 4, 3),
                nn.Conv2d(4, 4, 3, padding=1),
                nn.Conv2d(4, 4, 1),
            )
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            y = F.relu(self.stem(x))
            y = F.relu(y + self.a(y))
            return self.fc((y + self.b(y)).mean((2, 3)))

    g = graph.trace(Residual(), torch.randn(1, 1, 8, 8))
    (stage,) = g.groups
    assert {m.tensor for m in stage.producers} == {"stem.weight", "a.weight", "b.weight"}
    assert ("fc.weight", 1) in stage.index and stage.size == 4


def test_concat_gives_each_input_its_own_slice_of_the_readers():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 2), nn.Linear(3, 5), nn.Linear(7, 1)

        def forward(self, x):
            return self.c(torch.cat([self.a(x), self.b(x)], -1))

    g = graph.trace(Cat(), torch.randn(2, 3))
    assert g.group("a").index[("c.weight", 1)].flatten().tolist() == [0, 1]
    assert g.group("b").index[("c.weight", 1)].flatten().tolist() == [2, 3, 4, 5, 6]


def test_depthwise_passes_units_through_and_grouped_convs_tie_slots():
    depthwise = nn.Sequential(
        nn.Conv2d(1, 6, 1), nn.Conv2d(6, 6, 3, groups=6), nn.Conv2d(6, 2, 1), nn.Flatten()
    )
    g = graph.trace(depthwise, torch.randn(1, 1, 5, 5))
    assert _names(g) == {"0": 6}
    assert _members(g.group("0"))[("1.weight", 0)] == "passes"
    grouped = nn.Sequential(nn.Conv2d(1, 8, 1), nn.Conv2d(8, 8, 1, groups=2), nn.Conv2d(8, 2, 1))
    g = graph.trace(grouped, torch.randn(1, 1, 3, 3))
    assert g.group("0").index[("0.weight", 0)].tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]


def test_layernorm_keeps_its_channels_whole_with_the_reason():
    net = nn.Sequential(
        nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3), nn.GELU(), nn.Linear(3, 2)
    )
    g = graph.trace(net, torch.randn(2, 4))
    assert _names(g) == {"2": 3}  # the hidden units after the norm are free
    assert any("layer_norm" in r for k in g.kept for r in k.reasons)


def test_an_op_without_a_rule_keeps_what_it_touches_and_is_reported():
    class Fourier(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(5, 2)

        def forward(self, x):
            return self.b(torch.fft.rfft(self.a(x)).abs())

    g = graph.trace(Fourier(), torch.randn(2, 4))
    assert not g.groups
    assert any("has no rule" in b.reason for b in g.boundaries)


def test_zero_flags_follow_the_data():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight[1] = 0
        net[0].bias[1] = 0
        net[2].weight[:, 2] = 0
    assert graph.trace(net, torch.randn(2, 4)).group("0").dead.tolist() == [False, True, True]
    sigmoid = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))
    with torch.no_grad():
        sigmoid[0].weight[1] = 0
        sigmoid[0].bias[1] = 0  # sigmoid(0) = 0.5: still read
    assert graph.trace(sigmoid, torch.randn(2, 4)).group("0").dead.tolist() == [False] * 3


def test_bad_input_is_a_clear_error_and_the_model_is_untouched():
    net = models.mlp((6, 4, 3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"could not run on example_input of shape \(2, 5\)"):
        graph.trace(net, torch.randn(2, 5))
    with pytest.raises(ValueError, match="example_input is None"):
        graph.trace(net, None)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        graph.trace(lambda x: x, torch.randn(2, 6))
    with pytest.raises(ValueError, match="not a prunable group"):
        graph.trace(net, torch.randn(2, 6)).group("fc9")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training  # the mode is restored too


def test_explain_lists_groups_kept_units_and_boundaries():
    text = graph.explain(models.convnet_bn(), torch.randn(1, 1, 28, 28))
    assert "Prunable groups" in text and "Kept whole" in text
    assert "conv1" in text and "bn1: weight[0], bias[0], running_mean[0], running_var[0]" in text
