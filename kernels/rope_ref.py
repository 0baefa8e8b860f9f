"""Plain PyTorch reference for kernels/rope.py: rotate-half RoPE, after the Qwen3 per-head q/k RMSNorm when given."""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.rms_norm_ref import rms_norm_reference


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos/sin tables [..., head_dim] for absolute positions [...] (angles in fp32, then cast to dtype)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.float().unsqueeze(-1) * inv_freq
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE of x [..., H, D] with cos/sin [..., D] broadcast over the heads."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos.unsqueeze(-2) + rotated * sin.unsqueeze(-2)


def qk_norm_rope_reference(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, q_weight: Tensor | None,
                           k_weight: Tensor | None, eps: float) -> tuple[Tensor, Tensor]:
    """q [..., Hq, D], k [..., Hkv, D]: per-head RMSNorm with q_weight/k_weight [D] (both None: none), then RoPE."""
    if q_weight is not None:
        q, k = rms_norm_reference(q, q_weight, eps), rms_norm_reference(k, k_weight, eps)
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin)
