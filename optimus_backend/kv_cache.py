"""Paged KV cache: a fixed pool of pages, per-request page tables; a request holds its pages from admission on."""

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

    A request takes the pages for its whole length when admitted, so it can never run out mid-flight, and its
    page table shows them as it grows; finishing or aborting returns them. Taken at once from the top of the free
    list, a request's pages are one run of neighbouring pages wherever the pool allows: requests that grew a page at
    a time in lockstep would interleave theirs, and the attention kernel read scattered pages 15-20% slower on an
    H100 at 128-256 requests of 8192 tokens (docs/KERNELS.md, "Where it stands").
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
        self.reserved: dict[str, int] = {}  # request -> pages it holds
        # Page tables as rows of one array: a request's row holds all its pages, table_lens how many it has grown
        # into (a step's table is one gather of those, zero past each request's length).
        self.rows: dict[str, int] = {}  # request -> its row
        self.free_rows: list[int] = []
        self.table_rows = np.zeros((0, 1), dtype=np.int32)
        self.table_lens = np.zeros(0, dtype=np.int64)

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
        """Pages no running request holds."""
        return len(self.free_pages)

    def can_admit(self, positions: int) -> bool:
        return self.pages_needed(positions) <= self.unreserved_pages()

    def admit(self, request_id: str, positions: int) -> None:
        if not self.can_admit(positions):
            raise RuntimeError(f"KV pool cannot hold request {request_id} ({positions} positions)")
        self.reserved[request_id] = pages = self.pages_needed(positions)
        if not self.free_rows:  # twice the rows
            count = len(self.table_lens)
            added = max(count, 8)
            self.table_rows = np.pad(self.table_rows, ((0, added), (0, 0)))
            self.table_lens = np.pad(self.table_lens, (0, added))
            self.free_rows = list(range(count + added - 1, count - 1, -1))
        if pages > self.table_rows.shape[1]:  # wide enough for this request's pages
            self.table_rows = np.pad(self.table_rows, ((0, 0), (0, pages - self.table_rows.shape[1])))
        row = self.rows[request_id] = self.free_rows.pop()
        self.table_rows[row, :pages] = [self.free_pages.pop() for _ in range(pages)]

    def pages(self, request_id: str) -> np.ndarray:
        """The request's pages so far, in position order (a view of its row)."""
        row = self.rows[request_id]
        return self.table_rows[row, :self.table_lens[row]]

    def ensure(self, request_id: str, positions: int) -> None:
        """Grows the request's page table to cover ``positions`` positions (within the pages it holds)."""
        row = self.rows[request_id]
        needed = self.pages_needed(positions)
        if needed > self.table_lens[row]:
            assert needed <= self.reserved[request_id], "request grew past its reservation"
            self.table_lens[row] = needed

    def release(self, request_id: str) -> None:
        if request_id not in self.rows:
            return
        row = self.rows.pop(request_id)
        held = self.table_rows[row, :self.reserved[request_id]]
        self.free_pages.extend(reversed(held.tolist()))  # popped again in this order: the run stays a run
        held[:] = 0
        self.table_lens[row] = 0
        self.free_rows.append(row)
        del self.reserved[request_id]

    def page_table(self, request_ids: list[str]) -> np.ndarray:
        """[b, max_pages] int32: each request's pages so far, then pages it holds but has not grown into, or 0 (the
        kernels never read past a request's prefix)."""
        rows = np.fromiter((self.rows[r] for r in request_ids), dtype=np.int64, count=len(request_ids))
        width = max(1, int(self.table_lens[rows].max())) if len(rows) else 1
        return self.table_rows[rows, :width]
