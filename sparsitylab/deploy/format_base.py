"""What every storage format shares: the base class (tensor fields, byte size, device moves, packing
a layer's weight through its GEMM view), the index dtype and the check of a dense input."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Self

import torch

from .._checks import check_tensor, check_values
from ..gemm import gemm_view

INDEX = torch.int32


def _check_dense(dense: Any, name: str = "dense") -> torch.Tensor:
    check_values(check_tensor(dense, name, dims=(2,), floating=True), name)
    if dense.numel() == 0:
        raise ValueError(
            f"{name} has shape {tuple(dense.shape)}; a sparse format needs at least one row and "
            f"column"
        )
    return dense


class _Format:
    """Shared helpers: tensor fields, byte size, device moves, packing a layer's weight."""

    shape: tuple[int, int]
    order: ClassVar[str] = "chw"

    @classmethod
    def from_weight(cls, weight: torch.Tensor, *args: Any) -> Self:
        """Pack a Linear or Conv2d weight: ``from_dense`` of its GEMM view in this format's
        ``order``."""
        return cls.from_dense(gemm_view(weight.detach(), cls.order), *args)  # type: ignore[attr-defined]

    def _tensors(self, with_aux: bool = True) -> dict[str, torch.Tensor]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if isinstance(getattr(self, f.name), torch.Tensor)
            and (with_aux or not f.metadata.get("aux"))
        }

    @property
    def nbytes(self) -> int:
        """Bytes of the stored values and indices (auxiliary kernel data such as row orders
        excluded)."""
        return sum(t.numel() * t.element_size() for t in self._tensors(with_aux=False).values())

    @property
    def density(self) -> float:
        """Stored values (explicit zeros included) / dense elements."""
        return self.values.numel() / (self.shape[0] * self.shape[1])  # type: ignore[attr-defined]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Self:
        """A copy with ``fn`` applied to every tensor field, e.g. ``csr.map(lambda t:
        t.cuda())``."""
        return dataclasses.replace(self, **{k: fn(v) for k, v in self._tensors().items()})  # type: ignore


def dense_nbytes(shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the dense matrix: rows · cols · element size."""
    return shape[0] * shape[1] * torch.empty((), dtype=dtype).element_size()
