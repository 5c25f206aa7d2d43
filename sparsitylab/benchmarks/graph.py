"""``sparsitylab bench graph``: what the dependency graph costs, and what compaction buys, on models
nobody here wrote (Hugging Face ``transformers``, random init from a config; no download).

1. **Cost** — a ResNet-50 (Hugging Face's default ResNet config with 1000 classes: 25.6 M
   parameters, 224×224 RGB input): the plain forward pass at batch 1 against ``graph.trace`` (the
   dependency graph) and ``compact`` (trace + removal + output check) of the same model with half
   of every group's units zeroed. Goal: graph + compaction ≤ 20 forward passes.
2. **Speed** — a ResNet (18 layers, 64×64 inputs) and a ViT (ViT-Tiny widths: 192 features, 3
   heads, 12 layers; 64×64 inputs, 8×8 patches) pruned by :class:`ChannelPruning` (filter ℓ2, one
   global ranking over every coupled group) to about half of their MACs, then the compacted model
   timed against the masked one — the same function with its zeros still computed — at batch 64,
   round-robin with the first call alternating every round. Goal: measured speedup ≥ 0.8 of the MAC
   ratio.

Run it with ``sparsitylab bench graph [--threads 1] [--repeats 10] [--json PATH]``; one thread by
default (a quiet, reproducible number).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..deploy.compaction import compact
from ..files import atomic_write_json
from ..graph import trace
from ..methods.channels import ChannelPruning
from ..metrics import count_macs
from ..models import eval_mode
from ..sparsify.schedules import OneShot
from ..timing import interleaved, machine_record, threads
from . import positive_int

COST_GOAL = 20.0  # graph + compaction, in forward passes
SPEED_GOAL = 0.8  # measured speedup / MAC ratio


def _transformers():
    try:
        import transformers
    except ImportError as error:  # an optional dependency (the test extra installs it)
        raise SystemExit(
            "bench graph builds Hugging Face models: pip install 'transformers>=5,<6'"
        ) from error
    return transformers


def resnet50() -> nn.Module:
    """Hugging Face's ResNet-50 (its default config, 1000 classes), random init."""
    t = _transformers()
    return t.ResNetForImageClassification(t.ResNetConfig(num_labels=1000)).eval()


def small_resnet() -> nn.Module:
    t = _transformers()
    config = t.ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], num_labels=10)
    return t.ResNetForImageClassification(config).eval()


def small_vit() -> nn.Module:
    t = _transformers()
    config = t.ViTConfig(
        image_size=64,
        patch_size=8,
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        num_labels=10,
    )
    return t.ViTForImageClassification(config).eval()


def _seconds(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def _half_zeroed(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy with every other unit of every coupled group zeroed in all its parameter slices."""
    zeroed = copy.deepcopy(model)
    for group in trace(zeroed, example).groups:
        for (tensor, axis), index in group.index.items():
            module_name, _, attr = tensor.rpartition(".")
            module = zeroed.get_submodule(module_name)
            if attr in module._parameters:
                getattr(module, attr).index_fill_(axis, index[1::2].reshape(-1), 0.0)
    return zeroed


def cost_task(repeats: int) -> dict[str, Any]:
    """Forward, trace and compaction seconds of a ResNet-50 at batch 1 (medians)."""
    torch.manual_seed(0)
    model = resnet50()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(x)  # warm up
        forward = _seconds(lambda: model(x), repeats)
    zeroed = _half_zeroed(model, x)
    graph_s = _seconds(lambda: trace(model, x), max(3, repeats // 3))
    compact_s = _seconds(lambda: compact(zeroed, example_input=x), max(3, repeats // 3))
    small = compact(zeroed, example_input=x)
    return {
        "model": "Hugging Face ResNet-50 (default config, 1000 classes)",
        "params": sum(p.numel() for p in model.parameters()),
        "compacted_params": sum(p.numel() for p in small.parameters()),
        "groups": len(trace(model, x).groups),
        "forward_s": forward,
        "graph_s": graph_s,
        "compact_s": compact_s,
        "graph_forwards": graph_s / forward,
        "compact_forwards": compact_s / forward,
        "total_forwards": (graph_s + compact_s) / forward,
        "goal": COST_GOAL,
    }


def pruned(model: nn.Module, example: torch.Tensor, sparsity: float) -> tuple[nn.Module, nn.Module]:
    """(masked, compacted) models after one-shot ChannelPruning at channel ``sparsity``."""
    method = ChannelPruning(OneShot(sparsity), "global", "l2")
    prepared = method.prepare(copy.deepcopy(model), example)
    final = method.finalize(prepared).eval()
    return final, method.compact(final, example_input=example).eval()


def matched(model: nn.Module, example: torch.Tensor, fraction: float, steps: int = 12):
    """Bisection on the channel sparsity for a compacted model with ``fraction`` of the MACs."""
    one = example[:1]
    dense = count_macs(model, one).dense
    low, high, best = 0.0, 0.95, None
    for _ in range(steps):
        middle = (low + high) / 2
        masked, small = pruned(model, one, middle)
        ratio = count_macs(small, one).dense / dense
        if best is None or abs(ratio - fraction) < abs(best[2] - fraction):
            best = (masked, small, ratio, middle)
        low, high = (middle, high) if ratio > fraction else (low, middle)
    return best


def speed_task(repeats: int, batch: int = 64) -> dict[str, Any]:
    """Compacted vs masked latency at ≈ 50 % of the MACs, for a ResNet and a ViT."""
    results = {}
    for name, build in (("ResNet-18 (64×64)", small_resnet), ("ViT-Tiny (64×64)", small_vit)):
        torch.manual_seed(0)
        model = build()
        x = torch.randn(batch, 3, 64, 64)
        masked, small, ratio, sparsity = matched(model, x, 0.5)
        calls = {"masked": lambda m=masked, x=x: m(x), "compacted": lambda m=small, x=x: m(x)}
        with eval_mode(masked, small):
            timed = interleaved(calls, repeats, warmup=2)
        times = {name: t.median for name, t in timed.items()}
        speedup = times["masked"] / times["compacted"]
        results[name] = {
            "channel_sparsity": sparsity,
            "mac_ratio": ratio,
            "masked_s": times["masked"],
            "compacted_s": times["compacted"],
            "speedup": speedup,
            "ideal": 1 / ratio,
            "efficiency": speedup * ratio,
            "goal": SPEED_GOAL,
        }
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench graph",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed rounds")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    with threads(args.threads):
        cost = cost_task(args.repeats)
        speed = speed_task(args.repeats)
    print(
        f"{cost['model']}: {cost['params'] / 1e6:.1f} M parameters, {cost['groups']} groups; "
        f"forward {1e3 * cost['forward_s']:.0f} ms, graph {1e3 * cost['graph_s']:.0f} ms "
        f"({cost['graph_forwards']:.1f} forwards), compaction {1e3 * cost['compact_s']:.0f} ms "
        f"({cost['compact_forwards']:.1f}); graph + compaction = {cost['total_forwards']:.1f} "
        f"forward passes (goal ≤ {COST_GOAL:g})"
    )
    for name, r in speed.items():
        print(
            f"{name}: {100 * r['mac_ratio']:.1f} % of the MACs (channel sparsity "
            f"{r['channel_sparsity']:.2f}); masked {1e3 * r['masked_s']:.1f} ms, compacted "
            f"{1e3 * r['compacted_s']:.1f} ms at batch 64: {r['speedup']:.2f}× vs ideal "
            f"{r['ideal']:.2f}× = {r['efficiency']:.2f} of the MAC ratio (goal ≥ {SPEED_GOAL})"
        )
    if args.json:
        atomic_write_json(
            {
                **machine_record(args.threads),
                "cost": cost,
                "speed": speed,
            },
            args.json,
        )
    return 0


__all__ = ["cost_task", "main", "matched", "pruned", "speed_task"]
