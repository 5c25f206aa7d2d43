"""The ``sparsitylab`` command line. Usage::

    sparsitylab version
    sparsitylab data find            # where Fashion-MNIST was found (exit 1 if nowhere)
    sparsitylab data download        # download into the user cache with SHA-256 checks
    sparsitylab bench NAME [ARGS]    # run sparsitylab/benchmarks/NAME.py (see `bench --list`)
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def _benchmarks() -> list[str]:
    from . import benchmarks

    return sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_")
    )


def _data(args: argparse.Namespace) -> int:
    from . import data

    if args.action == "find":
        folder = data.find_fashion_mnist()
        if folder is None:
            print(data.not_found_message(), file=sys.stderr)
            return 1
        print(folder)
        return 0
    print(data.download_fashion_mnist())
    return 0


def _bench(args: argparse.Namespace) -> int:
    names = _benchmarks()
    if args.list or args.name is None:
        print("available benchmarks:", ", ".join(names) or "(none)")
        return 0
    if args.name not in names:
        print(f"unknown benchmark {args.name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"sparsitylab.benchmarks.{args.name}")
    return int(module.main(args.rest) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the installed version")
    data_p = sub.add_parser("data", help="find or download Fashion-MNIST")
    data_p.add_argument("action", choices=["find", "download"])
    bench_p = sub.add_parser("bench", help="run a benchmark")
    bench_p.add_argument("name", nargs="?")
    bench_p.add_argument("--list", action="store_true", help="list the benchmarks")
    bench_p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    args = parser.parse_args(argv)
    if args.command == "version":
        from . import __version__

        print(__version__)
        return 0
    return _data(args) if args.command == "data" else _bench(args)


if __name__ == "__main__":
    sys.exit(main())
