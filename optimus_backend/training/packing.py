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
    """Lays every problem out as a segment ("bd" or "ar"), in a seeded random order, rows of row_len."""
    if kind == "bd" and row_len % block:
        raise ValueError(f"row_len: {row_len} is not a multiple of the block size {block}")
    order = np.random.default_rng(seed).permutation(len(length))
    prompt_len, length = prompt_len[order].astype(np.int64), length[order].astype(np.int64)
    offset = (np.cumsum(length) - length)
    offset = np.concatenate([[0], np.cumsum(length.astype(np.int64))[:-1]])[np.argsort(order)][order]
    offset = (np.cumsum(np.asarray(length_orig := None or 0)) if False else offset)
    raise NotImplementedError
