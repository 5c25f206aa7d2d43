"""Reparametrisations are found, saved, loaded and removed by their class: stacks of two on one
weight."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from sparsitylab import models, reparam
from sparsitylab.sparsify.masks import topk_mask


class Scale(reparam.Reparametrization):
    """A second reparametrisation for the tests: w ↦ factor · w (a buffer), with a setting saved by
    name."""

    def __init__(self, factor: torch.Tensor, label: str = "x"):
        super().__init__()
        self.label = label
        self.register_buffer("factor", factor.detach().clone())

    def forward(self, w):
        return w * self.factor

    def settings(self):
        return {"label": self.label}

    @classmethod
    def from_state(cls, tensors, settings):
        return cls(tensors["factor"], settings["label"])


def stacked(order: str) -> nn.Module:
    torch.manual_seed(0)
    net = models.mlp((8, 6, 4))
    keep = topk_mask(net.fc1.weight, 0.5)
    if order == "scale below":
        reparam.attach(net.fc1, "weight", Scale(torch.full((6, 1), 3.0), "three"))
        reparam.apply_masks(net, {"fc1": keep})
    else:
        reparam.apply_masks(net, {"fc1": keep})
        reparam.attach(net.fc1, "weight", Scale(torch.full((6, 1), 3.0), "three"))
    return net


def saved(net: nn.Module) -> dict:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("order", ["scale below", "mask below"])
def test_two_stacked_reparametrisations_save_and_load_by_class(order):
    net = stacked(order)
    state = saved(net)
    expected = ["Scale", "FixedMask"] if order == "scale below" else ["FixedMask", "Scale"]
    assert reparam.saved_stacks(state) == {"fc1": expected}
    fresh = reparam.load_state_dict(models.mlp((8, 6, 4)), state)
    assert [type(p).__name__ for p in reparam.stack(fresh.fc1, "weight")] == expected
    assert reparam.find(fresh, Scale)[0].module.label == "three"
    x = torch.randn(3, 8)
    torch.testing.assert_close(fresh(x), net(x))
    assert list(reparam.get_masks(fresh)) == [
        "fc1"
    ]  # found by class, wherever it sits on the stack


def test_loading_into_a_model_with_another_stack_is_refused():
    state = saved(stacked("mask below"))
    other = stacked("scale below")
    with pytest.raises(
        ValueError, match=r"carries \['Scale', 'FixedMask'\] but the state_dict holds"
    ):
        reparam.load_state_dict(other, state)


def test_remove_bakes_a_class_only_with_what_lies_below_it():
    net = stacked("mask below")
    x = torch.randn(3, 8)
    expected = net(x)
    with pytest.raises(ValueError, match="sits on top of"):
        reparam.remove(copy.deepcopy(net), Scale)
    masks_only = reparam.remove_masks(
        copy.deepcopy(net)
    )  # the mask is at the bottom: baked, Scale stays
    assert [type(p).__name__ for p in reparam.stack(masks_only.fc1, "weight")] == ["Scale"]
    torch.testing.assert_close(masks_only(x), expected)
    everything = reparam.remove(copy.deepcopy(net))
    assert not reparam.find(everything) and type(everything.fc1) is nn.Linear
    torch.testing.assert_close(everything(x), expected)
    assert reparam.find(net, Scale) and reparam.is_masked(
        net
    )  # the deep copies left the original alone


def test_a_foreign_parametrisation_or_class_is_refused_on_load():
    net = models.mlp((8, 6, 4))

    class Plain(nn.Module):
        def forward(self, w):
            return w

    torch.nn.utils.parametrize.register_parametrization(net.fc1, "weight", Plain())
    with pytest.raises(ValueError, match="not all sparsitylab reparametrisations"):
        reparam.load_state_dict(models.mlp((8, 6, 4)), net.state_dict())
    state = saved(stacked("mask below"))
    state["fc1.parametrizations.weight.1._extra_state"] = {"class": "Missing"}
    with pytest.raises(ValueError, match="unknown reparametrisation class 'Missing'"):
        reparam.load_state_dict(models.mlp((8, 6, 4)), state)
    with pytest.raises(TypeError, match="Reparametrization"):
        reparam.attach(net.fc2, "weight", Plain())
