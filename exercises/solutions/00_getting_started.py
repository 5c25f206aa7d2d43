"""Solutions to ``exercises/00_getting_started.py`` (for instructors)."""

from __future__ import annotations

import torch
from torch import nn

PRUNABLE = (nn.Linear, nn.Conv2d)


def weight_sparsity(model: nn.Module) -> float:
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, PRUNABLE)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / total


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def conv2d_macs(conv: nn.Conv2d, height: int, width: int) -> int:
    (kh, kw), (sh, sw) = _pair(conv.kernel_size), _pair(conv.stride)
    (ph, pw), (dh, dw) = _pair(conv.padding), _pair(conv.dilation)
    h_out = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return h_out * w_out * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    layers = {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape[1:])

        return hook

    hooks = [m.register_forward_hook(recorder(name)) for name, m in layers.items()]
    modes = [(m, m.training) for m in model.modules()]
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes:
            m.train(training)
    table = {}
    for name, m in layers.items():
        if name not in shapes:
            continue
        shape = shapes[name]
        positions = shape[-2] * shape[-1] if len(shape) == 3 else 1
        w = m.weight.detach()
        table[name] = (positions * w.numel(), positions * int((w != 0).sum()))
    return table


def parameters_and_nonzeros(model: nn.Module) -> tuple[int, int]:
    params = [p.detach() for p in model.parameters()]
    return sum(p.numel() for p in params), sum(int((p != 0).sum()) for p in params)
