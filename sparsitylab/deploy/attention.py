"""Multi-head attention with any number of heads: what ``nn.MultiheadAttention`` becomes once heads
are removed.

``nn.MultiheadAttention`` ties the width of its q, k and v projections to ``embed_dim`` (its packed
projection splits into three ``embed_dim`` blocks, and ``F.multi_head_attention_forward`` asserts
``num_heads · head_dim == embed_dim``), so it cannot hold fewer heads than it was built with.
:class:`PrunedMultiheadAttention` computes exactly what it computes — same parameter names
(``in_proj_weight``, ``in_proj_bias``, ``out_proj``), same call signature and masks — with q, k
and v ``num_heads · head_dim`` wide. Compaction swaps it in for an ``nn.MultiheadAttention`` that
lost heads (:mod:`sparsitylab.deploy.surgery`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True = do not attend) as an additive float mask."""
    if mask is None or mask.is_floating_point():
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


class PrunedMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (self- or cross-attention, no ``bias_k``/``add_zero_attn``) with
    ``num_heads`` heads of ``head_dim`` features each, independent of ``embed_dim``."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        head_dim: int,
        batch_first: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.batch_first, self.dropout = batch_first, dropout
        self._qkv_same_embed_dim = False  # turns nn.TransformerEncoderLayer's fused fast path off
        width = num_heads * head_dim
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width)) if bias else None
        self.out_proj = nn.Linear(width, embed_dim, bias=bias)

    @classmethod
    def like(cls, mha: nn.MultiheadAttention, num_heads: int) -> PrunedMultiheadAttention:
        """An empty one with ``mha``'s settings and ``num_heads`` heads (tensors set by the
        caller)."""
        if mha.bias_k is not None or mha.add_zero_attn or not mha._qkv_same_embed_dim:
            raise ValueError(
                "only nn.MultiheadAttention with one packed in_proj_weight and no bias_k/bias_v or "
                "add_zero_attn can lose heads"
            )
        return cls(
            mha.embed_dim,
            num_heads,
            mha.head_dim,
            mha.batch_first,
            mha.dropout,
            mha.in_proj_bias is not None,
        ).to(mha.in_proj_weight.device)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batched = query.dim() == 3
        if not batched:
            query, key, value = (
                t.unsqueeze(0 if self.batch_first else 1) for t in (query, key, value)
            )
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
        batch, length, source = query.shape[0], query.shape[1], key.shape[1]

        def heads(x, w, b, steps):
            return (
                F.linear(x, w, b).view(batch, steps, self.num_heads, self.head_dim).transpose(1, 2)
            )

        q, k, v = (
            heads(query, w_q, b_q, length),
            heads(key, w_k, b_k, source),
            heads(value, w_v, b_v, source),
        )
        mask = _float_mask(attn_mask, q.dtype)
        if mask is not None and mask.dim() == 3:  # (batch·heads, L, S)
            mask = mask.view(batch, self.num_heads, length, source)
        padding = _float_mask(key_padding_mask, q.dtype)
        if padding is not None:
            padding = padding.view(batch, 1, 1, source)
            mask = padding if mask is None else mask + padding
        dropout = self.dropout if self.training else 0.0
        causal = is_causal and mask is None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            if causal:
                scores = scores.masked_fill(
                    torch.ones(length, source, dtype=torch.bool, device=q.device).triu(1),
                    float("-inf"),
                )
            if mask is not None:
                scores = scores + mask
            weights = F.dropout(scores.softmax(-1), dropout, self.training)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, mask, dropout, causal)
            weights = None
        out = self.out_proj(
            out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        )
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        return out, weights


__all__ = ["PrunedMultiheadAttention"]
