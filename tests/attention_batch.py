"""Random varlen window batches over a paged KV cache, for the chunk attention tests (CPU interpreter and CUDA)."""

from __future__ import annotations

import torch

from kernels import page_pool
from kernels.chunk_attention_ref import store_kv_reference


def make_batch(windows, prefixes, q_heads, kv_heads, head_dim, page_size, dtype, seed, layout="token-major"):
    """A varlen window batch over a shuffled paged cache (pages in ``layout``) whose unused slots hold NaN.

    Also returns each request's dense keys/values (prefix then window) for the dense check."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    pages_per_request = [-(-p // page_size) for p in prefixes]
    num_pages = sum(pages_per_request) + 2
    page_order = torch.randperm(num_pages, generator=gen).int()
    page_table = torch.full((len(windows), max(1, *pages_per_request)), -1, dtype=torch.int32)
    k_cache = page_pool(num_pages, page_size, kv_heads, head_dim, layout, dtype=dtype).fill_(float("nan"))
    v_cache = page_pool(num_pages, page_size, kv_heads, head_dim, layout, dtype=dtype).fill_(float("nan"))
    dense_keys, dense_values, used = [], [], 0
    for request, (window, prefix) in enumerate(zip(windows, prefixes)):
        page_table[request, : pages_per_request[request]] = page_order[used : used + pages_per_request[request]]
        used += pages_per_request[request]
        keys, values = randn(prefix + window, kv_heads, head_dim), randn(prefix + window, kv_heads, head_dim)
        cached = torch.arange(prefix)
        slots = page_table[request, cached // page_size].long() * page_size + cached % page_size
        store_kv_reference(keys[:prefix], values[:prefix], k_cache, v_cache, slots)
        dense_keys.append(keys)
        dense_values.append(values)
    lengths = torch.tensor(windows)
    cu_seqlens = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]).int()
    return dict(
        q=randn(int(lengths.sum()), q_heads, head_dim),
        k=torch.cat([keys[p:] for keys, p in zip(dense_keys, prefixes)]),
        v=torch.cat([values[p:] for values, p in zip(dense_values, prefixes)]),
        positions=torch.cat([torch.arange(p, p + w) for w, p in zip(windows, prefixes)]).int(),
        cu_seqlens=cu_seqlens,
        k_cache=k_cache,
        v_cache=v_cache,
        page_table=page_table,
        prefix_lens=torch.tensor(prefixes, dtype=torch.int32),
    ), (dense_keys, dense_values)
