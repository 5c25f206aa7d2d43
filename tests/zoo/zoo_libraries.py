"""torchvision and timm models, the ones users bring most: small configs for the method zoo and the
standard classification builders for the graph, all with random init (no downloads).

torchvision's PyPI wheel is a CUDA build: its C++ ops (``nms``, ``roi_align``, …) cannot load beside
the CPU torch the project installs, and ``import torchvision`` then fails while registering a fake
kernel for ``torchvision::nms`` (``operator torchvision::nms does not exist``). Installed in the
venv it would break every ``transformers`` vision model too (they import it), so ``make install``
puts torchvision and timm in ``.venv/zoo-packages``, which only these tests put on ``sys.path``.
The models are pure Python and never call those ops: :func:`import_torchvision` declares the two
operator schemas the import needs — only when the real extension did not load — and imports again.
timm imports torchvision, so it comes after.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

_SCHEMAS: list[torch.library.Library] = []  # kept alive: a Library deregisters when collected


PACKAGES = Path(sys.prefix) / "zoo-packages"


def import_torchvision() -> ModuleType:
    """``import torchvision``, declaring the NMS schemas its import needs if its ops cannot load."""
    if PACKAGES.is_dir() and str(PACKAGES) not in sys.path:
        sys.path.append(str(PACKAGES))  # after the venv's own packages
    try:
        import torchvision

        return torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    schemas = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        schemas.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SCHEMAS.append(schemas)
    import torchvision

    return torchvision


def import_timm() -> ModuleType:
    import_torchvision()
    import timm

    return timm


def small(kind: str) -> nn.Module:
    """A small model of a torchvision or timm class, for 3×16×16 images and 5 classes."""
    if kind.startswith("tv-"):
        models = import_torchvision().models
        if kind == "tv-shufflenet":
            return models.ShuffleNetV2([1, 1, 1], [8, 16, 32, 64, 64], num_classes=5)
        if kind == "tv-mobilenetv3":
            return models.mobilenet_v3_small(num_classes=5, width_mult=0.25)
        if kind == "tv-swin":  # v1: its code derives a head's width from its input width
            return models.SwinTransformer(
                patch_size=[2, 2], embed_dim=8, depths=[1, 1], num_heads=[2, 4],
                window_size=[2, 2], num_classes=5,
            )  # fmt: skip
    if kind.startswith("timm-"):
        timm = import_timm()
        if kind == "timm-vit":
            return timm.create_model(
                "vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=16,
                patch_size=4, depth=1, embed_dim=16, num_heads=2,
            )  # fmt: skip
        if kind == "timm-efficientnet":
            from timm.models.efficientnet import _gen_efficientnet

            return _gen_efficientnet(
                "efficientnet_b0", channel_multiplier=0.25, depth_multiplier=0.25,
                pretrained=False, num_classes=5,
            )  # fmt: skip
    raise KeyError(kind)


# The standard builders the graph test compacts (random halves of every group removed): a family
# each, small enough for CI; every torchvision classification model was run once by hand (closing
# note of the "Any model" issue).
TORCHVISION = (
    "resnet18", "resnext50_32x4d", "mobilenet_v3_small", "shufflenet_v2_x0_5", "efficientnet_b0",
    "regnet_y_400mf", "densenet121", "squeezenet1_1", "mnasnet0_5", "convnext_tiny", "swin_t",
)  # fmt: skip
TIMM = ("resnet18", "cspresnet50", "res2net50_14w_8s", "deit_tiny_patch16_224", "levit_128s")
IMAGE_SIDE = {"swin_t": 224, "deit_tiny_patch16_224": 224, "levit_128s": 224}


def standard(library: str, name: str) -> nn.Module:
    """A standard torchvision or timm classification model, random init, 10 classes."""
    if library == "torchvision":
        return import_torchvision().models.get_model(name, weights=None, num_classes=10)
    return import_timm().create_model(name, pretrained=False, num_classes=10)
