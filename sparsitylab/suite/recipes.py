"""The benchmark's budget (:class:`Settings`), models, loaders and one recipe per method
(see :mod:`sparsitylab.suite`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import data, models, runner
from ..methods import Method
from ..methods.growth import SET, DynamicSparse, RigL, StaticSparse
from ..methods.hbs import HierarchicalBlockPruning, step_decay
from ..methods.magnitude import gradual, one_shot
from ..methods.nm import ASP, NMSparsity
from ..methods.posttrain import LayerMagnitude, SparseGPT, Wanda
from ..methods.sis import SIS
from ..methods.slimming import NetworkSlimming, match_macs, slimmed
from ..methods.soft_threshold import STR, STRBN
from ..methods.sparse_momentum import SNFS
from ..methods.ssl import SSL
from ..train import SGD

MODELS = ("lenet5", "convnet_bn")
LR = {"lenet5": 0.02, "convnet_bn": 0.05}  # chapters 4-6
CONVNET_WIDTHS = (16, 32, 64)  # half the default widths, as in chapter 4 (CPU budget)
BATCHES = (1, 256)


@dataclass(frozen=True)
class Settings:
    """The budget every method gets (see the module docstring)."""

    train_size: int = 10_000
    test_size: int = 5_000
    pre: int = 2  # epochs of the shared dense model
    post: int = 2  # epochs after it (pre + post for from-scratch methods)
    batch_size: int = 128
    sis_images: int = 500
    sis_rows: int = 10_000
    latency_repeats: int = 20
    latency_threads: int = 1


QUICK = Settings(
    train_size=512, test_size=500, pre=1, post=1, sis_images=64, sis_rows=2_000, latency_repeats=2
)


def build_model(name: str, seed: int) -> nn.Module:
    """A fresh model (seed ``seed``); ConvNet-BN at half width with γ starting at 0.5 (the
    Slimming / STR-BN convention of chapter 4)."""
    torch.manual_seed(seed)
    if name == "lenet5":
        return models.lenet5()
    if name != "convnet_bn":
        raise ValueError(f"model={name!r} is not in the benchmark; choose one of {MODELS}")
    model = models.convnet_bn(widths=CONVNET_WIDTHS)
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.weight.fill_(0.5)
    return model


def fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's parameters and buffers: two runs with one fingerprint
    started from the identical model."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def build_loaders(settings: Settings, seed: int) -> data.Loaders:
    """The same training subset and test subset for every seed; ``seed`` shuffles."""
    train, test = data.load_fashion_mnist()
    train, _ = data.train_val_split(train)
    test_loader = data.make_loader(data.subset(test, settings.test_size), 1000)
    return data.Loaders(
        data.make_loader(
            data.subset(train, settings.train_size), settings.batch_size, shuffle=True, seed=seed
        ),
        test_loader,
        test_loader,
    )


@dataclass
class Context:
    """What a recipe needs: the model's name, seed, settings, loaders and the two shared runs."""

    model: str
    seed: int
    settings: Settings
    loaders: data.Loaders
    pretrained: runner.Run | None = None
    dense: runner.Run | None = None
    scratch: runner.Run | None = None  # dense, pre + post epochs from scratch under one cosine
    starts: list[str] = field(default_factory=list)  # fingerprints of the models runs started from

    @property
    def steps(self) -> int:
        return len(self.loaders.train)

    def fresh(self) -> nn.Module:
        return build_model(self.model, self.seed)

    def start(self) -> nn.Module:
        """The shared dense model after ``pre`` epochs (BatchNorm statistics re-estimated)."""
        assert self.pretrained is not None
        return self.pretrained.model

    def run(
        self,
        method: Method | str,
        model: nn.Module,
        epochs: int,
        finetune_epochs: int = 0,
        lr_scale: float = 1.0,
        **kwargs: Any,
    ) -> runner.Run:
        """One runner run with this context's loaders, LR, seed and BatchNorm recalibration; the
        fingerprint of ``model`` (what the run really started from) is appended to ``starts``.

        The training loader's shuffle generator is re-seeded first, so every run of a file sees
        the batches in the order a fresh loader gives — the same for every method, whatever ran
        before it (without this, each run continued the previous run's sequence: the order
        depended on the recipe's place in the list)."""
        self.starts.append(fingerprint(model))
        generator = getattr(self.loaders.train, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(self.seed)
        return runner.run(
            method,
            model,
            self.loaders,
            epochs=epochs,
            finetune_epochs=finetune_epochs,
            optimizer=SGD(lr=LR[self.model] * lr_scale),
            seed=self.seed,
            recalibrate_bn=self.model == "convnet_bn",
            progress=False,
            **kwargs,
        )


# ----------------------------------------------------------------------------- the recipes


Trainer = Callable[[Context, float], tuple[runner.Run, Method]]  # a recipe at one target


@dataclass(frozen=True)
class Recipe:
    """One method of the comparison: how it trains at a target, and what the target means."""

    key: str
    label: str
    family: str  # "unstructured", "N:M" or "structured"
    target_kind: str
    targets: tuple[float, ...]
    start: str  # "scratch", "pretrained" (after `pre` epochs), "dense" (the baseline) or
    # "dense-scratch" (the single-cosine dense control)
    train: Trainer
    models: tuple[str, ...] = MODELS
    forms: tuple[str, ...] = ("masked", "CSR")


def _magnitude(ctx: Context, target: float):
    method = one_shot(target, "global")
    return ctx.run(method, ctx.start(), ctx.settings.post), method


def _gradual(budget: str) -> Trainer:
    def train(ctx: Context, target: float):
        epochs = ctx.settings.pre + ctx.settings.post
        steps = epochs * ctx.steps
        # Zhu & Gupta's 10 pruning events, fewer on very short (quick) runs (chapter 4)
        method = gradual(target, steps, budget=budget, n=min(10, max(1, round(0.75 * steps))))
        return ctx.run(method, ctx.fresh(), epochs), method

    return train


def _str(ctx: Context, target: float):
    epochs = ctx.settings.pre + ctx.settings.post
    method = STR(s_init=-5.0, target_sparsity=target, total_steps=epochs * ctx.steps)
    return ctx.run(method, ctx.fresh(), epochs), method


def hbs_levels(target: float) -> str:
    """Two levels in the paper's notation that keep ``1 − target`` of the weights: the 1x1 level
    keeps 3 % of the matrix's entries, the 4x1 level the rest ("4x1/93+1x1/97" at 90 %, the
    paper's best configuration there; each level's percentage counts that level's blocks of the
    whole matrix, so the kept fractions add)."""
    first = target + 0.03
    if not 0 < first < 1:
        raise ValueError(f"target={target} leaves no room for a 3 % 1x1 level; use 0 < t < 0.97")
    return f"4x1/{100 * first:.6g}+1x1/97"


def _hbs(ctx: Context, target: float):
    method = HierarchicalBlockPruning(hbs_levels(target))
    # the paper retrains at 1/100 of the base LR, divided by 10 at 1/2 and 3/4 (chapter 6)
    run = ctx.run(method, ctx.start(), ctx.settings.post, lr_scale=0.01, scheduler=step_decay)
    return run, method


def _sis(ctx: Context, rho: float):
    assert ctx.dense is not None
    method = SIS(rho, images=ctx.settings.sis_images, max_rows=ctx.settings.sis_rows)
    return ctx.run(method, ctx.dense.model, 0), method


def _posttrain(kind: type[LayerMagnitude], nm: bool = False) -> Trainer:
    """A post-training method (chapter 11) on the dense baseline, calibrated on as many images as
    SIS, not retrained: unstructured at ``target``, or (``nm``) N:M at 2:4 / 1:4 for 0.5 / 0.75."""

    def train(ctx: Context, target: float):
        assert ctx.dense is not None
        images = ctx.settings.sis_images
        if nm:
            n, m = _nm(target)
            method = kind(n=n, m=m, images=images)
        else:
            method = kind(target, images=images)
        return ctx.run(method, ctx.dense.model, 0), method

    return train


def _nm(target: float) -> tuple[int, int]:
    return {0.5: (2, 4), 0.75: (1, 4)}[target]


def _sr_ste(ctx: Context, target: float):
    n, m = _nm(target)
    epochs = ctx.settings.pre + ctx.settings.post
    method = NMSparsity(n, m, decay=2e-4)
    return ctx.run(method, ctx.fresh(), epochs), method


def _asp(ctx: Context, target: float):
    n, m = _nm(target)
    method = ASP(n, m)
    return ctx.run(method, ctx.start(), 0, finetune_epochs=ctx.settings.post), method


def _asp_full(ctx: Context, target: float):
    """ASP's published recipe: prune the fully trained dense model (the single-cosine control,
    ``pre + post`` epochs) and re-train as many epochs again — twice SR-STE's budget."""
    assert ctx.scratch is not None
    n, m = _nm(target)
    method = ASP(n, m)
    epochs = ctx.settings.pre + ctx.settings.post
    return ctx.run(method, ctx.scratch.model, 0, finetune_epochs=epochs), method


def ssl_strength(ctx: Context, threshold: float) -> float:
    """λ whose proximal threshold per step, η·λ/(1 − μ) with momentum μ = 0.9, is ``threshold``
    for this model's learning rate η, so that both models shrink their groups equally fast."""
    return threshold * (1 - 0.9) / LR[ctx.model]


def _ssl(ctx: Context, threshold: float):
    strength = ssl_strength(ctx, threshold)
    method = SSL({"filter": strength, "channel": strength})
    post = ctx.settings.post
    ssl_epochs = max(1, post - 1)
    return ctx.run(method, ctx.start(), ssl_epochs, finetune_epochs=post - ssl_epochs), method


def _strbn(ctx: Context, macs: float):
    """Chapter 4's recipe: the channel sparsity at which one global |γ| threshold on the
    pretrained model keeps ``macs`` of the MACs is STR-BN's target; then one epoch of
    fine-tuning."""
    start = ctx.start()
    proxy, _ = match_macs(lambda r: slimmed(start, r), start, macs)
    epochs = max(1, ctx.settings.post - 1)
    method = STRBN(s_init=-5.0, target_sparsity=round(proxy, 3), total_steps=epochs * ctx.steps)
    run = ctx.run(method, start, epochs, finetune_epochs=ctx.settings.post - epochs)
    return run, method


def _slimming(ctx: Context, macs: float):
    """ℓ1 on γ for post − 1 epochs, prune to ``macs`` by one global |γ| threshold, fine-tune."""
    start, post = ctx.start(), ctx.settings.post
    epochs = max(1, post - 1)
    sparse = ctx.run(NetworkSlimming(0.5, strength=1e-3, gamma_init=None), start, epochs)
    ratio, _ = match_macs(lambda r: slimmed(sparse.trained, r), start, macs)
    method = NetworkSlimming(ratio, strength=0.0, gamma_init=None)
    run = ctx.run(method, sparse.trained, 0, finetune_epochs=post - epochs)
    run.seconds += sparse.seconds
    run.history.records = sparse.history.records + run.history.records
    return run, method


def update_interval(steps: int) -> int:
    """RigL's ΔT for a budget of ``steps``: about 24 updates before T_end = 75 % of training
    (RigL's ImageNet runs: ΔT = 100 of 32 000 steps; ΔT = 100 here would allow two updates)."""
    return max(1, round(0.75 * steps / 24))


def _growth(kind: type[DynamicSparse], scale: int = 1) -> Trainer:
    """A growth method from a random ERK mask for ``scale × (pre + post)`` epochs (chapter 10):
    RigL (and the static control) update every :func:`update_interval` steps; SET and SNFS once
    per epoch until the end, as their papers and code do. ``scale`` 2: the RigL paper's longer
    runs (its RigL₂ₓ), which spend about gradual magnitude pruning's training FLOPs."""

    def train(ctx: Context, target: float):
        epochs = scale * (ctx.settings.pre + ctx.settings.post)
        steps = epochs * ctx.steps
        every = ctx.steps if kind in (SET, SNFS) else update_interval(steps)
        method = kind(target, total_steps=steps, update_every=every, seed=ctx.seed)
        return ctx.run(method, ctx.fresh(), epochs), method

    return train


UNSTRUCTURED = ("weight sparsity", (0.8, 0.9))
POSTTRAIN = ("weight sparsity", (0.5, 0.8))  # no retraining: 90 % leaves nothing to compare
RECIPES: tuple[Recipe, ...] = (
    Recipe("magnitude", "global magnitude, one-shot", "unstructured", *UNSTRUCTURED, "pretrained",
           _magnitude),
    Recipe("gradual", "gradual magnitude (cubic, global)", "unstructured", *UNSTRUCTURED,
           "scratch", _gradual("global")),
    Recipe("erk", "gradual magnitude (cubic, ERK)", "unstructured", *UNSTRUCTURED, "scratch",
           _gradual("erk")),
    Recipe("str", "STR", "unstructured", *UNSTRUCTURED, "scratch", _str),
    Recipe("static-sparse", "static sparse (random ERK mask)", "unstructured", "weight sparsity",
           (0.8, 0.9, 0.95), "scratch", _growth(StaticSparse)),
    Recipe("rigl", "RigL", "unstructured", "weight sparsity", (0.8, 0.9, 0.95), "scratch",
           _growth(RigL)),
    Recipe("hbs", "HBS (4x1 + 1x1)", "unstructured", *UNSTRUCTURED, "pretrained", _hbs,
           forms=("masked", "CSR", "HBS")),
    Recipe("sis", "SIS (no retraining)", "unstructured", "ρ (relative η)", (0.01, 0.03), "dense",
           _sis),
    Recipe("wanda", "Wanda (no retraining)", "unstructured", *POSTTRAIN, "dense",
           _posttrain(Wanda)),
    Recipe("sparsegpt", "SparseGPT (no retraining)", "unstructured", *POSTTRAIN, "dense",
           _posttrain(SparseGPT)),
    Recipe("layer-magnitude", "layer magnitude (no retraining)", "unstructured", *POSTTRAIN,
           "dense", _posttrain(LayerMagnitude)),
    Recipe("sr-ste", "N:M SR-STE from scratch", "N:M", "weight sparsity", (0.5, 0.75), "scratch",
           _sr_ste, forms=("masked", "CSR", "2:4")),
    Recipe("asp", "N:M ASP (prune, re-train)", "N:M", "weight sparsity", (0.5, 0.75),
           "pretrained", _asp, forms=("masked", "CSR", "2:4")),
    Recipe("asp-2x", "N:M ASP, full recipe (2× budget)", "N:M", "weight sparsity", (0.5, 0.75),
           "dense-scratch", _asp_full, forms=("masked", "CSR", "2:4")),
    Recipe("wanda-nm", "N:M Wanda (no retraining)", "N:M", "weight sparsity", (0.5, 0.75),
           "dense", _posttrain(Wanda, nm=True)),
    Recipe("sparsegpt-nm", "N:M SparseGPT (no retraining)", "N:M", "weight sparsity",
           (0.5, 0.75), "dense", _posttrain(SparseGPT, nm=True)),
    Recipe("ssl", "SSL (filters + channels)", "structured", "ηλ/(1−μ)", (0.02, 0.04),
           "pretrained", _ssl, forms=("masked", "compacted")),
    Recipe("str-bn", "STR-BN", "structured", "MACs fraction", (0.7, 0.5), "pretrained", _strbn,
           models=("convnet_bn",), forms=("masked", "compacted")),
    Recipe("slimming", "Network Slimming", "structured", "MACs fraction", (0.7, 0.5),
           "pretrained", _slimming, models=("convnet_bn",), forms=("masked", "compacted")),
)  # fmt: skip
GROWTH = ("weight sparsity", (0.9, 0.95))
# Chapter 10's other rows: with static-sparse, rigl and the dense controls they make its
# comparison (``bench methods --methods static-sparse,set,rigl,rigl-2x,snfs,gmp-erk --out
# data/growth``); the side-by-side chapter's files (data/results) hold RECIPES only.
GROWTH_RECIPES: tuple[Recipe, ...] = (
    Recipe("set", "SET", "unstructured", *GROWTH, "scratch", _growth(SET)),
    Recipe("rigl-2x", "RigL, 2× steps", "unstructured", *GROWTH, "scratch",
           _growth(RigL, scale=2)),
    Recipe("snfs", "SNFS (sparse momentum)", "unstructured", *GROWTH, "scratch", _growth(SNFS)),
    Recipe("gmp-erk", "gradual magnitude (cubic, ERK)", "unstructured", *GROWTH, "scratch",
           _gradual("erk")),
)  # fmt: skip
RECIPE = {r.key: r for r in RECIPES + GROWTH_RECIPES}
