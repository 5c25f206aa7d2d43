"""Models: output shapes and the parameter counts the documents give."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import models


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_output_shape(name):
    net = models.build(name)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_mlp_matches_ssl_784_500_300_10():
    net = models.mlp()
    widths = [(m.in_features, m.out_features) for m in net if isinstance(m, torch.nn.Linear)]
    assert widths == [(784, 500), (500, 300), (300, 10)]
    assert n_params(net) == 784 * 500 + 500 + 500 * 300 + 300 + 300 * 10 + 10


def test_lenet_is_caffe_lenet():
    net = models.lenet5()
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 20, (5, 5)),
        (20, 50, (5, 5)),
    ]
    # 520 + 25 050 + 400 500 + 5 010: the parameter count of Caffe's examples/mnist/lenet.prototxt
    assert n_params(net) == 431_080


def test_resnet20_structure_and_depth():
    net = models.resnet20()
    assert len(net.blocks) == 9 and net.depth() == 20
    assert 265_000 < n_params(net) < 275_000  # He et al.: 0.27 M
    net.blocks[4].drop_branch()
    assert net.depth() == 18
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_dropped_branch_equals_zeroed_branch():
    torch.manual_seed(0)
    net = models.resnet20().eval()
    block = net.blocks[3]  # a downsampling block: the option-A shortcut carries it alone
    for m in block.branch.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.zeros_(m.bias)
    x = torch.randn(2, 1, 28, 28)
    before = net(x)
    block.drop_branch()
    assert torch.allclose(net(x), before, atol=1e-6)


def test_unknown_model_and_bad_sizes():
    with pytest.raises(ValueError, match="name='vgg'"):
        models.build("vgg")
    with pytest.raises(ValueError, match="sizes"):
        models.mlp((784,))
    with pytest.raises(ValueError, match="image_size=8"):
        models.lenet5(image_size=8)


def test_every_layer_has_a_name():
    assert [n for n, _ in models.lenet5().named_children()] == [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "flatten",
        "fc1",
        "relu1",
        "fc2",
    ]
    assert [n for n, m in models.mlp().named_modules() if isinstance(m, torch.nn.Linear)] == [
        "fc1",
        "fc2",
        "fc3",
    ]
    convnet = [n for n, m in models.convnet_bn().named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convnet == ["conv1", "conv2", "conv3"]
    resnet = models.resnet20()
    assert list(resnet.blocks._modules) == [f"s{s}b{b}" for s in (1, 2, 3) for b in (1, 2, 3)]
    assert isinstance(resnet.get_submodule("blocks.s2b1.branch.conv1"), torch.nn.Conv2d)
    assert resnet.blocks[3] is resnet.blocks.s2b1  # positions still work where order matters


def test_eval_mode_restores_each_mode_even_after_an_error():
    training, evaluating = models.mlp((4, 3, 2)), models.lenet5().eval()
    with models.eval_mode(training, evaluating):
        assert not training.training and not evaluating.training
    assert training.training and not evaluating.training
    with pytest.raises(RuntimeError, match="inside"), models.eval_mode(training):
        assert not training.training
        raise RuntimeError("inside")
    assert training.training
