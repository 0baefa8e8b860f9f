"""The step runner: packs every running request's window into one varlen forward over the paged KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kernels import Kernels

from .cuda_graphs import GraphedForward
from .decoding import DecodingRule, choose_tokens
from .kv_cache import PagedKVCache
from .model import Transformer
from .request import Request, StepPlan


@dataclass
class StepBatch:
    """Attention metadata of one packed step (the window rows of all requests, concatenated)."""

    input_ids: Tensor  # [T]
    positions: Tensor  # [T] int32
    cu_seqlens: Tensor  # [b + 1] int32
    prefix_lens: Tensor  # [b] int32
    page_table: Tensor  # [b, max_pages] int32
    slot_mapping: Tensor  # [T] int64, -1 where the KV is not written this step
    scored_rows: list[list[int]]  # per request, rows (into T) whose logits score its targets


class StepRunner:
    """Runs one engine step: pack -> forward (chunk attention + KV writes) -> confidences -> commits."""

    def __init__(self, model: Transformer, kv: PagedKVCache, kernels: Kernels, rule: DecodingRule,
                 graph_limits: tuple[int, int] | None = None):
        """``graph_limits`` (max requests, max tokens per step) turns on CUDA graphs for steps that fit."""
        self.model = model
        self.kv = kv
        self.kernels = kernels
        self.rule = rule
        self.device = next(model.parameters()).device
        self.scale = model.config.head_dim ** -0.5
        self.generators: dict[str, torch.Generator] = {}
        self.graphs = None
        if graph_limits is not None:
            max_pages = kv.pages_needed(model.config.max_position_embeddings)
            self.graphs = GraphedForward(model, *graph_limits, max_pages,
                                         lambda step: self.attention(step, model.config.block_size), self.pack([]))

    def pack(self, batch: list[tuple[Request, StepPlan]]) -> StepBatch:
        """Concatenates the windows; positions, KV slots and page tables are computed for the whole batch at once
        (numpy), since per-token Python here was a large part of a step's host time at large batch x chunk."""
        ids, scored_rows, lengths, fed_starts, cache_ends = [], [], [], [], []
        base = 0
        for request, plan in batch:
            self.kv.ensure(request.request_id, plan.fed_end)
            ids += request.ids[plan.fed_start:plan.fed_end]
            scored_rows.append([base + p - request.shift - plan.fed_start for p in plan.scored])
            lengths.append(plan.fed_len)
            fed_starts.append(plan.fed_start)
            cache_ends.append(plan.cache_end)
            base += plan.fed_len
        lengths_np = np.array(lengths, dtype=np.int64)
        cu_seqlens = np.concatenate([[0], np.cumsum(lengths_np)])
        owner = np.repeat(np.arange(len(batch)), lengths_np)  # the request of each fed token
        positions = np.arange(base) - cu_seqlens[:-1][owner] + np.array(fed_starts, dtype=np.int64)[owner]
        page_table = self.kv.page_table([r.request_id for r, _ in batch])
        page_size = self.kv.page_size
        slots = page_table[owner, positions // page_size].astype(np.int64) * page_size + positions % page_size
        slots[positions >= np.array(cache_ends, dtype=np.int64)[owner]] = -1  # fed, but its KV is not final yet
        device = self.device

        def to_device(array: np.ndarray, dtype: torch.dtype) -> Tensor:
            return torch.from_numpy(array).to(device=device, dtype=dtype)

        return StepBatch(
            input_ids=torch.tensor(ids, dtype=torch.long, device=device),
            positions=to_device(positions, torch.int32),
            cu_seqlens=to_device(cu_seqlens, torch.int32),
            prefix_lens=torch.tensor([r.cached_len for r, _ in batch], dtype=torch.int32, device=device),
            page_table=to_device(page_table, torch.int32),
            slot_mapping=to_device(slots, torch.long),
            scored_rows=scored_rows,
        )

    def attention(self, step: StepBatch, block_size: int):
        """The AttentionFn of this step: chunk attention over the pages, then the KV writes."""

        def attend(layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            out = self.kernels.chunk_attention(
                q[0], k[0], v[0], step.positions, step.cu_seqlens, self.kv.k[layer], self.kv.v[layer],
                step.page_table, step.prefix_lens, block_size, self.scale)
            self.kernels.store_kv(k[0], v[0], self.kv.k[layer], self.kv.v[layer], step.slot_mapping)
            return out.unsqueeze(0)

        return attend

    def padded_tokens(self, requests: int, tokens: np.ndarray) -> np.ndarray:
        """Tokens steps of ``requests`` requests and each of ``tokens`` tokens really run: their CUDA graph
        bucket's, or their own when they run eagerly."""
        return tokens if self.graphs is None else self.graphs.buckets.padded(requests, tokens)

    @torch.no_grad()
    def run(self, batch: list[tuple[Request, StepPlan]]) -> list[dict[int, int]]:
        """Commits per request ({position: token}) for this step's plans."""
        step = self.pack(batch)
        key = self.graphs.bucket(step) if self.graphs is not None else None
        if key is not None:
            hidden = self.graphs(step, key)
        else:
            attend = self.attention(step, self.model.config.block_size)
            hidden = self.model(step.input_ids.unsqueeze(0), step.positions.unsqueeze(0).long(), attend)[0]
        all_rows = [row for rows in step.scored_rows for row in rows]
        if not all_rows:
            return [{} for _ in batch]
        greedy_conf, greedy_token = self.kernels.lm_head_confidence(hidden[all_rows], self.model.lm_head.weight)
        greedy_conf, greedy_token = greedy_conf.tolist(), greedy_token.tolist()
        commits, offset = [], 0
        for (request, plan), rows in zip(batch, step.scored_rows):
            params = request.params
            if params.temperature == 0:
                tokens = greedy_token[offset:offset + len(rows)]
                confidence = greedy_conf[offset:offset + len(rows)]
            else:
                token_t, conf_t = choose_tokens(self.model.logits(hidden[rows]), params, self.generator(request))
                tokens, confidence = token_t.tolist(), conf_t.tolist()
            offset += len(rows)
            chosen = self.rule.select(confidence, params.threshold)
            commits.append({plan.scored[i]: int(tokens[i]) for i in chosen})
        return commits

    def generator(self, request: Request) -> torch.Generator | None:
        if request.params.seed is None:
            return None
        if request.request_id not in self.generators:
            self.generators[request.request_id] = torch.Generator().manual_seed(request.params.seed)
        return self.generators[request.request_id]

    def forget(self, request_id: str) -> None:
        self.generators.pop(request_id, None)
