"""Each chapter's execution time in a Jupyter Book build, from its execution cache.

    python scripts/book_times.py _build/.jupyter_cache [--limit 600]

Jupyter Book (``execute_notebooks: cache``) stores every executed chapter in jupyter-cache with its
``execution_seconds``; this prints the latest record of each chapter, slowest first, and marks the
chapters over ``--limit`` seconds (the project's goal: 10 minutes per chapter in full mode on two
cores). Exit status 0 always: a report, not a gate (the timings depend on the machine's load).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path


def latest_times(records) -> dict[str, tuple[float, datetime]]:
    """Chapter file name → (execution seconds, when) of its newest cache record."""
    newest: dict[str, tuple[float, datetime]] = {}
    for record in records:
        seconds = (record.data or {}).get("execution_seconds")
        if seconds is None:
            continue
        name = Path(record.uri).name
        if name not in newest or record.created > newest[name][1]:
            newest[name] = (float(seconds), record.created)
    return newest


def report(times: dict[str, tuple[float, datetime]], limit: float) -> str:
    """The table, slowest chapter first."""
    lines = [f"chapter execution times (limit {limit:.0f} s):"]
    for name, (seconds, when) in sorted(times.items(), key=lambda item: -item[1][0]):
        flag = "  OVER" if seconds > limit else ""
        lines.append(f"  {seconds:7.0f} s  {name}  ({when:%Y-%m-%d %H:%M}){flag}")
    total = sum(seconds for seconds, _ in times.values())
    lines.append(f"  {total:7.0f} s  total, {len(times)} chapters")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path, help="the build's .jupyter_cache folder")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per chapter")
    args = parser.parse_args(argv)
    if not args.cache.is_dir():
        print(f"no execution cache at {args.cache}: nothing was executed", file=sys.stderr)
        return 0
    from jupyter_cache import get_cache

    print(report(latest_times(get_cache(args.cache).list_cache_records()), args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
