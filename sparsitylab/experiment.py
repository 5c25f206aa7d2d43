"""One experiment from flat settings, with its results on disk: what ``sparsitylab run`` does.

A config (a TOML file, command-line flags, or both; flags win) names a method of
:data:`sparsitylab.methods.REGISTRY`, a model of :func:`sparsitylab.models.build` and a data set
("fashion-mnist" or "digits"), plus the training settings. :func:`run_experiment` trains it with
:func:`sparsitylab.runner.run` and writes into its output folder:

- ``config.toml``: the resolved config (written first, so ``--resume`` finds it);
- ``history.jsonl``: one JSON line per epoch, appended and flushed as training goes;
- ``checkpoint.pt``: a checkpoint after every epoch (atomic; see :mod:`sparsitylab.runner`);
- ``metrics.json``: :meth:`Run.row` plus per-layer sparsity, test loss, versions, CPU and date;
- ``model.pt`` and, for structured methods, ``compacted.pt``
  (:func:`sparsitylab.deploy.serialize.save_model`).

``resume=True`` continues from ``checkpoint.pt`` and ends in the same model and metrics (wall time
and date aside) as an uninterrupted run on CPU.

Under torchrun (``torchrun --nproc_per_node N -m sparsitylab run ...``;
:mod:`sparsitylab.distributed`) the run is data parallel: the global batch ``batch_size`` splits
evenly over the N processes (else a one-line error, exit 2), each through a ``DistributedSampler``
(the last partial global batch is dropped). The method prepares the plain model, which is then
wrapped in DistributedDataParallel only for fit's forward and backward (once per stage); the
method's callbacks, penalties, checkpoints and outputs see the plain model, so names carry no
``module.`` prefix. Every rank evaluates the full test set (identical models give identical
numbers); the epoch's train loss and accuracy are averaged over the ranks. Only rank 0 writes files
and prints; the others wait at a barrier.
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, data, methods, models, runner
from . import distributed as dist
from .config import (
    check_config,
    load_config,
    parse_assignments,
    parse_value,
    resolve,
    to_toml,
)
from .deploy.serialize import save_model
from .files import atomic_write_json
from .methods import Method
from .timing import cpu_name
from .train import SGD, Callback, seed_everything

DATA = ("fashion-mnist", "digits")
SHAPES = {"fashion-mnist": (1, 28, 10), "digits": (1, 8, 10)}  # channels, side, classes
CHECKPOINT, CONFIG, HISTORY, METRICS = (
    "checkpoint.pt",
    "config.toml",
    "history.jsonl",
    "metrics.json",
)


# ----------------------------------------------------------------------------- building blocks


def check_batch_size(batch_size: int, world: int) -> None:
    """The global batch must split evenly over the ``world`` processes."""
    if batch_size % world:
        raise ValueError(
            f"batch_size={batch_size} does not split over {world} processes; give a multiple of "
            f"{world}"
        )


def shard(loader: Any, batch_size: int, seed: int) -> Any:
    """The train loader's data set under a :class:`DistributedSampler` (shuffled with ``seed``,
    reshuffled per epoch by :func:`sparsitylab.train.fit`): ``batch_size / world size`` examples per
    rank and step, the last partial global batch dropped, so that step ``k`` of all the ranks
    together sees exactly the examples of global batch ``k``."""
    from torch.utils.data import DataLoader, DistributedSampler

    world = dist.world_size()
    check_batch_size(batch_size, world)
    sampler = DistributedSampler(loader.dataset, world, dist.rank(), seed=seed, drop_last=True)
    return DataLoader(loader.dataset, batch_size // world, sampler=sampler, drop_last=True)


def build_loaders(name: str, batch_size: int, seed: int) -> data.Loaders:
    """Train (shuffled with ``seed``) / val / test loaders of a data set in :data:`DATA`; under
    torchrun the train loader is this rank's :func:`shard` (val and test stay whole)."""
    if name not in DATA:
        raise ValueError(f"data={name!r} is not known; choose one of {', '.join(DATA)}")
    loaders = _build_loaders(name, batch_size, seed)
    if not dist.is_distributed():
        return loaders
    return data.Loaders(shard(loaders.train, batch_size, seed), loaders.val, loaders.test)


def _build_loaders(name: str, batch_size: int, seed: int) -> data.Loaders:
    if name == "digits":
        train, test = data.load_digits_split()
        return data.Loaders(
            data.make_loader(train, batch_size, shuffle=True, seed=seed),
            data.make_loader(test, 512),
            data.make_loader(test, 512),
        )
    try:
        return data.fashion_mnist_loaders(batch_size, seed=seed)
    except data.DatasetNotFoundError:
        raise FileNotFoundError(
            "Fashion-MNIST was not found: run `sparsitylab data download`, set SPARSITYLAB_DATA, "
            "or use --data digits"
        ) from None


def _parameters(factory: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(factory).parameters)


def build_model(name: str, data_name: str, options: Mapping[str, Any]) -> nn.Module:
    """:func:`sparsitylab.models.build` with the data set's input and class counts filled in
    (``options`` win)."""
    channels, side, classes = SHAPES[data_name]
    factory = models.MODELS.get(name)
    if factory is None:
        raise ValueError(f"model={name!r} is not known; choose one of {', '.join(models.MODELS)}")
    known = _parameters(factory)
    shaped = {"in_channels": channels, "num_classes": classes, "image_size": side}
    kwargs = {k: v for k, v in shaped.items() if k in known}
    if "sizes" in known:
        kwargs["sizes"] = (channels * side * side, 500, 300, classes)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {unknown[0]!r}; it takes {', '.join(known)}"
        )
    return models.build(name, **{**kwargs, **options})


def method_options(config: Mapping[str, Any], total_steps: int) -> dict[str, Any]:
    """The method's options: ``options``, plus ``sparsity`` where the builder takes one and
    ``total_steps`` (of training) where it takes one and none is given."""
    name = config["method"]
    if name not in methods.REGISTRY:
        raise ValueError(f"method={name!r} is not known; choose one of {sorted(methods.REGISTRY)}")
    cls = methods.REGISTRY[name]
    known = _parameters(getattr(cls, "from_options", cls))
    options = dict(config["options"])
    if config.get("sparsity") is not None:
        if "sparsity" not in known:
            raise ValueError(f"method {name!r} takes no sparsity; its options: {', '.join(known)}")
        options["sparsity"] = config["sparsity"]
    if "total_steps" in known and "total_steps" not in options:
        options["total_steps"] = total_steps
    return options


def build_method(config: Mapping[str, Any], total_steps: int) -> Method:
    """The config's method, built from flat options (:func:`method_options`)."""
    try:
        return methods.build(config["method"], **method_options(config, total_steps))
    except TypeError as error:
        raise ValueError(f"method {config['method']!r}: {error}") from None


class EpochLog(Callback):
    """Appends every epoch's record to ``history.jsonl`` (flushed) and, without a progress bar,
    prints one line per epoch."""

    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo

    def on_epoch_end(self, model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if self.echo:
            print(
                f"{record.get('stage', 'train')} epoch {epoch}: loss {record['train_loss']:.4f}, "
                f"accuracy {record['train_acc']:.4f} ({record['seconds']:.1f} s)",
                flush=True,
            )


class MeanRecord(Callback):
    """Under torchrun: the epoch's train loss and accuracy averaged over the ranks (equal shards),
    so the history holds the numbers of the whole global batch."""

    def on_epoch_end(self, model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        for key in ("train_loss", "train_acc"):
            record[key] = dist.mean(record[key])


# ----------------------------------------------------------------------------- the experiment


def metrics(result: runner.Run) -> dict[str, Any]:
    """The record ``metrics.json`` holds."""
    return {
        **result.row(),
        "test_loss": result.test_loss,
        "layer_sparsity": result.layer_sparsity,
        "torch": torch.__version__,
        "sparsitylab": __version__,
        "cpu": cpu_name(),
        "date": datetime.date.today().isoformat(),
    }


def prepare_folder(out: Path, config: dict[str, Any], resume: bool) -> None:
    """Check ``out`` (empty for a new run; a checkpoint and the same config to resume) and write
    ``config.toml`` (new run) or trim ``history.jsonl`` to the checkpoint's epochs (resume)."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise FileNotFoundError(f"--resume: {out / CHECKPOINT} does not exist")
        if (out / CONFIG).is_file() and load_config(out / CONFIG) != config:
            raise ValueError(f"--resume: the config differs from {out / CONFIG}")
        history = runner.read_checkpoint_extra(out / CHECKPOINT)["history"]
        (out / HISTORY).write_text("".join(json.dumps(r) + "\n" for r in history))
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} is not an empty folder (pass --resume to continue a run)")
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG).write_text(to_toml(config))


def run_experiment(
    config: Mapping[str, Any],
    out: str | Path,
    resume: bool = False,
    progress: bool | None = None,
    callbacks: tuple[Callback, ...] = (),
) -> runner.Run:
    """Train ``config`` (resolved, see :func:`resolve`) and write its outputs to ``out``.

    progress: a tqdm bar (default: when stderr is a terminal), else one plain line per epoch.
    callbacks: extra :class:`~sparsitylab.train.Callback` objects (tests stop a run with one).
    """
    config, out = check_config(config), Path(out)
    main_rank = dist.is_main()
    progress = (sys.stderr.isatty() if progress is None else progress) and main_rank
    loaders = build_loaders(config["data"], config["batch_size"], config["seed"])
    seed_everything(config["seed"])
    model = build_model(config["model"], config["data"], config["model_options"])
    method = build_method(config, config["epochs"] * len(loaders.train))
    error = None
    if main_rank:
        try:
            prepare_folder(out, dict(config), resume)
        except (ValueError, OSError) as caught:
            error = caught
    error = dist.broadcast_object(error)  # the other ranks fail with rank 0's error
    if error is not None:
        raise error
    logs = [EpochLog(out / HISTORY, echo=not progress)] if main_rank else []
    result = runner.run(
        method,
        model,
        loaders,
        epochs=config["epochs"],
        finetune_epochs=config["finetune_epochs"],
        optimizer=SGD(lr=float(config["lr"])),
        seed=config["seed"],
        recalibrate_bn=config["recalibrate_bn"],
        callbacks=[*([MeanRecord()] if dist.is_distributed() else []), *logs, *callbacks],
        progress=progress,
        device=dist.device() if dist.is_distributed() else "cpu",
        checkpoint=out / CHECKPOINT,
        resume=resume,
        wrap=dist.wrap if dist.is_distributed() else None,
        save_checkpoints=main_rank,
    )
    if os.environ.get("SPARSITYLAB_TEST_DUMP"):  # tests: every rank's trained state
        dump = Path(os.environ["SPARSITYLAB_TEST_DUMP"]) / f"rank{dist.rank()}.pt"
        state = result.trained.state_dict()
        torch.save({k: v.cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}, dump)
    if main_rank:
        atomic_write_json(metrics(result), out / METRICS)
        save_model(out / "model.pt", result.model)
        if result.compacted is not None:
            save_model(out / "compacted.pt", result.compacted)
    dist.barrier()
    return result


def main(
    config_file: str | None,
    overrides: Mapping[str, Any],
    out: str,
    resume: bool = False,
) -> runner.Run:
    """What ``sparsitylab run`` does: ``out/config.toml`` (on resume), then ``config_file``, then
    ``overrides`` (the flags), resolved and run."""
    saved = Path(out) / CONFIG
    layers = [load_config(saved)] if resume and saved.is_file() else []
    if config_file is not None:
        layers.append(load_config(config_file))
    layers.append(
        check_config({k: v for k, v in overrides.items() if v not in (None, {})}, "flags")
    )
    config = resolve(*layers)
    check_batch_size(config["batch_size"], dist.env_world_size())
    started = dist.init()
    try:
        result = run_experiment(config, out, resume)
    finally:
        if started:
            dist.teardown()
    if int(os.environ.get("RANK", "0")) == 0:
        print(result.summary())
    return result


__all__ = [
    "DATA",
    "build_loaders",
    "build_method",
    "build_model",
    "check_config",
    "load_config",
    "main",
    "method_options",
    "metrics",
    "parse_assignments",
    "parse_value",
    "resolve",
    "run_experiment",
    "to_toml",
]
