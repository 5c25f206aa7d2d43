"""``sparsitylab bench methods``: running the recipes, one results file per (model, seed)."""

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

from .. import __version__, runner, train
from ..benchmarks import positive_int
from ..files import atomic_write_json
from ..significance import pack_correct
from ..timing import cpu_model
from ..train import seed_everything
from .forms import check_forms, deployable_forms, latency
from .recipes import (
    GROWTH_RECIPES,
    MODELS,
    QUICK,
    RECIPE,
    RECIPES,
    Context,
    Recipe,
    Settings,
    build_loaders,
    fingerprint,
)


def epoch_seconds(run: runner.Run) -> float:
    """Mean wall seconds of the run's training epochs (both stages)."""
    seconds = [r["seconds"] for r in run.history.records if "seconds" in r]
    return statistics.fmean(seconds) if seconds else float("nan")


CONTROLS = {  # the dense rows every file holds: (label, start)
    "dense": ("dense (pre, then post epochs: a warm restart)", "pretrained"),
    "dense-scratch": ("dense (pre + post epochs, one cosine)", "scratch"),
}


def record(
    recipe: Recipe | str, target: float | None, run: runner.Run, ctx: Context
) -> dict[str, Any]:
    """One run as plain data: its measurements, which images of the test set it gets right
    (packed bits, for paired comparisons) and the fingerprint of the model it started from."""
    row = run.row()
    correct = train.correct(run.model, ctx.loaders.test)
    if int(correct.sum()) != round(run.test_acc * correct.numel()):
        raise AssertionError("per-image correctness disagrees with the run's test accuracy")
    dense = isinstance(recipe, str)
    key = recipe if dense else recipe.key
    return {
        "key": key,
        "label": CONTROLS[key][0] if dense else recipe.label,
        "family": "dense" if dense else recipe.family,
        "target_kind": None if dense else recipe.target_kind,
        "target": target,
        "start": CONTROLS[key][1] if dense else recipe.start,
        "start_fingerprint": ctx.starts[0],
        "correct": pack_correct(correct),
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
    package = Path(__file__).resolve().parent.parent
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
    keep = {r["key"] for r in old["runs"]} - rerun - set(CONTROLS)
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
    (the two dense controls are always re-run)."""
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
    result["init_fingerprint"] = fingerprint(ctx.fresh())
    ctx.pretrained = ctx.run("dense", ctx.fresh(), settings.pre)
    result["pretrained_fingerprint"] = fingerprint(ctx.start())
    ctx.starts = []
    ctx.dense = ctx.run("dense", ctx.start(), settings.post)
    result["dense_fingerprint"] = fingerprint(ctx.dense.model)
    result["pretrained_acc"] = ctx.pretrained.test_acc
    result["runs"].append(record("dense", None, ctx.dense, ctx))
    ctx.starts = []
    ctx.scratch = ctx.run("dense", ctx.fresh(), settings.pre + settings.post)
    result["scratch_fingerprint"] = fingerprint(ctx.scratch.model)
    result["runs"].append(record("dense-scratch", None, ctx.scratch, ctx))
    if timed:
        result["latency"]["dense"] = latency({"dense": ctx.dense.model}, settings, x)["dense"]
    report(f"{model} seed {seed}: dense (warm restart) {100 * ctx.dense.test_acc:.2f} %")
    report(f"{model} seed {seed}: dense (one cosine) {100 * ctx.scratch.test_acc:.2f} %")
    save()
    for recipe in recipes:
        if model not in recipe.models:
            continue
        for target in recipe.targets:
            ctx.starts = []
            run, method = recipe.train(ctx, target)
            result["runs"].append(record(recipe, target, run, ctx))
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


def count_runs(models_: Sequence[str], recipes: Sequence[Recipe]) -> int:
    """Runs per seed: the dense controls plus every applicable (recipe, target)."""
    per_model = (sum(len(r.targets) for r in recipes if model in r.models) for model in models_)
    return sum(len(CONTROLS) + n for n in per_model)


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
        "--methods",
        default=",".join(r.key for r in RECIPES),
        type=lambda t: _names(t, list(RECIPE), "--methods"),
        help="comma-separated recipe keys (default: the side-by-side chapter's; the growth "
        "chapter's: " + ",".join(r.key for r in GROWTH_RECIPES) + ")",
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
