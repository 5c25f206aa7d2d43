"""MaskDivergence (SAD) against hand-counted flips."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsitylab.callbacks import MaskDivergence, flips

T, F = True, False
SEQUENCE = [  # the masks a model shows at the start and after each of 4 steps
    {"a": torch.tensor([T, T, F, F]), "b": torch.tensor([[T, F], [F, T]])},
    {"a": torch.tensor([T, F, T, F]), "b": torch.tensor([[T, F], [F, T]])},  # a: 2 flips
    {"a": torch.tensor([T, F, T, F]), "b": torch.tensor([[F, T], [F, T]])},  # b: 2 flips
    {"a": torch.tensor([T, T, F, F]), "b": torch.tensor([[F, T], [T, F]])},  # a: 2, b: 2
    {"a": torch.tensor([T, T, F, F]), "b": torch.tensor([[T, F], [F, T]])},  # b: 4
]


def test_flips_is_the_hamming_distance():
    assert flips(SEQUENCE[0], SEQUENCE[3]) == {"a": 0, "b": 4}
    with pytest.raises(ValueError, match="different layers"):
        flips({"a": torch.ones(2, dtype=torch.bool)}, {"b": torch.ones(2, dtype=torch.bool)})


def test_sad_per_step_per_epoch_and_against_final_by_hand():
    clock = iter(SEQUENCE)
    current = {}

    def masks(model):
        return current

    sad = MaskDivergence(masks)
    model = nn.Linear(1, 1)
    current.update(next(clock))
    sad.on_fit_start(model, None)
    records = []
    for epoch in (1, 2):  # two epochs of two steps
        for _ in range(2):
            current.update(next(clock))
            sad.after_step(model, 0)
        record = {}
        sad.on_epoch_end(model, epoch, record)
        records.append(record)
    assert [counts for _, counts in sad.steps] == [
        {"a": 2, "b": 0},
        {"a": 0, "b": 2},
        {"a": 2, "b": 2},
        {"a": 0, "b": 4},
    ]
    assert records[0]["sad_steps"] == 4 and records[1]["sad_steps"] == 8
    assert records[0]["sad_epoch"] == 4  # start → after step 2: a 2, b 2
    assert records[0]["sad_epoch/a"] == 2 and records[1]["sad_epoch/b"] == 2
    assert records[1]["sad_epoch"] == 4 and records[1]["sad_epoch_frac"] == 4 / 8
    assert sad.against_final() == [{"a": 0, "b": 0}, {"a": 2, "b": 2}, {"a": 0, "b": 0}]
    frame = sad.frame()
    assert frame["total"].tolist() == [2, 2, 4, 4] and frame.index.tolist() == [1, 2, 3, 4]


def test_sad_every_k_steps_counts_flips_since_the_last_record():
    clock = iter(SEQUENCE)
    current = dict(next(clock))
    sad = MaskDivergence(lambda model: current, every=2)
    sad.on_fit_start(nn.Linear(1, 1), None)
    for _ in range(4):
        current.update(next(clock))
        sad.after_step(None, 0)
    assert [counts for _, counts in sad.steps] == [{"a": 2, "b": 2}, {"a": 2, "b": 2}]
