"""``sparsitylab bench nm``: the cost of N:M training, side by side with its baselines.

1. The 2:4 mask of a 4096×4096 weight, which STE / SR-STE recompute on every forward: the library's
   selection (:func:`sparsitylab.sparsify.masks.nm_mask`; a compiled C loop,
   :mod:`sparsitylab.sparsify.native`, and its PyTorch pairwise-rank path) against a stable
   ``argsort`` per group (the previous implementation) and a per-group ``torch.topk``, with one
   pass of ``torch.abs`` into a preallocated buffer as the memory-traffic floor (every mask reads
   the weight once). All masks are checked against the argsort one.
2. One training step (forward, backward, SGD step) with SR-STE and with STE against the dense step
   on the MLP, LeNet and ConvNet-BN, on Fashion-MNIST-shaped random batches; SR-STE also through
   its PyTorch path (the compiled passes switched off), and a **floor**: the same layers with only
   the two memory passes that any SR-STE must make and nothing else — forward one PyTorch op
   W → a fresh W̃-sized tensor (``abs``), backward one op (G, W) → a fresh gradient (``G + W``), no
   selection and no mask bytes. SR-STE cannot be cheaper than the floor on the same machine.

Both tasks time their contenders round-robin (:func:`sparsitylab.timing.interleaved`), so the
ratios are fair on a shared machine; the thread count is set by ``--threads`` (default 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .. import models, reparam
from ..files import atomic_write_json
from ..methods.nm import NMSparsity
from ..sparsify import native
from ..sparsify.masks import nm_mask
from ..timing import interleaved, threads
from . import announce, positive_int, record_header, torch_path


def argsort_nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Baseline: stable descending ``argsort`` of |w| in every group of m, first n kept."""
    groups = w.abs().reshape(w.shape[0], -1, m)
    order = torch.argsort(groups, dim=-1, descending=True, stable=True)
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=w.device)
    return keep.scatter_(-1, order[..., :n], True).reshape(w.shape)


def topk_nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Baseline: ``torch.topk`` of |w| in every group of m (ties in unspecified order)."""
    groups = w.abs().reshape(w.shape[0], -1, m)
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=w.device)
    return keep.scatter_(-1, groups.topk(n, dim=-1).indices, True).reshape(w.shape)


def training_step(
    model: torch.nn.Module, batch: int, groups: list[dict] | None = None
) -> Callable[[], None]:
    """One SGD step of ``model`` on a fixed random Fashion-MNIST-shaped batch (grad enabled), over
    the optimizer parameter ``groups`` (default: all of ``model.parameters()``)."""
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    params = model.parameters() if groups is None else groups
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step() -> None:
        with torch.enable_grad():
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    return step


def torch_path_nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The library's nm_mask with the compiled loop switched off: its PyTorch pairwise ranks."""
    return torch_path(lambda: nm_mask(w, n, m))()


def mask_task(size: int, repeats: int) -> dict[str, float]:
    """Median ms of each mask contender on a size×size weight (masks checked first)."""
    torch.manual_seed(0)
    w = torch.randn(size, size)
    reference = argsort_nm_mask(w, 2, 4)
    if not native.available():
        raise RuntimeError("the compiled selection is not available here (no C compiler?)")
    for mask in (nm_mask, torch_path_nm_mask):
        if not torch.equal(mask(w, 2, 4), reference):
            raise AssertionError(f"{mask.__name__} differs from the argsort reference")
    if not (topk_nm_mask(w, 2, 4).reshape(-1, 4).sum(-1) == 2).all():
        raise AssertionError("the topk baseline does not keep 2 of 4")
    floor = torch.empty_like(w)
    calls = {
        "argsort per group (previous nm_mask)": lambda: argsort_nm_mask(w, 2, 4),
        "torch.topk per group": lambda: topk_nm_mask(w, 2, 4),
        "sparsitylab nm_mask, PyTorch path (pairwise ranks)": lambda: torch_path_nm_mask(w, 2, 4),
        "sparsitylab nm_mask (compiled C loop)": lambda: nm_mask(w, 2, 4),
        "floor: torch.abs into a buffer (1 pass)": lambda: torch.abs(w, out=floor),
    }
    return {name: t.median * 1e3 for name, t in interleaved(calls, repeats, warmup=1).items()}


class _TwoPasses(torch.autograd.Function):
    """The floor's stand-in: forward |W| into a fresh tensor, backward G + W into a fresh one."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return w.abs()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return grad + w


class _FloorPasses(torch.nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _TwoPasses.apply(w)


def floor_model(build: Callable[[], torch.nn.Module], like: torch.nn.Module) -> torch.nn.Module:
    """``build()`` with the floor's two passes on every tensor that ``like`` holds N:M masks on."""
    model = build()
    modules = dict(model.named_modules())
    for found in reparam.find(like):
        parametrize.register_parametrization(
            modules[found.layer_name], found.tensor, _FloorPasses(), unsafe=True
        )
    return model


def step_task(batch: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median ms of a dense, an SR-STE (both paths), an STE and a floor training step per model."""
    results = {}
    for name, build in (
        ("MLP", models.mlp),
        ("LeNet", models.lenet5),
        ("ConvNet-BN", models.convnet_bn),
    ):
        torch.manual_seed(0)
        dense = build()
        variants = {"dense": dense}
        for label, decay in (("SR-STE", 2e-4), ("STE", 0.0), ("SR-STE, PyTorch path", 2e-4)):
            variants[label] = NMSparsity(2, 4, decay=decay).prepare(build())
        assert reparam.find(variants["SR-STE"])  # every model has N:M layers under the plan
        variants["floor: two passes"] = floor_model(build, variants["SR-STE"])
        calls = {label: training_step(net, batch) for label, net in variants.items()}
        calls["SR-STE, PyTorch path"] = torch_path(calls["SR-STE, PyTorch path"])
        times = interleaved(calls, repeats, warmup=2)
        results[name] = {label: t.median * 1e3 for label, t in times.items()}
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench nm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", type=positive_int, default=4096, help="mask task: weight side")
    parser.add_argument("--batch", type=positive_int, default=128, help="step task: batch size")
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.size % 4:
        parser.error(f"--size {args.size} must be a multiple of 4 (2:4 groups)")
    with threads(args.threads):
        where = announce("nm")
        masks = mask_task(args.size, args.repeats)
        print(
            f"[1] 2:4 mask of a {args.size}×{args.size} weight (median ms; ratio = argsort / this)"
        )
        base = next(iter(masks.values()))
        for name, ms in masks.items():
            print(f"  {name:<42} {ms:9.1f} ms   {base / ms:6.2f}×")
        steps = step_task(args.batch, args.repeats)
        print(f"\n[2] one training step, batch {args.batch} (median ms; ratio = this / dense)")
        for model, row in steps.items():
            print(f"  {model}")
            for label, ms in row.items():
                print(f"    {label:<24} {ms:8.2f} ms   {ms / row['dense']:5.2f}×")
    print(
        f"\nMedians of {args.repeats} rounds, contenders timed round-robin, wall clock, "
        f"{args.threads} thread(s); other processes on the machine add noise."
    )
    if args.json:
        record = {
            **record_header("nm", where, args.threads),
            "size": args.size,
            "batch": args.batch,
            "repeats": args.repeats,
            "mask_ms": masks,
            "step_ms": steps,
        }
        atomic_write_json(record, args.json)
        print(f"wrote {args.json}")
    return 0
