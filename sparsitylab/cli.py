"""The ``sparsitylab`` command line. Usage::

    sparsitylab version
    sparsitylab data find         # where Fashion-MNIST is, verified (exit 1 if nowhere or damaged)
    sparsitylab data download     # download into the user cache with SHA-256 checks
    sparsitylab bench NAME [ARGS] # run a benchmark (see `bench --list`)
    sparsitylab run --method M --model N --data D [--sparsity S] [--epochs E] ... --out DIR
    sparsitylab run --config FILE.toml [flags that override it] --out DIR [--resume]

A user error (a bad flag value, a damaged file, no network) is one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

USER_ERRORS = (ValueError, TypeError, OSError)  # OSError covers the data errors (FileNotFoundError)


# Benchmarks that drive the runner live above it (the import layers): name → module.
SUITES = {"methods": "sparsitylab.suite"}


def _benchmarks() -> dict[str, str]:
    """Every benchmark name and the module whose ``main(argv)`` runs it."""
    from . import benchmarks

    found = {
        m.name: f"sparsitylab.benchmarks.{m.name}"
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if not m.name.startswith("_")
    }
    return dict(sorted({**found, **SUITES}.items()))


def _data(args: argparse.Namespace) -> int:
    from . import data

    if args.action == "download":
        print(data.download_fashion_mnist())
        return 0
    folder = data.find_fashion_mnist()
    if folder is None:
        print(data.not_found_message(), file=sys.stderr)
        return 1
    damaged = data.damaged_files(folder)
    for stem, problem in damaged.items():
        print(f"{stem}: {problem}", file=sys.stderr)
    if damaged:
        return 1
    print(folder)
    return 0


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    names = _benchmarks()
    if args.list or args.name is None:
        print("available benchmarks:", ", ".join(names) or "(none)")
        return 0
    if args.name not in names:
        parser.error(f"unknown benchmark {args.name!r}; available: {', '.join(names)}")
    module = importlib.import_module(names[args.name])
    return int(module.main(args.rest) or 0)


def _run_parser(sub: argparse._SubParsersAction) -> None:
    run_p = sub.add_parser("run", help="train one method on one model and data set, with outputs")
    run_p.add_argument("--config", help="a TOML file of settings (flags override it)")
    run_p.add_argument("--method", help="a name of sparsitylab.methods.REGISTRY")
    run_p.add_argument("--model", help="a name of sparsitylab.models.MODELS")
    run_p.add_argument("--data", help="fashion-mnist or digits")
    run_p.add_argument("--sparsity", type=float, help="for methods with a sparsity option")
    run_p.add_argument("--epochs", type=int)
    run_p.add_argument("--finetune-epochs", type=int)
    run_p.add_argument("--seed", type=int)
    run_p.add_argument("--batch-size", type=int)
    run_p.add_argument("--lr", type=float)
    run_p.add_argument(
        "--recalibrate-bn",
        action="store_const",
        const=True,
        help="re-estimate BatchNorm statistics after training (advised after channel pruning)",
    )
    run_p.add_argument("--option", action="append", metavar="KEY=VALUE", help="a method option")
    run_p.add_argument(
        "--model-option", action="append", metavar="KEY=VALUE", help="a model option (a,b: list)"
    )
    run_p.add_argument("--out", required=True, help="the output folder (new, or --resume)")
    run_p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")


def _run(args: argparse.Namespace) -> int:
    from . import experiment

    keys = ("method", "model", "data", "sparsity", "epochs", "finetune_epochs", "seed")
    overrides = {key: getattr(args, key) for key in (*keys, "batch_size", "lr", "recalibrate_bn")}
    overrides["options"] = experiment.parse_assignments(args.option)
    overrides["model_options"] = experiment.parse_assignments(args.model_option, lists=True)
    experiment.main(args.config, overrides, args.out, args.resume)
    return 0


def one_line(error: BaseException) -> str:
    """The first line of an error's message (the rest is detail a traceback would bury)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the installed version")
    data_p = sub.add_parser("data", help="find (and verify) or download Fashion-MNIST")
    data_p.add_argument("action", choices=["find", "download"])
    bench_p = sub.add_parser("bench", help="run a benchmark")
    bench_p.add_argument("name", nargs="?")
    bench_p.add_argument("--list", action="store_true", help="list the benchmarks")
    bench_p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    _run_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "version":
        from . import __version__

        print(__version__)
        return 0
    try:
        if args.command == "run":
            return _run(args)
        return _data(args) if args.command == "data" else _bench(args, parser)
    except USER_ERRORS as error:
        parser.error(f"{args.command}: {one_line(error)}")
    return 2  # not reached: parser.error exits


if __name__ == "__main__":
    sys.exit(main())
