"""Data parallelism under ``torchrun``: the few helpers ``sparsitylab run`` needs.

``torchrun --nproc_per_node N -m sparsitylab run ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment; :func:`launched` sees them and :func:`init`
joins the process group (gloo on CPU, nccl on CUDA, one GPU per process chosen by ``LOCAL_RANK``).
Outside torchrun every helper answers for one process (rank 0 of 1) and does nothing, so the same
code runs either way.

Only data parallelism: every process holds the whole model, trains on its share of each global
batch (:class:`torch.utils.data.DistributedSampler`) and DistributedDataParallel averages the
gradients, so every rank takes the same optimizer step.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched() -> bool:
    """Whether this process was started by torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    return all(key in os.environ for key in ENV)


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 outside torchrun), before :func:`init`."""
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def is_distributed() -> bool:
    """Whether a process group is initialised (by :func:`init`)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0: the process that writes files and prints."""
    return rank() == 0


def device() -> torch.device:
    """``cuda:LOCAL_RANK`` where CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init() -> bool:
    """Join the process group when launched by torchrun (nccl with CUDA, else gloo); returns whether
    it did. Calling it again, or outside torchrun, does nothing."""
    if not launched() or is_distributed():
        return is_distributed()
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
        dist.init_process_group("nccl", device_id=device())
    else:
        dist.init_process_group("gloo")
    return True


def teardown() -> None:
    """Leave the process group (if any)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def mean(value: float) -> float:
    """The mean of ``value`` over the ranks (``value`` itself in one process)."""
    if not is_distributed():
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return float(tensor.item()) / world_size()


def mean_tensor_(tensor: torch.Tensor) -> torch.Tensor:
    """Replace ``tensor`` by its mean over the ranks, in place (unchanged in one process); returns
    it. Growth methods rank each rank's own dense gradient, which must agree across ranks."""
    if is_distributed():
        dist.all_reduce(tensor)
        tensor.div_(world_size())
    return tensor


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


@torch.no_grad()
def broadcast_module(module: nn.Module) -> nn.Module:
    """Copy rank 0's parameters and buffers into ``module`` on every rank."""
    if is_distributed():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)
    return module


def wrap(module: nn.Module) -> nn.Module:
    """``module`` inside DistributedDataParallel (``module`` itself in one process).

    ``forward_sync_buffers=False``: buffers (masks, BatchNorm statistics) are copied from rank 0
    when the wrapper is built (once per stage), not before every forward; masks stay identical
    because every rank computes them from identical weights (the tests check that), and rank 0's
    BatchNorm statistics are the ones written.
    """
    if not is_distributed() or not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device().index] if device().type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)


def _collective_device() -> torch.device:
    return device() if dist.get_backend() == "nccl" else torch.device("cpu")


__all__ = [
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "device",
    "env_world_size",
    "init",
    "is_distributed",
    "is_main",
    "launched",
    "mean_tensor_",
    "mean",
    "rank",
    "teardown",
    "world_size",
    "wrap",
]
