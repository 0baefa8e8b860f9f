"""Triton chunk attention over a paged KV cache, and the store of a window's K/V into its pages.

One program of `_chunk_attention_kernel` owns a tile of BLOCK_Q query rows of one request, one KV
head and one split of that request's cached prefix. The tile's rows times the KV head's GROUP query
heads form the M dimension of `tl.dot`, so each KV tile is read once per (request, KV head, q tile).
When the batch alone cannot fill the GPU, the prefix is split across programs (flash-decoding) and
`_merge_splits_kernel` combines the partial outputs by their log-sum-exp. Semantics and argument
layout: docs/ARCHITECTURE.md and kernels/chunk_attention_ref.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from kernels.launch import compute_capability, interpreting, multiprocessor_count

MAX_BLOCK_M = 128  # query rows x group heads per program
MIN_SPLIT_LEN = 128  # a prefix split is worth its merge only past this many tokens
SPLIT_ALIGN = 128  # default split lengths are multiples of every BLOCK_N


def _attention_configs() -> list[triton.Config]:
    if interpreting():
        return [triton.Config({"BLOCK_N": 16}, num_warps=4, num_stages=1)]
    shapes = ((32, 4, 3), (32, 4, 4), (64, 4, 3), (64, 8, 3), (64, 4, 4), (128, 8, 2))
    return [triton.Config({"BLOCK_N": n}, num_warps=w, num_stages=s) for n, w, s in shapes]


@dataclass(frozen=True)
class LaunchConfig:
    """Prefix tokens per loop step, warps and software-pipeline stages of one attention launch."""

    block_n: int
    warps: int
    stages: int


# The fastest config per (head dim, BLOCK_M, split) on an H100 (`python3 -m kernels.tune_attention`, 2026-11-28,
# docs/benchmarks/h100-0606-attention-configs/); other devices and keys autotune over _attention_configs() at their
# first call, which picks from one shape and so varies by up to 15% at others.
HOPPER_CONFIGS: dict[tuple[int, int, bool], LaunchConfig] = {
    (128, 16, False): LaunchConfig(64, 4, 3),
    (128, 16, True): LaunchConfig(128, 4, 2),
    (128, 32, False): LaunchConfig(128, 4, 2),
    (128, 32, True): LaunchConfig(128, 4, 3),
    (128, 64, False): LaunchConfig(64, 4, 3),
    (128, 64, True): LaunchConfig(64, 4, 4),
    (128, 128, False): LaunchConfig(32, 4, 3),
    (128, 128, True): LaunchConfig(64, 4, 4),
}


def launch_config(head_dim: int, block_m: int, split: bool, device: torch.device) -> LaunchConfig | None:
    """The measured config of this launch on a Hopper GPU (compute capability 9.x); None where autotuning decides."""
    if interpreting() or compute_capability(device)[0] != 9:
        return None
    return HOPPER_CONFIGS.get((head_dim, block_m, split))


@triton.jit
def _locate_tile(cu_seqlens_ptr, tile, num_requests, BLOCK_Q: tl.constexpr):
    """(request, its first tile) for q tile `tile`; request i's tiles start at cu_seqlens[i] // BLOCK_Q + i."""
    low = tile * 0
    high = low + num_requests
    while low < high:
        middle = (low + high) // 2
        go_right = tl.load(cu_seqlens_ptr + middle) // BLOCK_Q + middle <= tile
        low = tl.where(go_right, middle + 1, low)
        high = tl.where(go_right, high, middle)
    request = low - 1
    return request, tl.load(cu_seqlens_ptr + request) // BLOCK_Q + request


@triton.jit
def _attend(acc, row_max, row_sum, q, k, v, visible, scale_log2, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """One online-softmax step of the [M, D] accumulator over a [N, D] key/value tile (base-2 logits)."""
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
    scores = tl.where(visible, scores, float("-inf"))
    new_max = tl.maximum(row_max, tl.max(scores, 1))
    rescale = tl.exp2(row_max - new_max)
    probs = tl.exp2(scores - new_max[:, None])
    row_sum = row_sum * rescale + tl.sum(probs, 1)
    acc = acc * rescale[:, None] + tl.dot(probs.to(v.dtype), v, input_precision=PRECISION)
    return acc, new_max, row_sum


# Integers that change from step to step are not specialized on (Triton compiles a variant per value class: 1, a
# multiple of 16, other): a step whose counts fell in a class not compiled yet stalled the engine for 1-2 s (eager
# prefill steps of a burst of requests, H200, 2026-11-28). An eager step's page table is as wide as its longest
# request needs, while the CUDA graphs' is as wide as the model's context, so its row stride varies too.
PER_STEP_ARGS = ["num_requests", "num_tokens", "stride_table"]


@triton.autotune(configs=_attention_configs(), key=["BLOCK_M", "HEAD_DIM"])
@triton.jit(do_not_specialize=PER_STEP_ARGS)
def _chunk_attention_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, part_out_ptr, part_lse_ptr,
    positions_ptr, cu_seqlens_ptr, k_cache_ptr, v_cache_ptr, page_table_ptr, prefix_lens_ptr,
    num_requests, num_tokens, block_size, split_len, scale_log2,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    stride_kc_page, stride_kc_slot, stride_kc_head, stride_vc_page, stride_vc_slot, stride_vc_head,
    stride_table,
    PAGE_SIZE: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    MIN_SPLIT: tl.constexpr, ALIGN: tl.constexpr, PAGE_TILES: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    tile = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    num_q_heads = tl.num_programs(1) * GROUP
    request, first_tile = _locate_tile(cu_seqlens_ptr, tile, num_requests, BLOCK_Q)
    row_start = tl.load(cu_seqlens_ptr + request)
    row_end = tl.load(cu_seqlens_ptr + request + 1)
    tile_start = row_start + (tile - first_tile) * BLOCK_Q
    if tile_start >= row_end:
        return

    m_offs = tl.arange(0, BLOCK_M)
    n_offs = tl.arange(0, BLOCK_N)
    d_offs = tl.arange(0, HEAD_DIM)
    tokens = tile_start + m_offs // GROUP
    heads = kv_head * GROUP + m_offs % GROUP
    rows_valid = (m_offs < BLOCK_Q * GROUP) & (tokens < row_end)
    prefix_len = tl.load(prefix_lens_ptr + request)
    if split_len == 0:  # this request's prefix in equal parts of whole ALIGN blocks, each >= MIN_SPLIT
        parts = tl.maximum(tl.minimum(tl.num_programs(2), (prefix_len + MIN_SPLIT - 1) // MIN_SPLIT), 1)
        split_len = ((prefix_len + parts - 1) // parts + ALIGN - 1) // ALIGN * ALIGN
    prefix_start = split * split_len
    prefix_end = tl.minimum(prefix_start + split_len, prefix_len)
    part_rows = (split * num_tokens + tokens) * num_q_heads + heads
    if SPLIT:
        if (split > 0) & (prefix_start >= prefix_len):
            tl.store(part_lse_ptr + part_rows, tl.full([BLOCK_M], float("-inf"), tl.float32), mask=rows_valid)
            return

    q = tl.load(q_ptr + tokens[:, None] * stride_qt + heads[:, None] * stride_qh + d_offs[None, :],
                mask=rows_valid[:, None], other=0.0)  # fmt: skip
    if UPCAST:
        q = q.to(tl.float32)
    query_blocks = tl.load(positions_ptr + tokens, mask=rows_valid, other=0) // block_size
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    row_max = tl.full([BLOCK_M], -1e30, tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)

    table_row = page_table_ptr + request * stride_table
    for n_start in range(prefix_start, prefix_end, BLOCK_N):
        n = n_start + n_offs
        in_split = n < prefix_end
        if PAGE_TILES:  # the tile is whole pages or inside one page: one table read per page, not per token
            pages_per_tile: tl.constexpr = (BLOCK_N + PAGE_SIZE - 1) // PAGE_SIZE
            page_ids = n_start // PAGE_SIZE + tl.arange(0, pages_per_tile)
            pages = tl.load(table_row + page_ids, mask=page_ids * PAGE_SIZE < prefix_end, other=0)
            page = tl.reshape(tl.broadcast_to(pages[:, None], [pages_per_tile, BLOCK_N // pages_per_tile]), [BLOCK_N])
            page = page.to(tl.int64)
        else:
            page = tl.load(table_row + n // PAGE_SIZE, mask=in_split, other=0).to(tl.int64)
        slot = n % PAGE_SIZE
        k_rows = page * stride_kc_page + slot * stride_kc_slot + kv_head * stride_kc_head
        v_rows = page * stride_vc_page + slot * stride_vc_slot + kv_head * stride_vc_head
        k = tl.load(k_cache_ptr + k_rows[:, None] + d_offs[None, :], mask=in_split[:, None], other=0.0)
        v = tl.load(v_cache_ptr + v_rows[:, None] + d_offs[None, :], mask=in_split[:, None], other=0.0)
        acc, row_max, row_sum = _attend(acc, row_max, row_sum, q, k, v, in_split[None, :], scale_log2, UPCAST, PRECISION)

    if split == 0:  # the window in BLOCK_W-row tiles: sized to the q tile, so a decode window is one small tile
        w_offs = tl.arange(0, BLOCK_W)
        for j_start in range(row_start, row_end, BLOCK_W):
            j = j_start + w_offs
            in_window = j < row_end
            k = tl.load(k_ptr + j[:, None] * stride_kt + kv_head * stride_kh + d_offs[None, :],
                        mask=in_window[:, None], other=0.0)  # fmt: skip
            v = tl.load(v_ptr + j[:, None] * stride_vt + kv_head * stride_vh + d_offs[None, :],
                        mask=in_window[:, None], other=0.0)  # fmt: skip
            key_blocks = tl.load(positions_ptr + j, mask=in_window, other=0) // block_size
            visible = in_window[None, :] & (key_blocks[None, :] <= query_blocks[:, None])
            acc, row_max, row_sum = _attend(acc, row_max, row_sum, q, k, v, visible, scale_log2, UPCAST, PRECISION)

    row_sum = tl.where(row_sum > 0, row_sum, 1.0)  # padded rows saw nothing and are not stored
    out = acc / row_sum[:, None]
    if SPLIT:
        tl.store(part_lse_ptr + part_rows, row_max + tl.log2(row_sum), mask=rows_valid)
        tl.store(part_out_ptr + part_rows[:, None] * HEAD_DIM + d_offs[None, :], out, mask=rows_valid[:, None])
    else:
        out_ptrs = out_ptr + tokens[:, None] * stride_ot + heads[:, None] * stride_oh + d_offs[None, :]
        tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=rows_valid[:, None])


@triton.jit(do_not_specialize=["num_tokens", "num_splits"])
def _merge_splits_kernel(
    part_out_ptr, part_lse_ptr, out_ptr, num_tokens, num_splits, stride_ot, stride_oh,
    HEAD_DIM: tl.constexpr, SPLITS_POW2: tl.constexpr,
):  # fmt: skip
    """out[t, h] = sum_s 2^(lse_s - lse) * part_out[s, t, h]; empty splits carry lse = -inf."""
    token = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_POW2)
    d_offs = tl.arange(0, HEAD_DIM)
    rows = (splits * num_tokens + token) * tl.num_programs(1) + head
    lse = tl.load(part_lse_ptr + rows, mask=splits < num_splits, other=float("-inf"))
    weights = tl.exp2(lse - tl.max(lse, 0))
    parts = tl.load(part_out_ptr + rows[:, None] * HEAD_DIM + d_offs[None, :], mask=(weights > 0)[:, None], other=0.0)
    out = tl.sum(parts * weights[:, None], 0) / tl.sum(weights, 0)
    tl.store(out_ptr + token * stride_ot + head * stride_oh + d_offs, out.to(out_ptr.dtype.element_ty))


@dataclass(frozen=True)
class LaunchPlan:
    block_q: int  # query rows per program (times GROUP heads = BLOCK_M)
    num_tiles: int  # grid axis 0: request i's tiles start at cu_seqlens[i] // block_q + i
    split_len: int  # prefix tokens per program; 0: each request's prefix in num_splits equal parts
    num_splits: int  # grid axis 2
    block_m: int  # query rows x group heads per program: the M of tl.dot and a key of the launch configs


def q_tile_rows(window: int, group: int) -> int:
    """Query rows per program for windows of up to ``window`` positions: ``window`` rounded up to a power of two,
    within 16 <= rows x GROUP <= MAX_BLOCK_M. A longer window takes several tiles, and each reads its prefix."""
    block_q = max(triton.next_power_of_2(window), triton.next_power_of_2(triton.cdiv(16, group)))
    while block_q > 1 and triton.next_power_of_2(block_q * group) > MAX_BLOCK_M:
        block_q //= 2
    return block_q


def page_tiles(page_size: int, split_len: int) -> bool:
    """Whether every prefix tile (BLOCK_N <= SPLIT_ALIGN tokens, starting at a multiple of BLOCK_N inside its split)
    covers whole pages or lies inside one, so the kernel reads the page table once per page: true for power-of-two
    pages when splits start on page boundaries (default splits are whole SPLIT_ALIGN blocks)."""
    power_of_two = page_size & (page_size - 1) == 0
    return power_of_two and (split_len or SPLIT_ALIGN) % min(page_size, SPLIT_ALIGN) == 0


def plan_launch(
    num_tokens: int, num_requests: int, group: int, num_kv_heads: int, max_context: int, device: torch.device,
    split_len: int | None = None, max_window: int | None = None,
) -> LaunchPlan:  # fmt: skip
    """Shapes only (no device sync): q tiles cover ``max_window`` (default: the mean window), see ``q_tile_rows``;
    the prefix is split until about two programs run per multiprocessor."""
    block_q = q_tile_rows(max_window or triton.cdiv(num_tokens, num_requests), group)
    tiles, block_m = num_tokens // block_q + num_requests, triton.next_power_of_2(block_q * group)
    if split_len is None:  # each request splits its own prefix (the graphs' max_context is the model's)
        programs = num_requests * num_kv_heads * triton.cdiv(num_tokens, num_requests * block_q)
        splits = min(triton.cdiv(2 * multiprocessor_count(device), programs), max_context // MIN_SPLIT_LEN)
        return LaunchPlan(block_q, tiles, 0, max(splits, 1), block_m)
    return LaunchPlan(block_q, tiles, split_len, max(1, triton.cdiv(max_context, split_len)), block_m)


def chunk_attention(
    q: Tensor, k: Tensor, v: Tensor, positions: Tensor, cu_seqlens: Tensor, k_cache: Tensor, v_cache: Tensor,
    page_table: Tensor, prefix_lens: Tensor, block_size: int, scale: float,
    *, split_len: int | None = None, out: Tensor | None = None, max_window: int | None = None,
    config: LaunchConfig | None = None,
) -> Tensor:  # fmt: skip
    """Block-causal attention of a varlen batch of windows over their paged prefixes; see the module doc.

    `split_len` (prefix tokens per program) defaults to a choice from the batch shape and the
    device; `out` is an optional preallocated [T, Hq, D] result (CUDA graphs reuse one); `max_window` sizes the
    q tiles (any value is correct: longer windows take several tiles), default the mean window; `config` forces one
    launch config (kernels/tune_attention.py), default `launch_config`'s, else the autotuner's.
    """
    num_tokens, num_q_heads, head_dim = q.shape
    num_kv_heads = k.shape[1]
    group = num_q_heads // num_kv_heads
    num_requests = cu_seqlens.numel() - 1
    assert num_q_heads == group * num_kv_heads and head_dim == triton.next_power_of_2(head_dim) >= 16
    assert q.stride(2) == k.stride(2) == v.stride(2) == k_cache.stride(3) == v_cache.stride(3) == 1
    assert page_table.stride(1) == 1
    out = torch.empty_like(q) if out is None else out
    if num_tokens == 0:
        return out
    page_size = k_cache.shape[1]
    max_context = page_table.shape[1] * page_size
    plan = plan_launch(num_tokens, num_requests, group, num_kv_heads, max_context, q.device, split_len, max_window)
    num_splits = plan.num_splits
    part_out, part_lse = q, q  # placeholders: without splits the kernel writes `out` directly
    if num_splits > 1:
        part_out = torch.empty((num_splits, num_tokens, num_q_heads, head_dim), dtype=torch.float32, device=q.device)
        part_lse = torch.empty((num_splits, num_tokens, num_q_heads), dtype=torch.float32, device=q.device)
    config = config or launch_config(head_dim, plan.block_m, num_splits > 1, q.device)
    kernel, tuning = _chunk_attention_kernel, {}
    if config is not None:
        kernel = _chunk_attention_kernel.fn
        tuning = dict(BLOCK_N=config.block_n, num_warps=config.warps, num_stages=config.stages)
    kernel[(plan.num_tiles, num_kv_heads, num_splits)](
        q, k, v, out, part_out, part_lse, positions, cu_seqlens, k_cache, v_cache, page_table, prefix_lens,
        num_requests, num_tokens, block_size, plan.split_len, scale * math.log2(math.e),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        page_table.stride(0),
        PAGE_SIZE=page_size, GROUP=group, HEAD_DIM=head_dim, BLOCK_Q=plan.block_q, BLOCK_M=plan.block_m,
        SPLIT=num_splits > 1, UPCAST=interpreting(), PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        MIN_SPLIT=MIN_SPLIT_LEN, ALIGN=SPLIT_ALIGN, PAGE_TILES=page_tiles(page_size, plan.split_len),
        BLOCK_W=max(16, plan.block_q), **tuning,
    )  # fmt: skip
    if num_splits > 1:
        _merge_splits_kernel[(num_tokens, num_q_heads)](
            part_out, part_lse, out, num_tokens, num_splits, out.stride(0), out.stride(1),
            HEAD_DIM=head_dim, SPLITS_POW2=triton.next_power_of_2(num_splits),
        )  # fmt: skip
    return out


@triton.jit
def _store_kv_kernel(
    k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_mapping_ptr, page_size,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_kc_page, stride_kc_slot, stride_kc_head, stride_vc_page, stride_vc_slot, stride_vc_head,
    NUM_HEADS: tl.constexpr, HEADS_POW2: tl.constexpr, HEAD_DIM: tl.constexpr,
):  # fmt: skip
    token = tl.program_id(0)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    if slot >= 0:
        page = slot // page_size
        offset = slot % page_size
        heads = tl.arange(0, HEADS_POW2)[:, None]
        d_offs = tl.arange(0, HEAD_DIM)[None, :]
        mask = heads < NUM_HEADS
        k = tl.load(k_ptr + token * stride_kt + heads * stride_kh + d_offs, mask=mask)
        v = tl.load(v_ptr + token * stride_vt + heads * stride_vh + d_offs, mask=mask)
        k_dest = k_cache_ptr + page * stride_kc_page + offset * stride_kc_slot + heads * stride_kc_head + d_offs
        v_dest = v_cache_ptr + page * stride_vc_page + offset * stride_vc_slot + heads * stride_vc_head + d_offs
        tl.store(k_dest, k, mask=mask)
        tl.store(v_dest, v, mask=mask)


def store_kv(k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, slot_mapping: Tensor) -> None:
    """Write row t of k/v [T, Hkv, D] to cache slot slot_mapping[t] (= page * page_size + offset); skip -1."""
    num_tokens, num_heads, head_dim = k.shape
    assert head_dim == triton.next_power_of_2(head_dim)
    assert k.stride(2) == v.stride(2) == k_cache.stride(3) == v_cache.stride(3) == 1
    if num_tokens == 0:
        return
    _store_kv_kernel[(num_tokens,)](
        k, v, k_cache, v_cache, slot_mapping, k_cache.shape[1],
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        NUM_HEADS=num_heads, HEADS_POW2=triton.next_power_of_2(num_heads), HEAD_DIM=head_dim,
    )  # fmt: skip
