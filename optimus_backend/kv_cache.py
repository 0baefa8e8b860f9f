"""Paged KV cache: a fixed pool of pages, per-request page tables, reservations so running requests never starve."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from kernels import page_pool

from .model import ModelConfig


class PagedKVCache:
    """Per layer ``k[layer], v[layer]: [num_pages, page_size, Hkv, D]``; position p of a request lives in
    page ``table[p // page_size]`` at offset ``p % page_size``.

    A request reserves the pages for its whole length when admitted (so it can never run out mid-flight)
    and takes them from the pool as it grows; finishing or aborting returns them.
    """

    def __init__(self, cfg: ModelConfig, num_pages: int, page_size: int, device: torch.device, dtype: torch.dtype):
        def pool() -> Tensor:
            return page_pool(num_pages, page_size, cfg.num_key_value_heads, cfg.head_dim, "token-major",
                             device=device, dtype=dtype).zero_()

        self.k = [pool() for _ in range(cfg.num_hidden_layers)]
        self.v = [pool() for _ in range(cfg.num_hidden_layers)]
        self.page_size = page_size
        self.num_pages = num_pages
        self.free_pages = list(range(num_pages - 1, -1, -1))
        self.tables: dict[str, list[int]] = {}
        self.reserved: dict[str, int] = {}

    @staticmethod
    def pages_for_budget(cfg: ModelConfig, budget_bytes: int, page_size: int, dtype: torch.dtype) -> int:
        page_bytes = 2 * cfg.num_hidden_layers * page_size * cfg.num_key_value_heads * cfg.head_dim * dtype.itemsize
        return max(1, budget_bytes // page_bytes)

    def pages_needed(self, positions: int) -> int:
        return math.ceil(positions / self.page_size)

    @property
    def pages_used(self) -> int:
        return self.num_pages - len(self.free_pages)

    def unreserved_pages(self) -> int:
        """Pages neither in use nor promised to a running request."""
        promised = sum(self.reserved[r] - len(self.tables[r]) for r in self.tables)
        return len(self.free_pages) - promised

    def can_admit(self, positions: int) -> bool:
        return self.pages_needed(positions) <= self.unreserved_pages()

    def admit(self, request_id: str, positions: int) -> None:
        if not self.can_admit(positions):
            raise RuntimeError(f"KV pool cannot hold request {request_id} ({positions} positions)")
        self.tables[request_id] = []
        self.reserved[request_id] = self.pages_needed(positions)

    def ensure(self, request_id: str, positions: int) -> None:
        """Grows the request's page table to cover ``positions`` positions (within its reservation)."""
        table = self.tables[request_id]
        needed = self.pages_needed(positions)
        assert needed <= self.reserved[request_id], "request grew past its reservation"
        while len(table) < needed:
            table.append(self.free_pages.pop())

    def release(self, request_id: str) -> None:
        self.free_pages.extend(reversed(self.tables.pop(request_id, [])))
        self.reserved.pop(request_id, None)

    def page_table(self, request_ids: list[str]) -> np.ndarray:
        """[b, max_pages] int32, padded with page 0 (never read past a request's prefix)."""
        tables = [self.tables[r] for r in request_ids]
        array = np.zeros((len(tables), max(1, max(map(len, tables), default=1))), dtype=np.int32)
        for row, table in zip(array, tables):
            row[:len(table)] = table
        return array
