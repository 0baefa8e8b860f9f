"""Plain PyTorch reference for kernels/rms_norm.py (the model's own RMSNorm math)."""

from __future__ import annotations

from torch import Tensor


def rms_norm_reference(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Qwen-style RMSNorm over the last dim: normalize in fp32, cast back, then scale by the weight."""
    dtype = x.dtype
    xf = x.float()
    normed = xf * (xf.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    return weight * normed.to(dtype)
