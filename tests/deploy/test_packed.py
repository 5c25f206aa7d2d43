"""Whole models packed in a sparse format compute what the masked model computes."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import models
from sparsitylab.deploy.formats import CSR, HBS, Sparse24
from sparsitylab.deploy.packed import PackedLayer, pack, packed_layers
from sparsitylab.metrics import prunable_layers
from sparsitylab.sparsify.masks import nm_mask, topk_mask


def _pruned(model, prune):
    with torch.no_grad():
        for layer in prunable_layers(model).values():
            layer.weight.mul_(prune(layer.weight))
    return model.eval()


@pytest.mark.parametrize("build", [models.lenet5, models.convnet_bn, models.mlp])
def test_csr_model_equals_the_masked_model(build):
    torch.manual_seed(0)
    model = _pruned(build(), lambda w: topk_mask(w, 0.8))
    packed = pack(model, lambda name, layer: CSR.from_weight(layer.weight))
    assert packed_layers(packed) == list(prunable_layers(model))
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(packed(x), model(x), atol=1e-5, rtol=1e-5)


def test_hbs_and_2_4_models_equal_the_masked_model():
    torch.manual_seed(1)
    model = models.mlp()
    x = torch.randn(4, 1, 28, 28)
    hbs = model
    formats = {
        name: HBS.from_dense(layer.weight.detach(), "4x1/63+1x1/97")
        for name, layer in prunable_layers(hbs).items()
        if layer.weight.shape[0] % 4 == 0
    }
    with torch.no_grad():  # the masked model: the weights the HBS levels hold
        for name, fmt in formats.items():
            prunable_layers(hbs)[name].weight.copy_(fmt.to_dense())
    packed = pack(hbs, lambda name, layer: formats.get(name))
    assert packed_layers(packed) == list(formats)
    torch.testing.assert_close(packed(x), hbs(x), atol=1e-5, rtol=1e-5)

    two_four = _pruned(models.mlp(), lambda w: nm_mask(w, 2, 4))
    packed = pack(
        two_four,
        lambda name, layer: (
            Sparse24.from_weight(layer.weight) if layer.weight.shape[1] % 16 == 0 else None
        ),
    )
    assert packed_layers(packed) == ["fc1"]  # 784 inputs; 500 and 300 are not multiples of 16
    torch.testing.assert_close(packed(x), two_four(x), atol=1e-5, rtol=1e-5)


def test_pack_leaves_the_model_alone_and_layers_it_skips_dense():
    model = models.lenet5().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    packed = pack(model, lambda name, layer: None)
    assert packed_layers(packed) == [] and not any(
        isinstance(m, PackedLayer) for m in model.modules()
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_pack_refuses_what_it_cannot_run_naming_each_layer():
    csr = lambda name, layer: CSR.from_weight(layer.weight)  # noqa: E731
    grouped = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2), torch.nn.Flatten())
    with pytest.raises(ValueError, match=r"0: a grouped convolution \(groups=2\)"):
        pack(grouped, csr)
    encoder = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    with pytest.raises(ValueError, match="self_attn.out_proj: MultiheadAttention reads") as found:
        pack(encoder, csr)
    assert "linear1: TransformerEncoderLayer's fused fast path" in str(found.value)
    mlp = models.mlp((6, 4, 3))
    assert packed_layers(pack(mlp, csr, example_input=torch.randn(2, 6))) == ["fc1", "fc2"]

    class ReadsWeight(torch.nn.Module):  # an owner that uses its child's weight directly
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(4, 4)

        def forward(self, x):
            return x @ self.inner.weight.t()

    with pytest.raises(ValueError, match="inner: never called as a module"):
        pack(ReadsWeight(), csr, example_input=torch.randn(2, 4))
