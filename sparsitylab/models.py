"""The source documents' architectures, sized for 28×28 grey images (Fashion-MNIST).

- :func:`mlp` — SSL's MLP 784-500-300-10 (Wen et al. 2016, MLP table).
- :func:`lenet5` — SSL's LeNet: the Caffe "lenet" net (conv 20 → pool → conv 50 → pool →
  fc 500 → ReLU → fc 10; 431 080 parameters). Faithful to Caffe, the convolutions have no ReLU.
- :func:`convnet_bn` — a small ConvNet with BatchNorm after every conv, for channel pruning.
- :func:`resnet20` — He et al.'s CIFAR ResNet-20 (3 stages × 3 basic blocks, 16-32-64 channels,
  parameter-free "option A" shortcuts), with a 1-channel stem. Every :class:`BasicBlock` keeps its
  residual branch in ``.branch`` so SSL's depth-wise group lasso can act on it and compaction can
  drop it (``block.drop_branch()``).

Every layer has a name (``conv1``, ``bn1``, ``fc1``, …; ResNet blocks ``blocks.s2b1`` = stage 2,
block 1, with ``branch.conv1`` … inside), so chapters and users refer to layers by name, never by
position. :func:`eval_mode` runs a block with models in eval mode and restores their modes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_int


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Run the block with every one of ``modules`` in eval mode; each one's train/eval mode is
    restored afterwards, whatever happens (measurements must not change the model they measure)."""
    saved = [(m, m.training) for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, training in reversed(saved):
            m.train(training)


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def mlp(sizes: tuple[int, ...] = (784, 500, 300, 10), activation: str = "relu") -> nn.Sequential:
    """Fully connected network: flatten, fc1, relu1, fc2, relu2, …, fcL (the input image is
    flattened). ``activation="sigmoid"`` puts sigmoids (named sigmoid1, …) between the layers."""
    if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
        raise ValueError(f"sizes={sizes} must hold at least two positive layer widths")
    make = ACTIVATIONS[check_choice(activation, "activation", ACTIVATIONS)]
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers.append((f"fc{i}", nn.Linear(fan_in, fan_out)))
        if i < len(sizes) - 1:
            layers.append((f"{activation}{i}", make()))
    return nn.Sequential(OrderedDict(layers))


def lenet5(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Sequential:
    """Caffe LeNet as used by SSL: conv1 20@5×5, pool, conv2 50@5×5, pool, fc 500, ReLU, fc 10."""
    side = ((image_size - 4) // 2 - 4) // 2
    if side <= 0:
        raise ValueError(f"image_size={image_size} is too small for LeNet (needs ≥ 12)")
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(in_channels, 20, 5)),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(20, 50, 5)),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(50 * side * side, 500)),
                ("relu1", nn.ReLU()),
                ("fc2", nn.Linear(500, num_classes)),
            ]
        )
    )


def convnet_bn(
    in_channels: int = 1, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128)
) -> nn.Sequential:
    """conv-BN-ReLU ×3 with max-pooling after the 2nd and 3rd, global average pool, fc."""
    c1, c2, c3 = widths
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(in_channels, c1, 3, padding=1, bias=False)),
                ("bn1", nn.BatchNorm2d(c1)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(c1, c2, 3, padding=1, bias=False)),
                ("bn2", nn.BatchNorm2d(c2)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("conv3", nn.Conv2d(c2, c3, 3, padding=1, bias=False)),
                ("bn3", nn.BatchNorm2d(c3)),
                ("relu3", nn.ReLU()),
                ("pool3", nn.MaxPool2d(2)),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
                ("fc", nn.Linear(c3, num_classes)),
            ]
        )
    )


class ShortcutA(nn.Module):
    """He et al.'s option-A shortcut: subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x


class BasicBlock(nn.Module):
    """out = ReLU(shortcut(x) + branch(x)), branch = conv-BN-ReLU-conv-BN.

    The branch is SSL's depth-wise group (the layers between two shortcut endpoints).
    After :meth:`drop_branch` the block computes ReLU(shortcut(x)) only.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.branch: nn.Module | None = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)),
                    ("bn1", nn.BatchNorm2d(out_channels)),
                    ("relu", nn.ReLU()),
                    ("conv2", nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)),
                    ("bn2", nn.BatchNorm2d(out_channels)),
                ]
            )
        )
        self.shortcut = ShortcutA(in_channels, out_channels, stride)

    def drop_branch(self) -> None:
        """Remove the residual branch (after depth-wise SSL zeroed it)."""
        self.branch = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shortcut(x)
        if self.branch is not None:
            out = out + self.branch(x)
        return F.relu(out)


class ResNetCifar(nn.Module):
    """CIFAR-style ResNet-(6n+2): stem conv 16, three stages of n blocks, global pool, fc."""

    def __init__(
        self,
        blocks_per_stage: int = 3,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (16, 32, 64),
    ):
        super().__init__()
        check_int(blocks_per_stage, "blocks_per_stage", minimum=1)
        self.stem = nn.Sequential(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)),
                    ("bn", nn.BatchNorm2d(widths[0])),
                    ("relu", nn.ReLU()),
                ]
            )
        )
        blocks, c_in = [], widths[0]
        for stage, c_out in enumerate(widths, start=1):
            for i in range(1, blocks_per_stage + 1):
                blocks.append(
                    (
                        f"s{stage}b{i}",
                        BasicBlock(c_in, c_out, stride=2 if stage > 1 and i == 1 else 1),
                    )
                )
                c_in = c_out
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.head = nn.Sequential(
            OrderedDict(
                [
                    ("pool", nn.AdaptiveAvgPool2d(1)),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(c_in, num_classes)),
                ]
            )
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def depth(self) -> int:
        """Weight layers on the longest path: stem + 2 per remaining branch + fc (20 for
        ResNet-20). A branch compaction replaced by its constant output (no parameters) holds no
        weight layer."""
        return 2 + 2 * sum(_has_weights(b.branch) for b in self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _has_weights(branch: nn.Module | None) -> bool:
    return branch is not None and any(True for _ in branch.parameters())


def resnet20(in_channels: int = 1, num_classes: int = 10) -> ResNetCifar:
    """ResNet-20 (≈ 0.27 M parameters) for 28×28 grey images."""
    return ResNetCifar(3, in_channels, num_classes)


MODELS = {"mlp": mlp, "lenet5": lenet5, "convnet_bn": convnet_bn, "resnet20": resnet20}


def build(name: str, **kwargs) -> nn.Module:
    """Build a model by name: one of ``MODELS``."""
    return MODELS[check_choice(name, "model name", MODELS)](**kwargs)


__all__ = [
    "eval_mode",
    "mlp",
    "lenet5",
    "convnet_bn",
    "resnet20",
    "ResNetCifar",
    "BasicBlock",
    "ShortcutA",
    "MODELS",
    "build",
]
