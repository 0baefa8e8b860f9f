"""Triton kernels, each beside a plain PyTorch reference with the same signature.

`get_kernels(device)` is the one switch: the Triton versions on CUDA, the references elsewhere.
The Triton modules are imported only when asked for, so CPU users never compile or import them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Kernels:
    """The engine's kernel set; every field has the signature documented in docs/ARCHITECTURE.md."""

    chunk_attention: Callable
    store_kv: Callable
    max_softmax: Callable
    lm_head_confidence: Callable
    rms_norm: Callable
    add_rms_norm: Callable
    qk_norm_rope: Callable
    silu_mul: Callable


KV_LAYOUTS = ("token-major", "head-major")


def page_pool(num_pages: int, page_size: int, kv_heads: int, head_dim: int, layout: str, **factory) -> torch.Tensor:
    """An uninitialized KV page pool as every kernel indexes it, ``[num_pages, page_size, Hkv, D]``.

    "token-major" stores it so; "head-major" stores ``[num_pages, Hkv, page_size, D]`` (one contiguous
    page_size x D block per page and KV head) behind a transposed view. The kernels address the cache through
    its strides, so both layouts run the same code; only the memory access pattern differs."""
    if layout == "token-major":
        return torch.empty(num_pages, page_size, kv_heads, head_dim, **factory)
    if layout == "head-major":
        return torch.empty(num_pages, kv_heads, page_size, head_dim, **factory).transpose(1, 2)
    raise ValueError(f"kv_layout: unknown layout {layout!r} (known: {', '.join(KV_LAYOUTS)})")


def get_kernels(device: torch.device | str) -> Kernels:
    """Triton kernels on a CUDA device, PyTorch references on any other."""
    if torch.device(device).type == "cuda":
        from kernels.activation import silu_mul
        from kernels.chunk_attention import chunk_attention, store_kv
        from kernels.confidence import lm_head_confidence, max_softmax
        from kernels.rms_norm import add_rms_norm, rms_norm
        from kernels.rope import qk_norm_rope

        return Kernels(chunk_attention, store_kv, max_softmax, lm_head_confidence, rms_norm, add_rms_norm, qk_norm_rope,
                       silu_mul)
    from kernels.activation_ref import silu_mul_reference
    from kernels.chunk_attention_ref import chunk_attention_reference, store_kv_reference
    from kernels.confidence_ref import lm_head_confidence_reference, max_softmax_reference
    from kernels.rms_norm_ref import add_rms_norm_reference, rms_norm_reference
    from kernels.rope_ref import qk_norm_rope_reference

    return Kernels(chunk_attention_reference, store_kv_reference, max_softmax_reference, lm_head_confidence_reference,
                   rms_norm_reference, add_rms_norm_reference, qk_norm_rope_reference, silu_mul_reference)
