"""Triton SwiGLU gate: silu(gate) * up from one fused gate/up projection output, in one kernel (eager: three).

fp32 math, rounded once to the input dtype (kernels/activation_ref.py rounds after the silu and the product)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _silu_mul_kernel(gate_up_ptr, out_ptr, inter, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < inter
    gate = tl.load(gate_up_ptr + row * 2 * inter + offs, mask=valid, other=0.0).to(tl.float32)
    up = tl.load(gate_up_ptr + row * 2 * inter + inter + offs, mask=valid, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * inter + offs, (gate * tl.sigmoid(gate) * up).to(out_ptr.dtype.element_ty), mask=valid)


def silu_mul(gate_up: Tensor) -> Tensor:
    """gate_up [..., 2I] (gate then up) -> silu(gate) * up [..., I]."""
    assert gate_up.shape[-1] % 2 == 0
    gate_up = gate_up.contiguous()
    inter = gate_up.shape[-1] // 2
    out = torch.empty(*gate_up.shape[:-1], inter, dtype=gate_up.dtype, device=gate_up.device)
    if out.numel():
        rows, block = out.numel() // inter, min(1024, triton.next_power_of_2(inter))
        _silu_mul_kernel[(rows, triton.cdiv(inter, block))](gate_up, out, inter, BLOCK=block)
    return out
