"""Plain PyTorch reference for kernels/rms_norm.py (the model's own RMSNorm math)."""

from __future__ import annotations

from torch import Tensor


def rms_norm_reference(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Qwen-style RMSNorm over the last dim: normalize in fp32, cast back, then scale by the weight."""
    dtype = x.dtype
    xf = x.float()
    normed = xf * (xf.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    return weight * normed.to(dtype)


def add_rms_norm_reference(x: Tensor, residual: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(rms_norm_reference(x + residual), x + residual): the pre-norm residual add fused with the next norm."""
    summed = x + residual
    return rms_norm_reference(summed, weight, eps), summed
