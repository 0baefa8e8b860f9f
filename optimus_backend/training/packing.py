"""Packs tokenized problems into fixed rows, and draws each step's noisy batch.

Each problem is one segment of a row; nothing attends across segments. A causal (AR) segment is the
problem's tokens at positions 0..L-1. A block-diffusion segment is BD3-style: a clean copy of the blocks
before the problem's last response block, then a noisy copy of every block that holds response slots
(answer, EOS, then PAD up to the block's end) at the same positions. Each step masks response slots of
each noisy block at a random ratio and keeps a window of its first w MASKs (w drawn from WINDOWS): the
block's positions up to the w-th MASK are fed and the MASKs among them are scored, the positions after
it are invisible, exactly as a decoder feeding a window of w MASKs sees the block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

WINDOWS = (1, 2, 4, 8, 16, 32, 32, 32)  # visible MASKs per noisy block, drawn uniformly


@dataclass
class Packed:
    """Row-major [R, T] arrays of the whole training set (row padding has doc -1)."""

    ids: Tensor  # real token ids
    pos: Tensor  # position inside the problem
    doc: Tensor  # problem index, -1 for row padding
    noisy: Tensor  # bool: a noisy-copy slot (block diffusion)
    target: Tensor  # bool: BD, a response slot of a noisy copy; AR, a slot whose next token is response
    labels: Tensor  # what the slot predicts where target (BD: its own token; AR: the next one)

    def to(self, device: torch.device | str) -> "Packed":
        return Packed(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


@dataclass
class Batch:
    """One step: inputs with MASKs, the attention metadata of ``allowed`` and labels (-100 = unscored)."""

    inputs: Tensor
    pos: Tensor
    doc: Tensor
    noisy: Tensor
    blk: Tensor
    visible: Tensor
    labels: Tensor


def _ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """concatenate(arange(n) for n in lengths), vectorized."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(lengths.sum()) - np.repeat(starts, lengths)


def _assign_rows(lengths: np.ndarray, row_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy in-order packing: (row, start) of each segment."""
    if lengths.max() > row_len:
        raise ValueError(f"row_len: a segment of {lengths.max()} tokens does not fit in rows of {row_len}")
    rows, starts = np.empty(len(lengths), np.int64), np.empty(len(lengths), np.int64)
    row = used = 0
    for i, length in enumerate(lengths.tolist()):
        if used + length > row_len:
            row, used = row + 1, 0
        rows[i], starts[i] = row, used
        used += length
    return rows, starts


def pack(tokens: np.ndarray, prompt_len: np.ndarray, length: np.ndarray, kind: str, block: int,
         row_len: int, pad_id: int, seed: int = 0) -> Packed:
    """Lays every problem (flat ``tokens``, per-problem lengths) out as a "bd" or "ar" segment, in a
    seeded random order, in rows of ``row_len`` tokens."""
    if kind == "bd" and row_len % block:
        raise ValueError(f"row_len: {row_len} is not a multiple of the block size {block}")
    tokens, length = tokens.astype(np.int64), length.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(length))
    offset, prompt, length = (np.cumsum(length) - length)[order], prompt_len[order].astype(np.int64), length[order]
    if kind == "bd":
        first, last = prompt // block, (length - 1) // block
        clean = last * block
        seg = clean + (last - first + 1) * block
    else:
        first, clean, seg = np.zeros_like(length), length, length
    rows, starts = _assign_rows(seg, row_len)
    sample = np.repeat(np.arange(len(seg)), seg)
    within = _ragged_arange(seg)
    noisy = within >= clean[sample]
    pos = np.where(noisy, first[sample] * block + within - clean[sample], within)
    end, base = length[sample], offset[sample]
    ids = np.where(pos < end, tokens[base + np.minimum(pos, end - 1)], pad_id).astype(np.int64)
    if kind == "bd":
        target = noisy & (pos >= prompt[sample])
        labels = ids
    else:
        target = (pos >= prompt[sample] - 1) & (pos < end - 1)
        labels = np.where(target, tokens[base + np.minimum(pos + 1, end - 1)], -100).astype(np.int64)
    shape = (int(rows[-1]) + 1, row_len)
    flat = rows[sample] * row_len + starts[sample] + within

    def scatter(values: np.ndarray, fill, dtype) -> Tensor:
        out = np.full(shape[0] * shape[1], fill, dtype=dtype)
        out[flat] = values
        return torch.from_numpy(out.reshape(shape))

    return Packed(ids=scatter(ids, pad_id, np.int64), pos=scatter(pos, 0, np.int32),
                  doc=scatter(sample, -1, np.int32), noisy=scatter(noisy, False, np.bool_),
                  target=scatter(target, False, np.bool_), labels=scatter(labels, -100, np.int64))


def draw(packed: Packed, rows: Tensor, kind: str, block: int, mask_id: int | None,
         generator: torch.Generator | None = None) -> Batch:
    """The batch of ``rows``: for "bd", masks each noisy block at a random ratio and applies a window."""
    ids, pos, doc, noisy, target, labels = (getattr(packed, f)[rows] for f in
                                            ("ids", "pos", "doc", "noisy", "target", "labels"))
    if kind == "ar":
        return Batch(ids, pos, doc, noisy, pos, torch.ones_like(noisy), torch.where(target, labels, -100))
    n, t = ids.shape
    grid = (n, t // block, block)
    opts = dict(device=ids.device, generator=generator)
    ratio = torch.rand(n, t // block, 1, **opts)
    masked = target.view(grid) & (torch.rand(grid, **opts) < ratio)
    windows = torch.tensor(WINDOWS, device=ids.device)
    window = windows[torch.randint(len(WINDOWS), (n, t // block, 1), **opts)]
    before = masked.cumsum(-1) - masked.long()  # MASKs strictly before each slot of its block
    in_window = (before < window).view(n, t)
    masked = masked.view(n, t)
    scored = masked & in_window
    return Batch(inputs=torch.where(masked, mask_id, ids), pos=pos, doc=doc, noisy=noisy,
                 blk=torch.div(pos, block, rounding_mode="floor"), visible=~noisy | in_window,
                 labels=torch.where(scored, labels, -100))


def allowed(q_doc: Tensor, k_doc: Tensor, q_noisy: Tensor, k_noisy: Tensor, q_blk: Tensor, k_blk: Tensor,
            k_visible: Tensor) -> Tensor:
    """May query q attend key k? Same problem, and: a clean key of an earlier block, a clean key of its
    own block for a clean query, or a visible noisy key of its own block for a noisy query."""
    clean_key = ~k_noisy & ((k_blk < q_blk) | (~q_noisy & (k_blk == q_blk)))
    own_noisy = q_noisy & k_noisy & (k_blk == q_blk) & k_visible
    return (q_doc == k_doc) & (clean_key | own_noisy)


def dense_mask(batch: Batch) -> Tensor:
    """``allowed`` as a bool [N, T, T] mask (for CPU training and tests)."""
    q = lambda x: x.unsqueeze(2)  # noqa: E731
    k = lambda x: x.unsqueeze(1)  # noqa: E731
    return allowed(q(batch.doc), k(batch.doc), q(batch.noisy), k(batch.noisy), q(batch.blk), k(batch.blk),
                   k(batch.visible))
