"""``sparsitylab bench spmm``: speedup over dense per sparse format, side by side in one run.

For C = W · B (W m×k pruned to sparsity s, B k×n dense) and s in 50–99 %, every contender is
timed in the same run as the dense baseline, and the result is its ratio to dense:

* CPU: torch.sparse CSR/BSR (MKL), SciPy CSR, batched blocks for rectangular BSR, compacted
  dense GEMM (gather + torch.mm), the 2:4 format through its CSR view (50 % only);
* GPU (when CuPy sees a device, see ``_spmm_gpu``): our kernels vs cuSPARSE vs cuBLAS, and
  PyTorch's semi-structured 2:4 where supported.

Masks: unstructured top-|w| (CSR), block magnitude (BSR), column (shape-wise) pruning by
column norm (compacted), 2:4 by magnitude. Writes JSON (device, versions, date, shapes, medians,
break-even sparsities) and a PNG plot to ``data/``.

    sparsitylab bench spmm [--device auto|cpu|gpu] [--m 2048 --k 2048 --n 256] [--repeats R]
    [--threads T] [--out data/]

SPARSITYLAB_QUICK=1 selects the smaller quick-mode sizes.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.sparse
import torch
from matplotlib.figure import Figure

from .. import modes
from ..deploy import matmul
from ..deploy.formats import BSR, CSR, Compacted, Sparse24
from ..files import atomic_write_json
from ..sparsify.masks import block_mask, mask_from_scores, nm_mask, topk_mask, zero_pruned
from ..timing import cpu_name, interleaved, threads
from . import positive_int

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
BLOCKS = ((4, 1), (8, 8), (16, 16), (32, 32))


@dataclass(frozen=True)
class Config:
    """Problem size and sweep: C[m×n] = W[m×k] · B[k×n]."""

    m: int
    k: int
    n: int
    sparsities: tuple[float, ...] = SPARSITIES
    blocks: tuple[tuple[int, int], ...] = BLOCKS
    repeats: int = 10
    threads: int = 1  # CPU threads for torch: 1 compares like with like (SciPy is single-threaded)
    # and stays stable on a shared machine

    @classmethod
    def default(cls, gpu: bool) -> Config:
        if gpu:
            return cls(4096, 4096, 256, repeats=50)
        return modes.pick(
            full=cls(2048, 2048, 256),
            quick=cls(
                1024, 1024, 128, (0.5, 0.8, 0.9, 0.95, 0.99), ((4, 1), (16, 16), (32, 32)), 7
            ),
        )


def pruned(
    w: torch.Tensor, kind: str, sparsity: float, block: tuple[int, int] | None = None
) -> torch.Tensor:
    """``w`` with the mask the format is built for (see module docstring)."""
    if kind == "csr":
        return zero_pruned(w, topk_mask(w, sparsity))
    if kind == "bsr":
        return zero_pruned(w, block_mask(w, block, sparsity))
    if kind == "compacted":
        return zero_pruned(w, mask_from_scores(w.norm(dim=0), sparsity).expand_as(w))
    if kind == "2:4":
        return zero_pruned(w, nm_mask(w, 2, 4))
    raise ValueError(f"kind={kind!r} is not one of 'csr', 'bsr', 'compacted', '2:4'")


def row(
    fmt: str, impl: str, sparsity: float, seconds: float, baseline: float, block=None
) -> dict[str, Any]:
    """One measurement: median time and speedup over the dense baseline timed in the same run."""
    return {
        "format": fmt,
        "impl": impl,
        "block": list(block) if block else None,
        "sparsity": sparsity,
        "median_ms": seconds * 1e3,
        "baseline_ms": baseline * 1e3,
        "speedup": baseline / seconds,
    }


def _cpu_contenders(
    cfg: Config, w: torch.Tensor, b: torch.Tensor
) -> list[tuple[str, str, float, Any, Callable]]:
    """(format, impl, sparsity, block, call) for every CPU contender; all operands prepared here."""
    out: list[tuple[str, str, float, Any, Callable]] = []
    b_np = b.numpy()
    for s in cfg.sparsities:
        ws = pruned(w, "csr", s)
        out.append(("csr", "torch.sparse CSR (MKL)", s, None, _bound(CSR.from_dense(ws), b)))
        sp = scipy.sparse.csr_matrix(ws.numpy())
        out.append(("csr", "SciPy CSR", s, None, lambda sp=sp: sp @ b_np))
        for blk in cfg.blocks:
            impl = "torch.sparse BSR (MKL)" if blk[0] == blk[1] else "MKL CSR (non-square blocks)"
            out.append(
                ("bsr", impl, s, blk, _bound(BSR.from_dense(pruned(w, "bsr", s, blk), blk), b))
            )
        comp = Compacted.from_dense(pruned(w, "compacted", s))
        out.append(("compacted", "gather + torch.mm", s, None, _bound(comp, b)))
        reduced, head = comp.values, b[: comp.values.shape[1]].contiguous()
        out.append(
            ("compacted", "reduced torch.mm (no gather)", s, None, lambda r=reduced, h=head: r @ h)
        )
    out.append(
        ("2:4", "CSR view (MKL)", 0.5, None, _bound(Sparse24.from_dense(pruned(w, "2:4", 0.5)), b))
    )
    return out


def _bound(fmt: Any, b: torch.Tensor) -> Callable[[], torch.Tensor]:
    run = matmul.plan(fmt, b.shape[1], None)
    return lambda: run(b)


def cpu_clock(cfg: Config) -> str:
    """The clock of the CPU runs: with one thread the CPU time of the calling thread (other
    processes on a shared machine then do not distort it), else wall time."""
    return "thread" if cfg.threads == 1 else "wall"


def _cpu_rows(cfg: Config, w: torch.Tensor, b: torch.Tensor) -> list[dict[str, Any]]:
    """Every contender timed alternately with the dense GEMM
    (:func:`sparsitylab.timing.interleaved`)."""
    rows = []
    for fmt, impl, s, blk, call in _cpu_contenders(cfg, w, b):
        t = interleaved(
            {"dense": lambda: w @ b, "sparse": call},
            cfg.repeats,
            warmup=1,
            num_threads=cfg.threads,
            clock=cpu_clock(cfg),
        )
        rows.append(row(fmt, impl, s, t["sparse"].median, t["dense"].median, blk))
    return rows


def break_even(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per series (format, impl, block): the sparsity where speedup over dense crosses 1.

    Linear interpolation between measured sparsities; ``"< lowest"`` if it already wins at the
    lowest one, ``None`` if it never wins in the measured range.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["format"] not in ("dense", "2:4") and "speedup" in r:
            series.setdefault(series_name(r), []).append((r["sparsity"], r["speedup"]))
    out: dict[str, Any] = {}
    for name, points in series.items():
        points.sort()
        out[name] = None
        if points[0][1] >= 1:
            out[name] = f"< {points[0][0]:g}"
            continue
        for (s0, v0), (s1, v1) in itertools.pairwise(points):
            if v0 < 1 <= v1:
                out[name] = round(s0 + (1 - v0) * (s1 - s0) / (v1 - v0), 3)
                break
    return out


def measured(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows that hold a timing (rows for unsupported contenders only say why)."""
    return [r for r in result["rows"] if "speedup" in r]


def series_name(r: dict[str, Any]) -> str:
    block = f" {r['block'][0]}x{r['block'][1]}" if r["block"] else ""
    return f"{r['format']}{block} / {r['impl']}"


def compacted_efficiency(rows: list[dict[str, Any]], impl: str) -> dict[str, float]:
    """Measured speedup / ideal FLOP ratio 1/(1-s) for column-compacted GEMM, per sparsity."""
    return {
        f"{r['sparsity']:g}": round(r["speedup"] * (1 - r["sparsity"]), 3)
        for r in rows
        if r["format"] == "compacted" and r["impl"] == impl
    }


def versions() -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    if matmul.gpu_available():
        import cupy

        out["cupy"] = cupy.__version__
        out["cuda_runtime"] = str(cupy.cuda.runtime.runtimeGetVersion())
    return out


def run(cfg: Config, gpu: bool | None = None, seed: int = 0) -> dict[str, Any]:
    """Measure every contender for ``cfg`` on the CPU or (``gpu=True``) on the GPU."""
    gpu = matmul.gpu_available() if gpu is None else gpu
    g = torch.Generator().manual_seed(seed)
    w, b = torch.randn(cfg.m, cfg.k, generator=g), torch.randn(cfg.k, cfg.n, generator=g)
    if gpu:
        from ._spmm_gpu import device_name, goals, gpu_rows

        rows, device = gpu_rows(cfg, w, b), device_name()
    else:
        rows = _cpu_rows(cfg, w, b)
        with threads(cfg.threads):
            device = cpu_name()
    result = {
        "kind": "gpu" if gpu else "cpu",
        "device": device,
        "versions": versions(),
        "clock": "CUDA events"
        if gpu
        else {"thread": "thread CPU time", "wall": "wall clock"}[cpu_clock(cfg)],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": modes.mode_name(),
        "config": asdict(cfg),
        "rows": rows,
        "break_even": break_even(rows),
    }
    impl = "ours: fused gather-GEMM" if gpu else "gather + torch.mm"
    result["compacted_speedup_over_ideal"] = compacted_efficiency(rows, impl)
    if gpu:
        result["goals"] = goals(rows)
    return result


def plot_speedups(
    result: dict[str, Any], block: tuple[int, int] | None = None, sparsity: float | None = None
) -> Figure:
    """Speedup over dense vs sparsity for every series (BSR: only ``block`` if given), with the
    ideal FLOP ratio 1/(1-s); a second panel shows all contenders at ``sparsity`` if given."""
    fig = Figure(figsize=(11 if sparsity is not None else 6.5, 4.2))
    ax = fig.add_subplot(1, 2 if sparsity is not None else 1, 1)
    names: dict[str, list[tuple[float, float]]] = {}
    for r in measured(result):
        if r["format"] == "dense" or (block and r["block"] and tuple(r["block"]) != tuple(block)):
            continue
        names.setdefault(series_name(r), []).append((r["sparsity"], r["speedup"]))
    for name, points in names.items():
        s, v = zip(*sorted(points))
        ax.plot(s, v, "o-" if len(s) > 1 else "D", label=name, lw=1.5, ms=4)
    grid = np.linspace(
        min(result["config"]["sparsities"]), max(result["config"]["sparsities"]), 100
    )
    ax.plot(grid, 1 / (1 - grid), "k:", lw=1, label="ideal FLOP ratio 1/(1-s)")
    ax.axhline(1, color="grey", lw=1)
    ax.set(
        yscale="log",
        xlabel="sparsity s",
        ylabel=f"speedup over dense (×, {result['clock']})",
        title=f"{result['kind'].upper()}: {result['config']['m']}×{result['config']['k']} · "
        f"{result['config']['k']}×{result['config']['n']} ({result['date'][:10]})",
    )
    if sparsity is not None:
        ax.axvline(sparsity, color="tab:red", lw=1, ls="--")
        at = [
            (series_name(r), r["speedup"])
            for r in measured(result)
            if r["sparsity"] == sparsity
            and (not block or not r["block"] or tuple(r["block"]) == tuple(block))
        ]
        bar = fig.add_subplot(1, 2, 2)
        bar.barh([a for a, _ in at], [v for _, v in at], color="tab:blue")
        bar.axvline(1, color="grey", lw=1)
        bar.set(
            xscale="log",
            xlabel=f"speedup over dense (×, {result['clock']})",
            title=f"at sparsity {sparsity:g}",
        )
        bar.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    return fig


def summary(result: dict[str, Any]) -> str:
    """Plain-text table of speedups and the break-even sparsities."""
    lines = [
        f"{result['kind']} | {result['device']} | {result['clock']} | {result['mode']} mode | "
        f"{result['date']}",
        f"{'series':<48} " + " ".join(f"{s:>6g}" for s in result["config"]["sparsities"]),
    ]
    table: dict[str, dict[float, float]] = {}
    for r in measured(result):
        table.setdefault(series_name(r), {})[r["sparsity"]] = r["speedup"]
    for name, by_s in table.items():
        if name.startswith("dense"):
            continue
        lines.append(
            f"{name:<48} "
            + " ".join(
                f"{by_s[s]:6.2f}" if s in by_s else f"{'':>6}"
                for s in result["config"]["sparsities"]
            )
        )
    lines += [
        f"{r['format']} / {r['impl']}: not run ({r['unsupported']})"
        for r in result["rows"]
        if "unsupported" in r
    ]
    lines.append("break-even sparsity (speedup = 1): " + json.dumps(result["break_even"]))
    lines.append("compacted speedup / ideal: " + json.dumps(result["compacted_speedup_over_ideal"]))
    if "goals" in result:
        lines.append("goals: " + json.dumps(result["goals"]))
    return "\n".join(lines)


def save(result: dict[str, Any], folder: Path) -> Path:
    """Write ``spmm_<kind>_<device>.json`` and the matching PNG into ``folder``."""
    slug = re.sub(r"[^a-z0-9]+", "-", result["device"].lower().split(",")[0]).strip("-")
    path = folder / f"spmm_{result['kind']}_{slug}.json"
    atomic_write_json(result, path)
    plot_speedups(result).savefig(path.with_suffix(".png"), dpi=100)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench spmm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--m", type=positive_int)
    parser.add_argument("--k", type=positive_int)
    parser.add_argument("--n", type=positive_int)
    parser.add_argument("--repeats", type=positive_int)
    parser.add_argument("--threads", type=positive_int, help="CPU threads for torch (default 1)")
    parser.add_argument(
        "--out", type=Path, default=Path("data"), help="folder for the JSON and PNG"
    )
    args = parser.parse_args(argv)
    gpu = matmul.gpu_available() if args.device == "auto" else args.device == "gpu"
    if gpu and not matmul.gpu_available():
        parser.error("--device gpu: CuPy sees no CUDA device here")
    cfg = Config.default(gpu)
    overrides = {
        k: v
        for k, v in vars(args).items()
        if k in ("m", "k", "n", "repeats", "threads") and v is not None
    }
    cfg = Config(**{**asdict(cfg), **overrides})
    result = run(cfg, gpu)
    print(summary(result))
    print(f"wrote {save(result, args.out)}")
    return 0
