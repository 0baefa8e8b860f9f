"""Triton RMSNorm: one program per row, one read and one write (eager PyTorch needs about eight kernels),
and the residual add fused in front of it (`add_rms_norm`).

Same math as kernels/rms_norm_ref.py: fp32 statistics, the normalized row rounded to the input dtype,
then multiplied by the weight and rounded again.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _normalize_row(x, weight_ptr, out_ptr, row, offs, valid, dim, eps):
    """Writes the RMSNorm of the fp32 row x (already of the output dtype's precision) to out_ptr's row."""
    normed = x * tl.rsqrt(tl.sum(x * x, 0) / dim + eps)
    normed = normed.to(out_ptr.dtype.element_ty).to(tl.float32)
    weight = tl.load(weight_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * dim + offs, (weight * normed).to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _rms_norm_kernel(x_ptr, weight_ptr, out_ptr, dim, eps, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_D)
    valid = offs < dim
    x = tl.load(x_ptr + row * dim + offs, mask=valid, other=0.0).to(tl.float32)
    _normalize_row(x, weight_ptr, out_ptr, row, offs, valid, dim, eps)


@triton.jit
def _add_rms_norm_kernel(x_ptr, residual_ptr, weight_ptr, out_ptr, summed_ptr, dim, eps, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_D)
    valid = offs < dim
    x = tl.load(x_ptr + row * dim + offs, mask=valid, other=0.0).to(tl.float32)
    residual = tl.load(residual_ptr + row * dim + offs, mask=valid, other=0.0).to(tl.float32)
    summed = (x + residual).to(summed_ptr.dtype.element_ty)
    tl.store(summed_ptr + row * dim + offs, summed, mask=valid)
    _normalize_row(summed.to(tl.float32), weight_ptr, out_ptr, row, offs, valid, dim, eps)


def rms_norm(x: Tensor, weight: Tensor, eps: float, *, out: Tensor | None = None) -> Tensor:
    """RMSNorm over the last dim of x (any leading shape); weight [dim] of x's dtype; ``out`` optional."""
    assert weight.dtype == x.dtype, "the weight is multiplied in the activation dtype"
    x = x.contiguous()
    out = torch.empty_like(x) if out is None else out
    dim = x.shape[-1]
    rows = x.numel() // dim
    if rows:
        _rms_norm_kernel[(rows,)](x, weight, out, dim, eps, BLOCK_D=triton.next_power_of_2(dim))
    return out


def add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(rms_norm(x + residual), x + residual) over the last dim (any leading shape); the sum is rounded
    to x's dtype exactly as ``x + residual`` is, and normalized as `rms_norm` does."""
    assert weight.dtype == x.dtype == residual.dtype, "the weight is multiplied in the activation dtype"
    assert x.shape == residual.shape
    x, residual = x.contiguous(), residual.contiguous()
    out, summed = torch.empty_like(x), torch.empty_like(x)
    dim = x.shape[-1]
    rows = x.numel() // dim
    if rows:
        _add_rms_norm_kernel[(rows,)](x, residual, weight, out, summed, dim, eps, BLOCK_D=triton.next_power_of_2(dim))
    return out, summed
