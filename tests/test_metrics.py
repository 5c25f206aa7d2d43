"""Metrics: sparsity conventions, counts, FLOPs/MACs of known layers, latency helper."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsitylab import metrics, models


class Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


def test_linear_and_conv_macs():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Conv2d(4, 6, 3, stride=2),
        nn.Flatten(),
        nn.Linear(6 * 13 * 13, 5),
    )
    costs = {c.name: c for c in metrics.layer_costs(net, (1, 1, 28, 28))}
    assert costs["0"].macs == 28 * 28 * 4 * 1 * 9
    assert costs["1"].macs == 13 * 13 * 6 * 4 * 9
    assert costs["3"].macs == 6 * 13 * 13 * 5
    assert costs["3"].flops == 2 * costs["3"].macs
    assert metrics.total_macs(net) == sum(c.macs for c in costs.values())


def test_grouped_conv_macs():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    (cost,) = metrics.layer_costs(nn.Sequential(conv), (1, 8, 10, 10))
    assert cost.macs == 10 * 10 * 8 * 2 * 9


def test_lenet_macs_match_hand_count():
    expected = 24 * 24 * 20 * 25 + 8 * 8 * 50 * 20 * 25 + 800 * 500 + 500 * 10
    assert metrics.total_macs(models.lenet5()) == expected


def test_sparse_macs_and_sparsity_with_parametrized_mask():
    layer = nn.Linear(10, 4)
    mask = torch.ones(4, 10)
    mask[:, :7] = 0
    parametrize.register_parametrization(layer, "weight", Mask(mask))
    net = nn.Sequential(layer)
    assert metrics.layer_sparsity(net) == {"0": pytest.approx(0.7)}
    assert metrics.sparsity(net) == pytest.approx(0.7)
    (cost,) = metrics.layer_costs(net, (1, 10))
    assert cost.macs == 40 and cost.sparse_macs == 12
    assert metrics.count_parameters(net) == 44
    assert metrics.count_nonzeros(net) == 12 + layer.bias.count_nonzero().item()


def test_sparsity_vocabulary_weights_parameters_bn_rows_columns():
    net = nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10), nn.Linear(10, 1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[1].weight[:4] = 0
        net[1].bias.fill_(1.0)  # β starts at 0
        net[2].weight[0, :3] = 0
    assert metrics.sparsity(net) == pytest.approx(103 / 110)  # weights of Linear/Conv: the default
    assert metrics.sparsity(net, of="weights") == metrics.sparsity(net)
    params = 110 + 10 + 1 + 10 + 10  # + biases, BN γ and β
    assert metrics.sparsity(net, of="parameters") == pytest.approx((100 + 4 + 3) / params)
    assert metrics.sparsity(net, of="bn") == pytest.approx(0.4)
    assert metrics.sparsity(net, of="rows") == pytest.approx(
        10 / 11
    )  # all 10 rows of layer 0, none of layer 2
    assert metrics.sparsity(net, of="columns") == pytest.approx(13 / 20)
    assert metrics.layer_sparsity(net, of="columns") == {"0": 1.0, "2": pytest.approx(0.3)}
    assert metrics.sparsity(torch.tensor([0.0, 1.0, 0.0, 2.0])) == 0.5
    with pytest.raises(ValueError, match="of='filters' is not one of"):
        metrics.sparsity(net, of="filters")
    with pytest.raises(ValueError, match="no affine BatchNorm"):
        metrics.sparsity(models.mlp(), of="bn")


def test_costs_table_has_total_row():
    table = metrics.costs_table(metrics.layer_costs(models.mlp()))
    assert table.loc["total", "params"] == 784 * 500 + 500 * 300 + 300 * 10
    assert table.loc["total", "sparsity"] == 0.0


def test_layers_off_the_forward_path_are_skipped():
    net = models.resnet20()
    full = len(metrics.layer_costs(net))
    net.blocks[0].drop_branch()
    assert len(metrics.layer_costs(net)) == full - 2


def test_latency_helpers_restore_the_mode_and_say_how_they_measured():
    net = models.convnet_bn().train()
    timing = metrics.model_latency(net, (4, 1, 28, 28), min_run_time=0.01)
    assert net.training and timing.median > 0 and timing.q1 <= timing.median <= timing.q3
    assert (
        timing.clock == "wall" and timing.threads == torch.get_num_threads() and "ms" in str(timing)
    )
    other = models.mlp().eval()
    both = metrics.compare_latency(
        {"a": net, "b": other}, torch.zeros(2, 1, 28, 28), repeats=3, warmup=1
    )
    assert set(both) == {"a", "b"} and both["a"].samples == 3
    assert net.training and not other.training


def test_standard_error_is_the_binomial_noise_of_one_test_set():
    assert metrics.standard_error(0.8, 5000) == pytest.approx(0.005657, rel=1e-3)
    assert metrics.standard_error(1.0, 100) == 0.0
    assert metrics.standard_error(0.8, 20_000) == pytest.approx(
        metrics.standard_error(0.8, 5000) / 2
    )


def test_count_macs_counts_attention_products_and_recurrences():
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    tokens, d = 10, 16
    x = torch.randn(1, tokens, d)
    linear = tokens * (3 * d * d + d * d + 2 * d * 32)  # q, k, v, out, and the MLP
    attention = 2 * tokens * tokens * d  # q·kᵀ and softmax·v
    assert metrics.count_macs(layer, x).dense == linear + attention
    lstm = nn.LSTM(8, 12, batch_first=True)
    steps = 5
    per_step = 4 * 12 * (8 + 12)
    assert metrics.count_macs(lstm, torch.randn(1, steps, 8)).dense == steps * per_step


def test_sparse_macs_scale_each_product_by_its_weight_density():
    mlp = models.mlp((6, 4, 3))
    with torch.no_grad():
        mlp.fc1.weight[:, :3] = 0  # half of fc1
    macs = metrics.count_macs(mlp, torch.randn(1, 6))
    assert macs.dense == 6 * 4 + 4 * 3 and macs.sparse == 12 + 12


def test_a_model_without_weight_layers_has_no_macs_and_no_error():
    model = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Flatten())
    assert metrics.total_macs(model) == 0 and metrics.layer_costs(model) == []
