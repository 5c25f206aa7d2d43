"""A zoo of models nobody on the project wrote, built from small configs with random init (no
downloads), each with an example input and tiny synthetic loaders.

- Hugging Face ``transformers``: ResNet, ConvNeXt, MobileNetV2, RegNet, EfficientNet, ViT, Swin,
  BERT, GPT-2 and a Llama with grouped-query attention;
- PyTorch's own ``nn.TransformerEncoder``, ``nn.LSTM`` and a bidirectional two-layer ``nn.GRU``;
- torchvision's ShuffleNetV2, MobileNetV3 and Swin (v1) and timm's ViT and EfficientNet, in small
  configs (:mod:`zoo_libraries`: how torchvision imports beside the CPU torch);
- hand-written topologies the graph must handle: a concatenation, squeeze-excitation, a module
  used twice, a branch on a Python ``if`` (a boundary) and a ShuffleNet-style channel shuffle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from zoo_libraries import small as library_model

from sparsitylab.data import Loaders

IMAGE = (1, 16, 16)
TOKENS, VOCAB = 8, 64


@dataclass
class Entry:
    """How to build one zoo model and feed it."""

    build: Callable[[], nn.Module]
    inputs: str  # "image", "tokens", "sequence" or "features"
    classes: int = 5
    per_token: bool = False  # a language model: one target per token
    image: tuple[int, int, int] = IMAGE

    def model(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return self.build().eval()

    def batch(self, n: int, seed: int = 0) -> tuple[Any, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        if self.inputs == "image":
            x = torch.randn(n, *self.image, generator=g)
        elif self.inputs == "sequence":
            x = torch.randn(n, 6, 8, generator=g)
        else:
            ids = torch.randint(0, VOCAB, (n, TOKENS), generator=g)
            x = {"input_ids": ids} if self.inputs == "tokens" else ids
        shape = (n, TOKENS) if self.per_token else (n,)
        y = torch.randint(0, VOCAB if self.per_token else self.classes, shape, generator=g)
        return x, y

    def example(self, n: int = 2) -> Any:
        return self.batch(n, seed=123)[0]

    def loaders(self, n: int = 16, batch_size: int = 8) -> Loaders:
        train, test = _Pairs(*self.batch(n, 1)), _Pairs(*self.batch(n, 2))
        return Loaders(
            DataLoader(train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)),
            DataLoader(test, batch_size),
            DataLoader(test, batch_size),
        )


class _Pairs(Dataset):
    def __init__(self, x: Any, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = {k: v[i] for k, v in self.x.items()} if isinstance(self.x, dict) else self.x[i]
        return x, self.y[i]


def _hf(kind: str) -> nn.Module:
    import transformers as T

    images = dict(num_channels=1, num_labels=5)
    if kind == "resnet":
        c = T.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **images
        )
        return T.ResNetForImageClassification(c)
    if kind == "convnext":
        return T.ConvNextForImageClassification(
            T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, **images)
        )
    if kind == "mobilenetv2":
        c = T.MobileNetV2Config(image_size=16, depth_multiplier=0.25, **images)
        return T.MobileNetV2ForImageClassification(c)
    if kind == "regnet":
        c = T.RegNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=4, **images
        )
        return T.RegNetForImageClassification(c)
    if kind == "efficientnet":
        c = T.EfficientNetConfig(
            image_size=32, width_coefficient=0.25, depth_coefficient=0.2, hidden_dim=320, **images
        )
        return T.EfficientNetForImageClassification(c)
    if kind == "vit":
        c = T.ViTConfig(
            image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1,
            num_attention_heads=4, intermediate_size=32, **images,
        )  # fmt: skip
        return T.ViTForImageClassification(c)
    if kind == "swin":
        c = T.SwinConfig(
            image_size=16, patch_size=2, embed_dim=8, depths=[1, 1], num_heads=[2, 4],
            window_size=4, **images,
        )  # fmt: skip
        return T.SwinForImageClassification(c)
    if kind == "bert":
        c = T.BertConfig(
            vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
            intermediate_size=32, num_labels=5, max_position_embeddings=32,
        )  # fmt: skip
        return T.BertForSequenceClassification(c)
    if kind == "gpt2":
        c = T.GPT2Config(
            vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=4, n_positions=32, use_cache=False,
            bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        return T.GPT2LMHeadModel(c)
    if kind == "llama":
        c = T.LlamaConfig(
            vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
            use_cache=False, bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        return T.LlamaForCausalLM(c)
    raise KeyError(kind)


class EncoderClassifier(nn.Module):
    """Token embedding → ``nn.TransformerEncoder`` → mean over tokens → a class per sequence."""

    def __init__(self, d: int = 16, heads: int = 4, layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        layer = nn.TransformerEncoderLayer(d, heads, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)).mean(1))


class RecurrentClassifier(nn.Module):
    """An ``nn.LSTM`` / ``nn.GRU`` over a sequence of feature vectors; the last step classifies."""

    def __init__(self, cell: str = "lstm", layers: int = 1, bidirectional: bool = False):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(8, 12, layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(12 * (2 if bidirectional else 1), 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class Concat(nn.Module):
    """Two convolutions concatenated, a BatchNorm over both, a conv reading the concatenation."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1)
        self.bn, self.c, self.fc = (
            nn.BatchNorm2d(10),
            nn.Conv2d(10, 8, 3, padding=1),
            nn.Linear(8, 5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1)
        return self.fc(F.relu(self.c(F.relu(self.bn(y)))).mean((2, 3)))


class SqueezeExcite(nn.Module):
    """A conv whose channels are rescaled by a squeeze-excitation gate of two Linear layers."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8, 5)
        self.reduce, self.expand = nn.Linear(8, 4), nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(x))
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(y.mean((2, 3))))))
        return self.fc((y * gate[:, :, None, None]).mean((2, 3)))


class SharedTwice(nn.Module):
    """One conv applied twice in a row (its input and output channels are one group)."""

    def __init__(self):
        super().__init__()
        self.stem, self.twice = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.twice(F.relu(self.twice(F.relu(self.stem(x))))))
        return self.fc(y.mean((2, 3)))


class Gate(nn.Module):
    """A Python ``if`` on an activation's value: the trace cannot see the other branch."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.a(x)) if x.mean() > 0 else F.relu(self.b(x))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.gate, self.fc = nn.Conv2d(1, 8, 3, padding=1), Gate(), nn.Linear(8, 5)
        self.head = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.head(self.gate(F.relu(self.stem(x))))).mean((2, 3)))


class ChannelShuffle(nn.Module):
    """ShuffleNet-V2 style: split the channels, transform one half (1×1, depthwise 3×3, 1×1),
    concatenate and shuffle the two halves."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x1, x2 = x.chunk(2, dim=1)
        y = torch.cat([x1, F.relu(self.b2(self.dw(F.relu(self.b1(x2)))))], 1)
        b, c, h, w = y.shape
        y = y.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        return self.fc(y.mean((2, 3)))


ZOO: dict[str, Entry] = {
    **{
        name: Entry(lambda n=name: _hf(n), "image")
        for name in ("resnet", "convnext", "mobilenetv2", "regnet", "vit", "swin")
    },
    "efficientnet": Entry(lambda: _hf("efficientnet"), "image", image=(1, 32, 32)),
    "bert": Entry(lambda: _hf("bert"), "tokens"),
    "gpt2": Entry(lambda: _hf("gpt2"), "tokens", per_token=True),
    "llama": Entry(lambda: _hf("llama"), "tokens", per_token=True),
    "transformer": Entry(EncoderClassifier, "ids"),
    "lstm": Entry(RecurrentClassifier, "sequence"),
    "gru": Entry(lambda: RecurrentClassifier("gru", 2, True), "sequence"),
    **{
        name: Entry(lambda n=name: library_model(n), "image", image=(3, 16, 16))
        for name in ("tv-shufflenet", "tv-mobilenetv3", "tv-swin", "timm-vit", "timm-efficientnet")
    },
    "concat": Entry(Concat, "image"),
    "squeeze-excite": Entry(SqueezeExcite, "image"),
    "shared-twice": Entry(SharedTwice, "image"),
    "python-if": Entry(Branchy, "image"),
    "channel-shuffle": Entry(ChannelShuffle, "image"),
}
VISION = ("resnet", "convnext", "mobilenetv2", "regnet", "efficientnet", "vit", "swin")
TEXT = ("bert", "gpt2", "llama", "transformer", "lstm", "gru")
# Their attention computes a head's width from its input width: no head can be removed (compaction
# keeps the head groups whole and warns; every other group still goes).
CODE_FIXES_HEADS = ("tv-swin", "timm-vit")
LIBRARIES = ("tv-shufflenet", "tv-mobilenetv3", "tv-swin", "timm-vit", "timm-efficientnet")
TOPOLOGIES = ("concat", "squeeze-excite", "shared-twice", "python-if", "channel-shuffle")


def _methods() -> dict[str, Callable[[], Any]]:
    from sparsitylab.methods.channels import ChannelPruning
    from sparsitylab.methods.dense import Dense
    from sparsitylab.methods.hbs import HierarchicalBlockPruning
    from sparsitylab.methods.magnitude import gradual, one_shot
    from sparsitylab.methods.nm import ASP, NMSparsity
    from sparsitylab.methods.posttrain import SparseGPT, Wanda
    from sparsitylab.methods.sis import SIS
    from sparsitylab.methods.slimming import NetworkSlimming
    from sparsitylab.methods.soft_threshold import STR, STRBN
    from sparsitylab.methods.ssl import SSL
    from sparsitylab.methods.units import UnitPruning
    from sparsitylab.sparsify.schedules import OneShot

    return {
        "dense": Dense,
        "magnitude": lambda: one_shot(0.5),
        "gradual": lambda: gradual(0.5, total_steps=2, n=2),
        "channels": lambda: ChannelPruning(OneShot(0.3), "global", "l2"),
        "slimming": lambda: NetworkSlimming(0.3, strength=1e-4, gamma_init=None),
        "str": lambda: STR(s_init=-5.0),
        "str-bn": lambda: STRBN(s_init=-5.0),
        "ssl": lambda: SSL({"coupled": 1e-2}, exact="prox"),
        "nm": lambda: NMSparsity(2, 4),
        "asp": lambda: ASP(2, 4),
        "hbs": lambda: HierarchicalBlockPruning("2x1/60+1x1/90", skip_first=False),
        "sis": lambda: SIS(0.05, images=8, max_iter=50),
        "wanda": lambda: Wanda(0.5, images=8),
        "sparsegpt": lambda: SparseGPT(n=2, m=4, images=8),
        "units": lambda: UnitPruning(0.3, images=8),
    }


POST_TRAINING = ("sis", "wanda", "sparsegpt", "units")  # calibrated, not trained
METHODS = (
    "dense", "magnitude", "gradual", "channels", "slimming", "str", "str-bn", "ssl", "nm", "asp",
    "hbs", "sis", "wanda", "sparsegpt", "units",
)  # fmt: skip
# What a method needs that a model may lack: the cell must then fail at prepare with this reason.
NEEDS = {
    "slimming": "no channels this method can prune",
    "str-bn": "no channels this method can prune",
    "units": "group whose readers are Linear layers",
}


@dataclass
class Cell:
    """What one (model, method) run gave: ``status`` "works" or "kept: <reason>"."""

    status: str
    error: float | None = None  # relative max error, compacted (or reloaded) vs finalized
    params: tuple[int, int] | None = None
    macs: tuple[int, int] | None = None
    sparsity: tuple[float, float] | None = None  # covered, whole model


def run_cell(name: str, method: str, tmp: Any) -> Cell:
    """prepare → two training steps → finalize → compact → save → reload → outputs compared."""
    from sparsitylab import runner
    from sparsitylab.deploy import serialize, surgery

    entry = ZOO[name]
    model = entry.model()
    build = _methods()[method]
    epochs = 0 if method in POST_TRAINING else 1
    try:
        run = runner.run(
            build(), model, entry.loaders(), epochs=epochs, max_steps=2, progress=False,
            finetune_epochs=1 if method in ("asp", "slimming") else 0,
        )  # fmt: skip
    except ValueError as error:
        for reason in (NEEDS.get(method), OWN_BATCHNORM.get((name, method))):
            if reason is not None and reason in str(error):
                return Cell(f"kept: {reason}")
        raise
    _check_zeros_only_where_covered(model, run)
    deployable = run.deployable
    example = entry.example()
    path = tmp / f"{name}-{method}.pt"
    serialize.save_model(path, deployable)
    plan_file = not serialize.describable(deployable)
    loaded = serialize.load_model(path, model=entry.model(seed=1) if plan_file else None)
    error = surgery.relative_error(
        surgery.outputs(loaded, example), surgery.outputs(run.model, example)
    )
    return Cell(
        "works",
        error,
        (run.params, run.compacted_params or run.params),
        (run.macs, run.compacted_macs or run.sparse_macs),
        (run.covered_sparsity or 0.0, run.model_sparsity or 0.0),
    )


def _check_zeros_only_where_covered(model: nn.Module, run: Any) -> None:
    """No silent pruning: a parameter the run reports as left dense gained no exact zeros."""
    from sparsitylab.coverage import COVERED, parameter_names

    before = {n: int((t == 0).sum()) for n, t in parameter_names(model).items()}
    after = parameter_names(run.model)
    gained = [
        f"{name} ({why})"
        for name, why in run.coverage.items()
        if why != COVERED and name in before and int((after[name] == 0).sum()) > before[name]
    ]
    assert not gained, f"{run.method} zeroed parameters it reports as dense: {gained}"


# The models without an in-block BatchNorm: Slimming and STR-BN (which threshold BatchNorm γ) must
# refuse them at prepare, with the reason. Every other cell of the zoo works.
NO_BATCHNORM_BLOCK = {
    "convnext", "vit", "swin", "bert", "gpt2", "llama", "transformer", "lstm", "gru", "tv-swin",
    "timm-vit",
    "squeeze-excite", "shared-twice", "python-if", "channel-shuffle",
}  # fmt: skip


# timm's BatchNormAct2d runs its activation inside its own forward: STR-BN, which swaps in its own
# BatchNorm module, refuses it (Slimming only thresholds γ and prunes it).
OWN_BATCHNORM = {("timm-efficientnet", "str-bn"): "BatchNormAct2d: a subclass with its own forward"}


# The models whose prunable groups are all read by something other than a Linear called as a
# module (convolutions, recurrences): head and unit pruning by
# output contribution must refuse them, with the reason.
NO_LINEAR_READER = {"lstm", "gru", "shared-twice", "channel-shuffle"}


def expected(name: str, method: str) -> str:
    """What the zoo table must say for one cell."""
    if (name, method) in OWN_BATCHNORM:
        return f"kept: {OWN_BATCHNORM[name, method]}"
    if method in ("slimming", "str-bn") and name in NO_BATCHNORM_BLOCK:
        return f"kept: {NEEDS[method]}"
    if method == "units" and name in NO_LINEAR_READER:
        return f"kept: {NEEDS[method]}"
    return "works"
