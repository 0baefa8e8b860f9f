"""Plain PyTorch reference for kernels/activation.py (the SwiGLU gate of the MLP)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def silu_mul_reference(gate_up: Tensor) -> Tensor:
    """gate_up [..., 2I] (gate then up) -> silu(gate) * up [..., I]."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
