"""Triton q/k-norm + RoPE: one program per token row covers all q and k heads, one read and one write each
(eager PyTorch launches over twenty kernels for the pair).

Same math as kernels/rope_ref.py, all in fp32 and rounded once at the end (the reference rounds after each op).
q and k may be strided views of one fused qkv projection output.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _norm_rope_heads(x_ptr, row_stride, out_ptr, weight_ptr, cos, sin, row, num_heads, eps,
                     HAS_WEIGHT: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr):
    heads = tl.arange(0, BLOCK_H)[:, None]
    dims = tl.arange(0, HEAD_DIM)[None, :]
    partner = (dims + HEAD_DIM // 2) % HEAD_DIM
    valid = heads < num_heads
    base = x_ptr + row * row_stride + heads * HEAD_DIM
    x = tl.load(base + dims, mask=valid, other=0.0).to(tl.float32)
    x_partner = tl.load(base + partner, mask=valid, other=0.0).to(tl.float32)
    if HAS_WEIGHT:
        rstd = tl.rsqrt(tl.sum(x * x, 1) / HEAD_DIM + eps)[:, None]
        weight = tl.load(weight_ptr + dims).to(tl.float32)
        weight_partner = tl.load(weight_ptr + partner).to(tl.float32)
        x, x_partner = x * rstd * weight, x_partner * rstd * weight_partner
    rotated = tl.where(dims < HEAD_DIM // 2, -x_partner, x_partner)
    out = x * cos + rotated * sin
    tl.store(out_ptr + (row * num_heads + heads) * HEAD_DIM + dims, out.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _qk_norm_rope_kernel(q_ptr, k_ptr, cos_ptr, sin_ptr, q_weight_ptr, k_weight_ptr, q_out_ptr, k_out_ptr,
                         q_row_stride, k_row_stride, num_q_heads, num_kv_heads, eps, HAS_WEIGHT: tl.constexpr,
                         HEAD_DIM: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HKV: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    dims = tl.arange(0, HEAD_DIM)[None, :]
    cos = tl.load(cos_ptr + row * HEAD_DIM + dims).to(tl.float32)
    sin = tl.load(sin_ptr + row * HEAD_DIM + dims).to(tl.float32)
    _norm_rope_heads(q_ptr, q_row_stride, q_out_ptr, q_weight_ptr, cos, sin, row, num_q_heads, eps,
                     HAS_WEIGHT, HEAD_DIM, BLOCK_HQ)
    _norm_rope_heads(k_ptr, k_row_stride, k_out_ptr, k_weight_ptr, cos, sin, row, num_kv_heads, eps,
                     HAS_WEIGHT, HEAD_DIM, BLOCK_HKV)


def _token_rows(x: Tensor, rows: int) -> Tensor:
    """x [..., H, D] as [rows, H, D] with unit dim stride and head stride D (a view when the strides allow)."""
    x = x.reshape(rows, *x.shape[-2:])
    return x if x.stride(2) == 1 and x.stride(1) == x.shape[2] else x.contiguous()


def qk_norm_rope(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, q_weight: Tensor | None,
                 k_weight: Tensor | None, eps: float) -> tuple[Tensor, Tensor]:
    """Per-head RMSNorm (q_weight/k_weight [D], or both None for none) then rotate-half RoPE, fused.

    q [..., Hq, D] and k [..., Hkv, D] share leading dims and may be strided views (e.g. slices of a fused qkv
    output); cos/sin are [..., D] of q's dtype. Returns new contiguous tensors shaped like q and k."""
    head_dim = q.shape[-1]
    assert head_dim & (head_dim - 1) == 0 and head_dim >= 2, "head_dim must be a power of two"
    assert k.shape[-1] == head_dim and q.shape[:-2] == k.shape[:-2] == cos.shape[:-1] == sin.shape[:-1]
    assert cos.shape[-1] == head_dim and cos.dtype == sin.dtype == q.dtype == k.dtype
    assert (q_weight is None) == (k_weight is None)
    assert q_weight is None or q_weight.dtype == k_weight.dtype == q.dtype, "the weight is multiplied in q's dtype"
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    rows = cos.numel() // head_dim
    if rows:
        num_q_heads, num_kv_heads = q.shape[-2], k.shape[-2]
        q_rows, k_rows = _token_rows(q, rows), _token_rows(k, rows)
        has_weight = q_weight is not None
        block_hq, block_hkv = triton.next_power_of_2(num_q_heads), triton.next_power_of_2(num_kv_heads)
        _qk_norm_rope_kernel[(rows,)](
            q_rows, k_rows, cos.contiguous(), sin.contiguous(), q_weight if has_weight else q_rows,
            k_weight if has_weight else k_rows, q_out, k_out, q_rows.stride(0), k_rows.stride(0), num_q_heads,
            num_kv_heads, eps, HAS_WEIGHT=has_weight, HEAD_DIM=head_dim, BLOCK_HQ=block_hq, BLOCK_HKV=block_hkv,
            num_warps=min(8, max(1, block_hq * head_dim // 512)))
    return q_out, k_out
