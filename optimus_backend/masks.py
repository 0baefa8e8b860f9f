"""Attention patterns as bool masks (True = may attend), built from absolute positions."""

from __future__ import annotations

import torch
from torch import Tensor


def block_causal(query_positions: Tensor, key_positions: Tensor, block_size: int) -> Tensor:
    """Query q may see key k iff block(k) <= block(q); block_size 1 is plain causal attention.

    Positions are 1-D (one sequence) or [N, T] (a batch); the mask is [T, S] or [N, T, S].
    """
    q_block = torch.div(query_positions, block_size, rounding_mode="floor")
    k_block = torch.div(key_positions, block_size, rounding_mode="floor")
    return k_block.unsqueeze(-2) <= q_block.unsqueeze(-1)


def causal(length: int, device: torch.device | str = "cpu") -> Tensor:
    positions = torch.arange(length, device=device)
    return block_causal(positions, positions, 1)
