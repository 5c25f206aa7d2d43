"""Evaluation: where a model runs (``resolve_device``), how its output becomes class scores
(``logits_of``: tensors, Hugging Face outputs, dicts, tuples), the loss and hits of a batch, and the
test-set measures every chapter reports (:func:`evaluate`, :func:`accuracy`, and :func:`correct`,
the per-example record that paired comparisons need). :mod:`sparsitylab.train` re-exports them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.data import DataLoader

from .graph.tracer import call
from .models import eval_mode


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` → CUDA when available, else CPU. An unavailable CUDA device is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} requested but CUDA is not available; use 'cpu'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device} is not supported; use 'cpu' or 'cuda'")
    return device


def to_device(x: Any, device: torch.device | str) -> Any:
    """``x`` (a tensor, or a dict / tuple of them: a model's keyword or positional inputs) on
    ``device``."""
    return pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, x)


def logits_of(output: Any) -> torch.Tensor:
    """The class scores in a model's output: a tensor as it is, ``.logits`` of a Hugging Face
    output, ``["logits"]`` of a dict, the first element of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    found = getattr(output, "logits", None)
    if found is None and isinstance(output, Mapping):
        found = output.get("logits")
    if found is None and isinstance(output, (tuple, list)) and output:
        found = output[0]
    if not isinstance(found, torch.Tensor):
        raise TypeError(
            f"the model returned a {type(output).__name__} without class scores; return a tensor, "
            "an object with .logits, or a tuple whose first element holds them"
        )
    return found


def loss_and_hits(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean"):
    """(cross-entropy, correct predictions, counted targets); scores over a sequence (B, T, C)
    are scored per token, and targets of −100 are ignored."""
    if logits.dim() > 2:
        logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    loss = F.cross_entropy(logits, y, reduction=reduction, ignore_index=-100)
    valid = y != -100
    hits = ((logits.argmax(-1) == y) & valid).sum().item()
    return loss, hits, int(valid.sum())


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, device: str | torch.device | None = None
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (in eval mode; the model's mode
    is restored)."""
    device = resolve_device(device if device is not None else next(model.parameters()).device)
    loss_sum, correct, count = 0.0, 0, 0
    with eval_mode(model):
        for x, y in loader:
            x, y = to_device(x, device), y.to(device)
            loss, hits, seen = loss_and_hits(logits_of(call(model, x)), y, "sum")
            loss_sum += loss.item()
            correct += hits
            count += seen
    if count == 0:
        raise ValueError("loader is empty: nothing to evaluate")
    return {"loss": loss_sum / count, "acc": correct / count}


@torch.no_grad()
def correct(model: nn.Module, loader: DataLoader) -> torch.Tensor:
    """Which test examples ``model`` gets right: a 1-D bool tensor in the loader's order (tokens
    of a sequence task flattened, targets of −100 left out). The per-example record that paired
    comparisons (:mod:`sparsitylab.significance`) need; its mean is :func:`accuracy`."""
    device = next(model.parameters()).device
    hits = []
    with eval_mode(model):
        for x, y in loader:
            logits, y = logits_of(call(model, to_device(x, device))), y.to(device)
            if logits.dim() > 2:
                logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
            hits.append((logits.argmax(-1) == y)[y != -100].cpu())
    if not hits:
        raise ValueError("loader is empty: nothing to evaluate")
    return torch.cat(hits)


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Shorthand for ``evaluate(model, loader)["acc"]``."""
    return evaluate(model, loader)["acc"]


__all__ = [
    "accuracy",
    "correct",
    "evaluate",
    "logits_of",
    "loss_and_hits",
    "resolve_device",
    "to_device",
]
