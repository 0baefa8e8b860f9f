"""Triton confidence: max softmax probability and argmax per row, online over the vocabulary.

Each program streams one chunk of one row of logits once (running max, running sum of exponentials
rescaled to it, first index of the max) and never forms a [R, V] probability tensor. Few rows split
the vocabulary into chunks whose partials `_merge_chunks_kernel` combines.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from kernels.launch import multiprocessor_count

MAX_BLOCK_V = 4096
LOG2E = tl.constexpr(1.4426950408889634)
INT32_MAX = tl.constexpr(2**31 - 1)


@triton.jit
def _max_softmax_kernel(
    logits_ptr, stride_row, vocab, chunk_len, num_chunks,
    confidence_ptr, token_ptr, part_max_ptr, part_sum_ptr, part_arg_ptr,
    BLOCK_V: tl.constexpr, FINAL: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    start = chunk * chunk_len
    end = tl.minimum(start + chunk_len, vocab)
    offsets = tl.arange(0, BLOCK_V)
    row_ptr = logits_ptr + row.to(tl.int64) * stride_row
    best = tl.full([], -1e30, tl.float32)
    total = tl.zeros([], dtype=tl.float32)  # sum of exp(logit - best)
    arg = start
    for block_start in range(start, end, BLOCK_V):
        columns = block_start + offsets
        x = tl.load(row_ptr + columns, mask=columns < vocab, other=float("-inf")).to(tl.float32)
        block_max = tl.max(x, 0)
        new_best = tl.maximum(best, block_max)
        total = total * tl.exp2((best - new_best) * LOG2E) + tl.sum(tl.exp2((x - new_best) * LOG2E), 0)
        arg = tl.where(block_max > best, block_start + tl.argmax(x, 0), arg)
        best = new_best
    if FINAL:
        tl.store(confidence_ptr + row, 1.0 / total)
        tl.store(token_ptr + row, arg.to(tl.int64))
    else:
        part = row * num_chunks + chunk
        tl.store(part_max_ptr + part, best)
        tl.store(part_sum_ptr + part, total)
        tl.store(part_arg_ptr + part, arg)


@triton.jit
def _merge_chunks_kernel(
    part_max_ptr, part_sum_ptr, part_arg_ptr, confidence_ptr, token_ptr, num_chunks,
    CHUNKS_POW2: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    chunks = tl.arange(0, CHUNKS_POW2)
    valid = chunks < num_chunks
    parts = row * num_chunks + chunks
    maxima = tl.load(part_max_ptr + parts, mask=valid, other=float("-inf"))
    sums = tl.load(part_sum_ptr + parts, mask=valid, other=0.0)
    args = tl.load(part_arg_ptr + parts, mask=valid, other=INT32_MAX)
    best = tl.max(maxima, 0)
    total = tl.sum(sums * tl.exp2((maxima - best) * LOG2E), 0)
    tl.store(confidence_ptr + row, 1.0 / total)
    tl.store(token_ptr + row, tl.min(tl.where(maxima == best, args, INT32_MAX), 0).to(tl.int64))


def vocabulary_block(vocab: int) -> int:
    """Columns one program reads at a time."""
    return min(MAX_BLOCK_V, triton.next_power_of_2(vocab))


def vocabulary_chunks(rows: int, vocab: int, device: torch.device, num_chunks: int | None = None) -> tuple[int, int]:
    """(columns per chunk, chunks) of each row's vocabulary; by default enough programs for about four per
    multiprocessor."""
    block_v = vocabulary_block(vocab)
    if num_chunks is None:
        num_chunks = min(triton.cdiv(4 * multiprocessor_count(device), rows), triton.cdiv(vocab, 4 * block_v))
    chunk_len = triton.cdiv(triton.cdiv(vocab, max(num_chunks, 1)), block_v) * block_v
    return chunk_len, triton.cdiv(vocab, chunk_len)


def compile_variants(vocab: int, device: torch.device) -> list[int]:
    """One row count for every differently compiled launch of `max_softmax` over `vocab` columns: the chunk count
    decides whether partials are merged and the merge's power-of-two width, and Triton specializes integer
    arguments equal to 1 or divisible by 16. The confidence runs outside the CUDA graphs, on however many rows a
    step scores, so the engine runs these once at start: a compile inside a step stalls every running request."""
    variants: dict[tuple, int] = {}
    for rows in range(1, 4 * multiprocessor_count(device) + 2):  # past that, always one chunk
        chunk_len, chunks = vocabulary_chunks(rows, vocab, device)
        key = (chunks == 1, chunks % 16 == 0, triton.next_power_of_2(chunks), chunk_len % 16 == 0, chunk_len == 1)
        variants.setdefault(key, rows)
    return list(variants.values())


def max_softmax(logits: Tensor, *, num_chunks: int | None = None) -> tuple[Tensor, Tensor]:
    """(max softmax probability fp32 [R], argmax int64 [R], first index on ties) of logits [R, V].

    `num_chunks` (vocabulary splits per row) defaults to enough programs for about four per
    multiprocessor.
    """
    rows, vocab = logits.shape
    assert logits.stride(1) == 1
    confidence = torch.empty(rows, dtype=torch.float32, device=logits.device)
    token = torch.empty(rows, dtype=torch.int64, device=logits.device)
    if rows == 0:
        return confidence, token
    block_v = vocabulary_block(vocab)
    chunk_len, num_chunks = vocabulary_chunks(rows, vocab, logits.device, num_chunks)
    part_max = part_sum = part_arg = confidence  # placeholders when one chunk writes the result
    if num_chunks > 1:
        part_max = torch.empty(rows * num_chunks, dtype=torch.float32, device=logits.device)
        part_sum = torch.empty(rows * num_chunks, dtype=torch.float32, device=logits.device)
        part_arg = torch.empty(rows * num_chunks, dtype=torch.int32, device=logits.device)
    _max_softmax_kernel[(rows, num_chunks)](
        logits, logits.stride(0), vocab, chunk_len, num_chunks, confidence, token, part_max, part_sum, part_arg,
        BLOCK_V=block_v, FINAL=num_chunks == 1, num_warps=8 if block_v >= 2048 else 4,
    )  # fmt: skip
    if num_chunks > 1:
        _merge_chunks_kernel[(rows,)](
            part_max, part_sum, part_arg, confidence, token, num_chunks, CHUNKS_POW2=triton.next_power_of_2(num_chunks)
        )
    return confidence, token


def lm_head_confidence(hidden: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """max_softmax of hidden [R, D] @ weight [V, D]^T. The matmul stays cuBLAS's: the logits'
    round trip costs a few percent of the weight read (docs/KERNELS.md), less than a Triton GEMM loses."""
    return max_softmax(hidden @ weight.t())
