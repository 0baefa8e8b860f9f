"""Plain PyTorch references for kernels/chunk_attention.py: same signatures, one request at a time."""

from __future__ import annotations

import torch
from torch import Tensor


def chunk_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, positions: Tensor, cu_seqlens: Tensor, k_cache: Tensor, v_cache: Tensor,
    page_table: Tensor, prefix_lens: Tensor, block_size: int, scale: float, *, max_window: int | None = None,
) -> Tensor:  # fmt: skip
    """Request i's rows cu_seqlens[i]:cu_seqlens[i+1] see its prefix_lens[i] cached positions and the
    window keys j with positions[j] // block_size <= positions[query] // block_size; fp32 math. ``max_window``
    sizes the Triton kernel's tiles and changes nothing here."""
    out = torch.empty_like(q)
    group = q.shape[1] // k.shape[1]
    page_size = k_cache.shape[1]
    for request in range(cu_seqlens.numel() - 1):
        start, end = int(cu_seqlens[request]), int(cu_seqlens[request + 1])
        if start == end:
            continue
        cached = torch.arange(int(prefix_lens[request]), device=q.device)
        pages = page_table[request, cached // page_size].long()
        keys = torch.cat([k_cache[pages, cached % page_size], k[start:end]])
        values = torch.cat([v_cache[pages, cached % page_size], v[start:end]])
        window_blocks = torch.div(positions[start:end].long(), block_size, rounding_mode="floor")
        window_visible = window_blocks[None, :] <= window_blocks[:, None]
        visible = torch.cat([window_visible.new_ones(end - start, cached.numel()), window_visible], dim=1)
        keys = keys.float().repeat_interleave(group, dim=1)
        values = values.float().repeat_interleave(group, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q[start:end].float(), keys) * scale
        probs = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
        out[start:end] = torch.einsum("hqk,khd->qhd", probs, values).to(q.dtype)
    return out


def store_kv_reference(k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, slot_mapping: Tensor) -> None:
    """Write row t of k/v to cache slot slot_mapping[t] (= page * page_size + offset); skip -1."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    page_size = k_cache.shape[1]
    k_cache[slots // page_size, slots % page_size] = k[keep]
    v_cache[slots // page_size, slots % page_size] = v[keep]
