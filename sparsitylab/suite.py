"""``sparsitylab bench methods``: every method of the book at one matched budget, side by side.

The large-scale comparison the STR-BN document asks for ("similar to Gale et al., 2019"), at the
scale two CPU cores allow. Each (model, seed) pair gets one JSON file in ``--out``
(``data/results/methods-<model>-seed<k>.json``), rewritten atomically after every run, so an
interrupted benchmark keeps what it finished.

**The budget** (:class:`Settings`): every method trains ``pre + post`` epochs in all, on the same
``train_size`` Fashion-MNIST images (one fixed subset; the seed changes the initialisation and the
shuffling), SGD with momentum 0.9, cosine LR per stage, tested on the same ``test_size`` images.

- methods that start from a trained model (one-shot magnitude, ASP, HBS, SSL, STR-BN, Network
  Slimming) start from the **shared dense model after ``pre`` epochs** and get the other ``post``;
- from-scratch methods (gradual magnitude, ERK, STR, SR-STE) train ``pre + post`` epochs from the
  same initialisation;
- the **dense baseline** is the shared model trained ``post`` more epochs: the identical-budget
  control every row is compared with;
- SIS is post-training: it calibrates the dense baseline and is not retrained (its claim).

**Targets**: the unstructured family (and HBS) at 80 % and 90 % weight sparsity; N:M at 2:4 and
1:4; the channel methods at 70 % and 50 % of the dense MACs (STR-BN and Slimming, on the model with
BatchNorm); SSL and SIS have no target knob, so each runs at two strengths and reports what it
reaches: SSL at two proximal thresholds per step η·λ/(1 − μ) (λ scaled by each model's learning
rate η), SIS at two relative tolerances ρ. The choices follow the method chapters (which say where
they come from).

**Measured per run**: test accuracy, weight sparsity, non-zeros, dense / sparse / compacted MACs,
wall time, and the mean seconds per training epoch (its ratio to the dense baseline's epochs is the
training overhead). For seed 0 also the inference latency of every deployable form — ``masked``
(zeros in dense tensors), ``CSR``, ``HBS``, ``2:4`` (its CSR view on the CPU), ``compacted`` —
at batch 1 and 256, timed round-robin with the dense model (:func:`sparsitylab.timing.interleaved`,
wall clock, ``latency_threads`` torch threads).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, data, models, runner
from .benchmarks import positive_int
from .deploy.formats import CSR, Sparse24
from .deploy.packed import pack
from .files import atomic_write_json
from .methods import Method
from .methods.hbs import HierarchicalBlockPruning, step_decay
from .methods.magnitude import gradual, one_shot
from .methods.nm import ASP, NMSparsity
from .methods.sis import SIS
from .methods.slimming import NetworkSlimming, match_macs, slimmed
from .methods.soft_threshold import STR, STRBN
from .methods.ssl import SSL
from .metrics import compare_latency
from .timing import cpu_model
from .train import SGD, seed_everything

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
        """One runner run with this context's loaders, LR, seed and BatchNorm recalibration."""
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


@dataclass(frozen=True)
class Recipe:
    """One method of the comparison: how it trains at a target, and what the target means."""

    key: str
    label: str
    family: str  # "unstructured", "N:M" or "structured"
    target_kind: str
    targets: tuple[float, ...]
    start: str  # "scratch", "pretrained" (after `pre` epochs) or "dense" (the baseline)
    train: Callable[[Context, float], tuple[runner.Run, Method]]
    models: tuple[str, ...] = MODELS
    forms: tuple[str, ...] = ("masked", "CSR")


def _magnitude(ctx: Context, target: float):
    method = one_shot(target, "global")
    return ctx.run(method, ctx.start(), ctx.settings.post), method


def _gradual(budget: str) -> Callable[[Context, float], tuple[runner.Run, Method]]:
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


UNSTRUCTURED = ("weight sparsity", (0.8, 0.9))
RECIPES: tuple[Recipe, ...] = (
    Recipe("magnitude", "global magnitude, one-shot", "unstructured", *UNSTRUCTURED, "pretrained",
           _magnitude),
    Recipe("gradual", "gradual magnitude (cubic, global)", "unstructured", *UNSTRUCTURED,
           "scratch", _gradual("global")),
    Recipe("erk", "gradual magnitude (cubic, ERK)", "unstructured", *UNSTRUCTURED, "scratch",
           _gradual("erk")),
    Recipe("str", "STR", "unstructured", *UNSTRUCTURED, "scratch", _str),
    Recipe("hbs", "HBS (4x1 + 1x1)", "unstructured", *UNSTRUCTURED, "pretrained", _hbs,
           forms=("masked", "CSR", "HBS")),
    Recipe("sis", "SIS (no retraining)", "unstructured", "ρ (relative η)", (0.01, 0.03), "dense",
           _sis),
    Recipe("sr-ste", "N:M SR-STE from scratch", "N:M", "weight sparsity", (0.5, 0.75), "scratch",
           _sr_ste, forms=("masked", "CSR", "2:4")),
    Recipe("asp", "N:M ASP (prune, re-train)", "N:M", "weight sparsity", (0.5, 0.75),
           "pretrained", _asp, forms=("masked", "CSR", "2:4")),
    Recipe("ssl", "SSL (filters + channels)", "structured", "ηλ/(1−μ)", (0.02, 0.04),
           "pretrained", _ssl, forms=("masked", "compacted")),
    Recipe("str-bn", "STR-BN", "structured", "MACs fraction", (0.7, 0.5), "pretrained", _strbn,
           models=("convnet_bn",), forms=("masked", "compacted")),
    Recipe("slimming", "Network Slimming", "structured", "MACs fraction", (0.7, 0.5),
           "pretrained", _slimming, models=("convnet_bn",), forms=("masked", "compacted")),
)  # fmt: skip
RECIPE = {r.key: r for r in RECIPES}


# ----------------------------------------------------------------------------- deployable forms


def _sparse24(method: Method) -> Callable[[str, nn.Module], Sparse24 | None]:
    planned = {name: p.order for name, p in getattr(method, "plans", {}).items() if p.sparse}

    def packer(name: str, layer: nn.Module) -> Sparse24 | None:
        # the 2:4 metadata packs 16 columns per int16 word: other row lengths stay dense
        fits = layer.weight[0].numel() % 16 == 0
        return Sparse24.from_weight(layer.weight) if fits and planned.get(name) == "hwc" else None

    return packer


def _csr(name: str, layer: nn.Module) -> CSR | None:
    return CSR.from_weight(layer.weight) if bool((layer.weight == 0).any()) else None


def deployable_forms(recipe: Recipe, run: runner.Run, method: Method) -> dict[str, nn.Module]:
    """The recipe's deployable forms of ``run``'s model (those that apply to it)."""
    forms: dict[str, nn.Module] = {}
    for form in recipe.forms:
        if form == "masked":
            forms[form] = run.model
        elif form == "CSR":
            forms[form] = pack(run.model, _csr)
        elif form == "2:4" and isinstance(method, NMSparsity | ASP) and method.n * 2 == method.m:
            forms[form] = pack(run.model, _sparse24(method))
        elif form == "HBS" and isinstance(method, HierarchicalBlockPruning):
            exported = method.export(run.model)
            forms[form] = pack(run.model, lambda name, layer, e=exported: e.get(name))
        elif form == "compacted" and run.compacted is not None:
            forms[form] = run.compacted
    return forms


def check_forms(forms: dict[str, nn.Module], reference: nn.Module, x: torch.Tensor) -> None:
    """Every form computes what the finalized model computes (the benchmark never times a wrong
    model)."""
    with torch.no_grad():
        expected = reference(x)
        for name, form in forms.items():
            got = form(x)
            if not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
                error = float((got - expected).abs().max())
                raise AssertionError(f"form {name!r} differs from the model by {error:.2e}")


def latency(
    forms: dict[str, nn.Module], settings: Settings, x: torch.Tensor
) -> dict[str, dict[str, Any]]:
    """{form: {batch: timing}} of each form at every batch of :data:`BATCHES`, round-robin
    (``latency_repeats`` rounds at batch 1, a quarter of them, at least 3, at larger batches)."""
    results: dict[str, dict[str, Any]] = {name: {} for name in forms}
    for batch in BATCHES:
        inputs = x[:batch] if batch <= len(x) else x.repeat(batch // len(x) + 1, 1, 1, 1)[:batch]
        repeats = settings.latency_repeats if batch == 1 else max(3, settings.latency_repeats // 4)
        timings = compare_latency(forms, inputs, repeats, num_threads=settings.latency_threads)
        for name, t in timings.items():
            results[name][str(batch)] = asdict(t)
    return results


# ----------------------------------------------------------------------------- the benchmark


def epoch_seconds(run: runner.Run) -> float:
    """Mean wall seconds of the run's training epochs (both stages)."""
    seconds = [r["seconds"] for r in run.history.records if "seconds" in r]
    return statistics.fmean(seconds) if seconds else float("nan")


def record(recipe: Recipe | None, target: float | None, run: runner.Run) -> dict[str, Any]:
    """One run as plain data."""
    row = run.row()
    return {
        "key": recipe.key if recipe else "dense",
        "label": recipe.label if recipe else "dense",
        "family": recipe.family if recipe else "dense",
        "target_kind": recipe.target_kind if recipe else None,
        "target": target,
        "start": recipe.start if recipe else "pretrained",
        **{k: row[k] for k in ("test_acc", "sparsity", "params", "nonzeros", "macs")},
        **{k: row[k] for k in ("sparse_macs", "compacted_params", "compacted_macs", "seconds")},
        "epoch_seconds": epoch_seconds(run),
        "train_threads": torch.get_num_threads(),
        "layer_sparsity": run.layer_sparsity,
    }


def code_hash() -> str:
    """SHA-256 (first 16 hex digits) of the library's Python sources: two result files with the
    same hash were computed by the same code."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# What must match for runs of one (model, seed) file to share one dense baseline and pretrained
# start: the same settings (checked first), machine type, thread count, versions and code.
ENVIRONMENT = ("cpu", "train_threads", "torch", "sparsitylab", "code")


def header(model: str, seed: int, settings: Settings) -> dict[str, Any]:
    return {
        "benchmark": "methods",
        "model": model,
        "seed": seed,
        "settings": asdict(settings),
        "cpu": cpu_model(),
        "train_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "sparsitylab": __version__,
        "code": code_hash(),
        "date": datetime.date.today().isoformat(),
        "runs": [],
        "latency": {},
    }


@dataclass
class Progress:
    """Prints one line per finished run (the benchmark runs for tens of minutes)."""

    total: int
    done: int = 0

    def __call__(self, text: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {text}", flush=True)


def _kept_runs(path: Path | None, current: dict[str, Any], rerun: set[str]) -> dict[str, Any]:
    """The runs (and latencies) of an existing results file that this call does not re-run, so
    that ``--methods`` replaces only those methods' rows; a file with other settings, or written
    on another machine type, thread count, version or code (:data:`ENVIRONMENT`), is refused
    rather than mixed: its runs were compared with a dense baseline this call would not
    reproduce."""
    if path is None or not path.is_file():
        return {"runs": [], "latency": {}}
    old = json.loads(path.read_text())
    if old["settings"] != current["settings"]:
        raise ValueError(
            f"{path} holds runs with other settings ({old['settings']}); move it away or use "
            "another --out"
        )
    differ = {k: (old.get(k), current[k]) for k in ENVIRONMENT if old.get(k) != current[k]}
    if differ:
        what = ", ".join(f"{k}: file {a!r}, now {b!r}" for k, (a, b) in differ.items())
        raise ValueError(
            f"{path} was written in another environment ({what}); its runs and this call's "
            "dense baseline would not share one model: re-run every method into a new --out"
        )
    keep = {r["key"] for r in old["runs"]} - rerun - {"dense"}
    return {  # runs recorded before runs carried their thread count ran with the file's
        "runs": [
            {**r, "train_threads": r.get("train_threads", old["train_threads"])}
            for r in old["runs"]
            if r["key"] in keep
        ],
        "latency": {k: v for k, v in old["latency"].items() if k.partition("@")[0] in keep},
    }


def run_model(
    model: str,
    seed: int,
    settings: Settings,
    recipes: Sequence[Recipe],
    out: Path | None,
    latency_seeds: Sequence[int] = (0,),
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every recipe that applies to ``model`` at every target, for one seed; the file in ``out``
    (when given) is rewritten after each run, keeping the runs of other recipes it already held
    (the dense baseline is always re-run)."""
    result = header(model, seed, settings)
    path = None if out is None else out / f"methods-{model}-seed{seed}.json"
    kept = _kept_runs(path, result, {r.key for r in recipes})
    timed = seed in latency_seeds
    ctx = Context(model, seed, settings, build_loaders(settings, seed))
    x = next(iter(ctx.loaders.test))[0]

    def merged() -> dict[str, Any]:
        return {
            **result,
            "runs": result["runs"] + kept["runs"],
            "latency": {**kept["latency"], **result["latency"]},
        }

    def save() -> None:
        if path is not None:
            atomic_write_json(merged(), path)

    seed_everything(seed)
    ctx.pretrained = ctx.run("dense", ctx.fresh(), settings.pre)
    ctx.dense = ctx.run("dense", ctx.start(), settings.post)
    result["pretrained_acc"] = ctx.pretrained.test_acc
    result["runs"].append(record(None, None, ctx.dense))
    if timed:
        result["latency"]["dense"] = latency({"dense": ctx.dense.model}, settings, x)["dense"]
    report(f"{model} seed {seed}: dense {100 * ctx.dense.test_acc:.2f} %")
    save()
    for recipe in recipes:
        if model not in recipe.models:
            continue
        for target in recipe.targets:
            run, method = recipe.train(ctx, target)
            result["runs"].append(record(recipe, target, run))
            if timed:
                forms = {"dense": ctx.dense.model, **deployable_forms(recipe, run, method)}
                check_forms({k: v for k, v in forms.items() if k != "dense"}, run.model, x[:64])
                result["latency"][f"{recipe.key}@{target:g}"] = latency(forms, settings, x)
            report(
                f"{model} seed {seed}: {recipe.label} @ {target:g}: "
                f"{100 * run.test_acc:.2f} %, sparsity {100 * run.sparsity:.1f} % "
                f"({run.seconds:.0f} s)"
            )
            save()
    return merged()


def load_results(folder: str | Path) -> list[dict[str, Any]]:
    """Every ``methods-*.json`` of ``folder``, sorted by model and seed."""
    files = sorted(Path(folder).glob("methods-*.json"))
    return sorted((json.loads(f.read_text()) for f in files), key=lambda r: (r["model"], r["seed"]))


# ----------------------------------------------------------------------------- reading the results


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of ``values``."""
    values = list(values)
    if not values:
        raise ValueError("values is empty: there is nothing to average")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def deployed_macs(run: dict[str, Any]) -> int:
    """MACs per sample of a run's cheapest deployable form: the compacted model's where there is
    one, else the non-zero weights' (an ideal sparse kernel's)."""
    return run["compacted_macs"] if run["compacted_macs"] is not None else run["sparse_macs"]


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats: none has a cost ≤ and an accuracy ≥ with one
    of them strict. Sorted by cost."""
    points = list(zip(costs, accuracies))
    front = [
        i
        for i, (c, a) in enumerate(points)
        if not any(c2 <= c and a2 >= a and (c2, a2) != (c, a) for c2, a2 in points)
    ]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def summarise(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, method, target) over the seeds: accuracy mean and spread, its change
    against the dense baseline of the same seeds, sparsity, deployed MACs as a fraction of dense,
    training overhead (epoch seconds over the dense baseline's) and seeds.

    The overhead comes from the seeds whose latency was timed (seed 0 by default): the benchmark
    runs those with nothing else on the machine, while later seeds may share it; it falls back to
    every seed when none was timed."""
    groups: dict[tuple[str, str, Any], list[tuple[dict, dict, bool]]] = {}
    for result in results:
        dense = next(r for r in result["runs"] if r["key"] == "dense")
        for run in result["runs"]:
            key = (result["model"], run["key"], run["target"])
            groups.setdefault(key, []).append((run, dense, bool(result["latency"])))
    rows = []
    for (model, key, target), triples in groups.items():
        pairs = [(run, dense) for run, dense, _ in triples]
        quiet = [(run, dense) for run, dense, timed in triples if timed] or pairs
        runs = [run for run, _ in pairs]
        acc, spread = mean_and_spread([r["test_acc"] for r in runs])
        delta, _ = mean_and_spread([r["test_acc"] - d["test_acc"] for r, d in pairs])
        rows.append(
            {
                "model": model,
                "key": key,
                "method": runs[0]["label"],
                "family": runs[0]["family"],
                "target": target,
                "target_kind": runs[0]["target_kind"],
                "accuracy": acc,
                "spread": spread,
                "vs dense": delta,
                "sparsity": statistics.fmean(r["sparsity"] for r in runs),
                "MACs / dense": statistics.fmean(deployed_macs(r) / r["macs"] for r in runs),
                "overhead": statistics.fmean(
                    r["epoch_seconds"] / d["epoch_seconds"] for r, d in quiet
                ),
                "seconds": statistics.fmean(r["seconds"] for r in runs),
                "seeds": len(runs),
            }
        )
    return rows


def count_runs(models_: Sequence[str], recipes: Sequence[Recipe]) -> int:
    """Runs per seed: the dense baseline plus every applicable (recipe, target)."""
    return sum(1 + sum(len(r.targets) for r in recipes if model in r.models) for model in models_)


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{what} {text!r}: choose from {', '.join(known)} (comma-separated)"
        )
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench methods",
        description="Every method at one matched budget (see the module docstring).",
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), type=lambda t: _names(t, MODELS, "--models")
    )
    parser.add_argument(
        "--methods", default=",".join(RECIPE), type=lambda t: _names(t, list(RECIPE), "--methods")
    )
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds 0 … N-1")
    parser.add_argument("--first-seed", type=int, default=0, help="start at this seed")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="a tiny budget (tests)")
    parser.add_argument("--out", default="data/results", help="folder for the JSON files")
    args = parser.parse_args(argv)  # fmt: skip
    settings = QUICK if args.quick else Settings()
    recipes = [RECIPE[k] for k in args.methods]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seeds = range(args.first_seed, args.seeds)
    report = Progress(count_runs(args.models, recipes) * len(seeds))
    for seed in seeds:
        for model in args.models:
            run_model(model, seed, settings, recipes, out, report=report)
    return 0


__all__ = [
    "BATCHES",
    "MODELS",
    "QUICK",
    "RECIPE",
    "RECIPES",
    "Context",
    "Recipe",
    "Settings",
    "build_loaders",
    "build_model",
    "check_forms",
    "count_runs",
    "deployed_macs",
    "mean_and_spread",
    "pareto_front",
    "summarise",
    "deployable_forms",
    "hbs_levels",
    "latency",
    "load_results",
    "main",
    "record",
    "run_model",
]
