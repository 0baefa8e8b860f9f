"""Chunk attention against its PyTorch peers, one row of results per (b, c, P) shape."""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from kernels import page_pool
from kernels.bench_timing import Timer
from kernels.chunk_attention import chunk_attention, plan_launch


QWEN3_8B_HEADS = (32, 8, 128)  # (q heads, kv heads, head dim) of every timed attention shape
PAGE_SIZE = 16  # tokens per KV page in the timed shapes
BLOCK_SIZE = 32  # the diffusion block: a decode window is one block, so it sees all of itself


def paged_batch(windows, prefixes, q_heads, kv_heads, head_dim, page_size, dtype, device, layout="token-major",
                shuffled=True):
    """Random windows over random prefixes stored in 'page_size'-token pages (of ``layout``), in a shuffled order
    or, with ``shuffled=False``, each request's pages in a row (what a fresh engine pool hands out)."""
    pages_per_request = max(1, max(-(-p // page_size) for p in prefixes))
    num_pages = len(windows) * pages_per_request
    tokens = sum(windows)
    cu_seqlens = torch.tensor([0, *windows], device=device).cumsum(0).int()
    return dict(
        q=torch.randn(tokens, q_heads, head_dim, device=device, dtype=dtype),
        k=torch.randn(tokens, kv_heads, head_dim, device=device, dtype=dtype),
        v=torch.randn(tokens, kv_heads, head_dim, device=device, dtype=dtype),
        positions=torch.cat([torch.arange(p, p + w, device=device) for w, p in zip(windows, prefixes)]).int(),
        cu_seqlens=cu_seqlens,
        k_cache=page_pool(num_pages, page_size, kv_heads, head_dim, layout, device=device, dtype=dtype).normal_(),
        v_cache=page_pool(num_pages, page_size, kv_heads, head_dim, layout, device=device, dtype=dtype).normal_(),
        page_table=(torch.randperm(num_pages, device=device) if shuffled else torch.arange(num_pages, device=device))
        .int().view(len(windows), pages_per_request),
        prefix_lens=torch.tensor(prefixes, device=device, dtype=torch.int32),
    )


def sdpa_peers(batch: dict, b: int, c: int, prefix: int, block_size: int, scale: float) -> dict:
    """torch SDPA on the same shapes: dense KV (no mask; materialized mask) and gather-from-pages."""
    q_heads, head_dim = batch["q"].shape[1:]
    kv_heads = batch["k"].shape[1]
    query = batch["q"].view(b, c, q_heads, head_dim).transpose(1, 2)
    dense_k = torch.randn(b, kv_heads, prefix + c, head_dim, device=query.device, dtype=query.dtype)
    dense_v = torch.randn_like(dense_k)
    key_blocks = torch.arange(prefix + c, device=query.device) // block_size
    query_blocks = torch.arange(prefix, prefix + c, device=query.device) // block_size
    mask = (key_blocks[None, :] <= query_blocks[:, None]).expand(b, 1, c, prefix + c).contiguous()

    def gathered(cache, window):
        paged = cache[batch["page_table"].long()].flatten(1, 2)[:, :prefix]
        return torch.cat([paged, window.view(b, c, kv_heads, head_dim)], dim=1).transpose(1, 2)

    def gather_sdpa():
        keys, values = gathered(batch["k_cache"], batch["k"]), gathered(batch["v_cache"], batch["v"])
        return F.scaled_dot_product_attention(query, keys, values, scale=scale, enable_gqa=True)

    return {
        "sdpa": lambda: F.scaled_dot_product_attention(query, dense_k, dense_v, scale=scale, enable_gqa=True),
        "sdpa_mask": lambda: F.scaled_dot_product_attention(
            query, dense_k, dense_v, attn_mask=mask, scale=scale, enable_gqa=True
        ),
        "gather_sdpa": gather_sdpa,
    }


def flex_peer(flex, batch: dict, b: int, c: int, prefix: int, block_size: int, scale: float):
    """Compiled FlexAttention over dense KV with a block-causal block mask."""
    from torch.nn.attention.flex_attention import create_block_mask

    q_heads, head_dim = batch["q"].shape[1:]
    query = batch["q"].view(b, c, q_heads, head_dim).transpose(1, 2)
    dense_k = torch.randn(b, batch["k"].shape[1], prefix + c, head_dim, device=query.device, dtype=query.dtype)
    dense_v = torch.randn_like(dense_k)

    def block_causal(batch_index, head, q_index, kv_index):
        return kv_index // block_size <= (q_index + prefix) // block_size

    block_mask = create_block_mask(block_causal, None, None, c, prefix + c, device=query.device)
    return lambda: flex(query, dense_k, dense_v, block_mask=block_mask, scale=scale, enable_gqa=True)


def timed_or_error(row: dict, name: str, time_ms: Timer, make: Callable[[], Callable]) -> None:
    """row[name_ms] = time of make()(), or row[name_error] when building or running it fails."""
    try:
        row[f"{name}_ms"] = time_ms(make())
        if time_ms.last_method == "do_bench":
            row[f"{name}_timing"] = "do_bench (CUDA graph capture failed)"
    except Exception as error:  # noqa: BLE001 - a peer's failure is a result to record
        row[f"{name}_error"] = f"{type(error).__name__}: {str(error)[:300]}"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def summarize(row: dict, copy_bps: float) -> None:
    total_bytes = row["kv_bytes"] + row["qo_bytes"]
    row["ours_TBps"] = total_bytes / row["ours_ms"] * 1e-9
    row["ours_frac_copy"] = total_bytes / (row["ours_ms"] * 1e-3) / copy_bps
    peer_ms = [row[k] for k in ("sdpa_ms", "sdpa_mask_ms", "gather_sdpa_ms", "flex_ms") if k in row]
    row["speedup_vs_best_peer"] = min(peer_ms) / row["ours_ms"] if peer_ms else None


def tune_chunk_attention(args, device: torch.device, heads: tuple[int, int, int]) -> None:
    """Compiles each q-tile shape (BLOCK_M) on a mid-size batch and, where `HOPPER_CONFIGS` has no config for it,
    autotunes it there, before anything else fixes its config."""
    q_heads, kv_heads, head_dim = heads
    prefix = args.prefixes[len(args.prefixes) // 2]
    for window in args.windows:
        batch = paged_batch([window] * args.tune_batch, [prefix] * args.tune_batch, q_heads, kv_heads, head_dim,
                            PAGE_SIZE, torch.bfloat16, device, args.layout)
        chunk_attention(**batch, block_size=BLOCK_SIZE, scale=head_dim**-0.5)


def bench_attention(args, device, time_ms: Timer, copy_bps: float, heads, started: float, save: Callable) -> list[dict]:
    """Ours and the SDPA peers at every shape (largest KV first, until --budget-s), then compiled
    FlexAttention at the largest shapes with c in --flex-windows until --flex-until-s; `save(rows)`
    after each phase and each Flex shape keeps partial results."""
    q_heads, kv_heads, head_dim = heads
    block_size, page_size, scale = BLOCK_SIZE, PAGE_SIZE, head_dim**-0.5
    shapes = [(b, c, p) for p in args.prefixes for b in args.batches for c in args.windows]
    shapes.sort(key=lambda shape: -shape[0] * (shape[1] + shape[2]))
    rows = []
    for b, c, prefix in shapes:
        kv_bytes = 2 * b * (prefix + c) * kv_heads * head_dim * 2
        row = dict(b=b, c=c, P=prefix, kv_bytes=kv_bytes, qo_bytes=2 * b * c * q_heads * head_dim * 2)
        rows.append(row)
        if kv_bytes > args.max_kv_gb * 1e9 or time.time() > started + args.budget_s:
            row["skipped"] = "kv over limit" if kv_bytes > args.max_kv_gb * 1e9 else "time budget"
            continue
        batch = paged_batch([c] * b, [prefix] * b, q_heads, kv_heads, head_dim, page_size, torch.bfloat16, device,
                            args.layout, args.page_order == "shuffled")
        timed_or_error(row, "ours", time_ms, lambda: lambda: chunk_attention(**batch, block_size=block_size, scale=scale))
        plan = plan_launch(b * c, b, q_heads // kv_heads, kv_heads, batch["page_table"].shape[1] * page_size, device)
        row["block_q"], row["splits"] = plan.block_q, plan.num_splits
        for name, fn in sdpa_peers(batch, b, c, prefix, block_size, scale).items():
            timed_or_error(row, name, time_ms, lambda: fn)
        if "ours_ms" in row:
            summarize(row, copy_bps)
            print(format_attention_row(row), flush=True)
        del batch
    save(rows)
    if args.flex:
        from torch.nn.attention.flex_attention import flex_attention

        for limit in ("recompile_limit", "accumulated_recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, limit):  # one compile per shape (dynamic=False), as the peers ran it
                setattr(torch._dynamo.config, limit, 4096)
        flex = torch.compile(flex_attention, dynamic=False)
        for row in rows:
            if "ours_ms" not in row or row["c"] not in args.flex_windows:
                continue
            if time.time() > started + args.flex_until_s:
                row["flex_error"] = "not run: time budget"
                continue
            b, c, prefix = row["b"], row["c"], row["P"]
            batch = paged_batch([c] * b, [prefix] * b, q_heads, kv_heads, head_dim, page_size, torch.bfloat16, device)
            timed_or_error(row, "flex", time_ms, lambda: flex_peer(flex, batch, b, c, prefix, block_size, scale))
            summarize(row, copy_bps)
            print(format_attention_row(row), flush=True)
            del batch
            save(rows)
    return sorted(rows, key=lambda row: (row["P"], row["b"], row["c"]))


def format_attention_row(row: dict) -> str:
    def ms(key):
        return f"{row[key]:8.3f}" if key in row else "     n/a"

    head = f"b={row['b']:4d} c={row['c']:3d} P={row['P']:5d}"
    if "skipped" in row:
        return f"{head}  skipped: {row['skipped']}"
    speedup = row["speedup_vs_best_peer"]
    return (
        f"{head} ours {ms('ours_ms')} ms {row['ours_TBps']:5.2f} TB/s {100 * row['ours_frac_copy']:4.0f}% | sdpa {ms('sdpa_ms')}"
        f" mask {ms('sdpa_mask_ms')} gather {ms('gather_sdpa_ms')} flex {ms('flex_ms')} | x{speedup or float('nan'):.2f}"
    )
