"""Coverage: every weight matrix of any model is found, every other parameter says why it stays
dense, scope= narrows it and a scope naming nothing is an error; the methods and the runner report
covered and whole-model sparsity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsitylab import coverage, metrics, models, runner
from sparsitylab.methods.magnitude import one_shot


class Mixed(nn.Module):
    """An embedding, an attention block, an LSTM, a conv1d and a classifier tied to nothing."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.rnn = nn.LSTM(8, 6, batch_first=True)
        self.conv = nn.Conv1d(6, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, ids):
        x = self.embed(ids)
        x = self.norm(x + self.attn(x, x, x, need_weights=False)[0])
        x, _ = self.rnn(x)
        return self.fc(self.conv(x.transpose(1, 2)).mean(-1))


def test_every_weight_matrix_is_covered_and_the_rest_says_why():
    report = coverage.coverage(Mixed())
    covered = sorted(n for n, why in report.items() if why == coverage.COVERED)
    assert covered == [
        "attn.in_proj_weight",
        "attn.out_proj.weight",
        "conv.weight",
        "fc.weight",
        "rnn.weight_hh_l0",
        "rnn.weight_ih_l0",
    ]
    assert "embedding" in report["embed.weight"] and "bias" in report["fc.bias"]
    assert "normalisation" in report["norm.weight"]


def test_scope_narrows_and_names_nothing_is_an_error():
    model = Mixed()
    assert list(coverage.weight_matrices(model, "layers")) == ["attn.out_proj", "fc"]
    assert list(coverage.weight_matrices(model, ["rnn"])) == [
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
    ]
    assert list(coverage.weight_matrices(model, lambda w: w.kind == "attention")) == [
        "attn.in_proj_weight"
    ]
    with pytest.raises(ValueError, match=r"scope names \['rnnn'\]"):
        coverage.weight_matrices(model, ["rnnn"])
    with pytest.raises(TypeError, match="scope="):
        coverage.weight_matrices(model, "rnn")
    assert coverage.coverage(model, ["fc"])["conv.weight"] == "outside the method's scope"


def test_a_matrix_tied_to_an_embedding_belongs_to_the_table():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, ids):
            return self.head(self.embed(ids))

    assert coverage.all_matrices(Tied()) == {}


def test_magnitude_prunes_every_matrix_and_the_run_reports_both_sparsities():
    model = Mixed()
    x = torch.randint(0, 20, (16, 5))
    y = torch.randint(0, 3, (16,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    loaders = type("L", (), {"train": loader, "test": loader})()
    run = runner.run(one_shot(0.8), model, loaders, epochs=1, max_steps=1, progress=False)
    assert run.covered_sparsity == pytest.approx(0.8, abs=1e-3)
    assert run.sparsity == pytest.approx(metrics.sparsity(run.model))
    assert run.model_sparsity < run.covered_sparsity  # embeddings, norms, biases stay dense
    assert run.model.rnn.weight_hh_l0.count_nonzero() < run.model.rnn.weight_hh_l0.numel()
    text = run.summary()
    assert "whole model" in text and "left dense" in text and "embedding table" in text


def test_the_books_models_keep_their_numbers():
    lenet = models.lenet5()
    assert list(coverage.weight_matrices(lenet)) == list(metrics.prunable_layers(lenet))
    x = torch.randn(1, 1, 28, 28)
    assert metrics.count_macs(lenet, x).dense == metrics.total_macs(lenet)
