"""Exercises for the chapter "Getting started: data, dense baselines, and how we measure".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 00_getting_started

Use plain PyTorch; the library's own functions (``sparsitylab.metrics``) are what the grader
compares you with, so do not call them here. Throughout, the *prunable* layers are the
``nn.Linear`` and ``nn.Conv2d`` modules of a model, and MACs are multiply-accumulates for one input
sample (biases not counted; FLOPs = 2 × MACs).
"""

from __future__ import annotations

from torch import nn


def weight_sparsity(model: nn.Module) -> float:
    """Exercise 1. The book's "sparsity" of a model: the fraction of exact zeros among the weights
    of its prunable layers (every ``nn.Linear`` and ``nn.Conv2d``, at any depth of the module tree).

    Biases, BatchNorm parameters and the parameters of any other module are not counted. Count
    the weight a layer computes with (``layer.weight``), so a masked layer counts its effective
    weight. Return a Python float in [0, 1]: (number of zero weights) / (number of weights).
    """
    raise NotImplementedError("exercise 1: the weight sparsity of a model")


def conv2d_macs(conv: nn.Conv2d, height: int, width: int) -> int:
    """Exercise 2. The MACs of ``conv`` on one input image of ``height`` × ``width`` pixels:

        MACs = H_out · W_out · C_out · (C_in / groups) · k_h · k_w

    i.e. output positions × the number of weights. H_out and W_out follow from the layer's
    ``stride``, ``padding`` (numbers, not strings) and ``dilation``, as in PyTorch's documentation
    of ``nn.Conv2d``: ⌊(H + 2·p − d·(k − 1) − 1) / s⌋ + 1, per axis. Return a Python int.
    """
    raise NotImplementedError("exercise 2: the MACs of a convolution")


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """Exercise 3. The cost table of a model, one entry per prunable layer (module name → pair).

    Run ``model`` once in eval mode without gradients on ``torch.zeros(input_shape)`` (a batch of
    one) and record the output shape of every prunable layer (forward hooks help; restore the
    model's training mode and remove your hooks afterwards). For each layer on the forward path,
    in module order, return ``(macs, sparse_macs)``:

    - ``macs`` = positions × weight.numel(), where positions = H_out · W_out when the layer outputs
      an image (its output per sample has 3 dims: channels, height, width) and 1 otherwise;
    - ``sparse_macs`` = positions × the number of non-zero weights: what an ideal sparse kernel
      would compute.

    Layers the forward pass never reaches are left out. Values are Python ints.
    """
    raise NotImplementedError("exercise 3: MACs per layer, dense and sparse-aware")


def parameters_and_nonzeros(model: nn.Module) -> tuple[int, int]:
    """Exercise 4. ``(parameters, nonzeros)`` of a model: the number of entries of *every*
    parameter (biases and BatchNorm γ, β included; buffers such as BatchNorm running statistics
    excluded), and how many of those entries are not exactly zero — the values a sparse format
    would store. Two Python ints."""
    raise NotImplementedError("exercise 4: count parameters and non-zeros")
