"""Plain PyTorch references for kernels/confidence.py (same signatures)."""

from __future__ import annotations

from torch import Tensor


def max_softmax_reference(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(max softmax probability fp32 [R], its token int64 [R]) of logits [R, V]."""
    return logits.float().softmax(dim=-1).amax(dim=-1), logits.argmax(dim=-1)


def lm_head_confidence_reference(hidden: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """max_softmax of the LM head's logits hidden [R, D] @ weight [V, D]^T."""
    return max_softmax_reference(hidden @ weight.t())
