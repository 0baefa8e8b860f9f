"""The step runner: packs every running request's window into one varlen forward over the paged KV cache."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

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
    scored_index: Tensor  # [R] int64 on the device: every request's scored rows, concatenated
    tile_window: int  # the most tokens one request feeds, at most a block (sizes the attention's q tiles)


@dataclass
class InFlight:
    """A launched step: its forward and greedy scores are queued on the device; ``StepRunner.collect`` waits."""

    batch: list[tuple[Request, StepPlan]]
    step: StepBatch
    hidden: Tensor  # [T, D] final hidden states
    scores: tuple[Tensor, Tensor] | None  # greedy (confidence, token) of the scored rows; None when none is scored


def aligned_starts(sizes: list[int]) -> list[int]:
    """Where each of these int64 fields starts in one upload buffer, each 16-byte aligned (an even offset), then the
    buffer's length. Triton compiles a kernel variant per pointer alignment, and a field that started misaligned
    in some steps only would compile one inside such a step."""
    return [0, *itertools.accumulate(size + size % 2 for size in sizes)]


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
        if self.device.type == "cuda":
            self.staging = torch.empty(0, dtype=torch.long, pin_memory=True)  # host side of upload()
            self.uploaded = torch.cuda.Event()
        self.graphs = None
        if graph_limits is not None:
            max_pages = kv.pages_needed(model.config.max_position_embeddings)
            self.graphs = GraphedForward(model, *graph_limits, max_pages,
                                         lambda step: self.attention(step, model.config.block_size), self.pack([]))
        if self.device.type == "cuda":
            self.compile_scores()

    def compile_scores(self) -> None:
        """Scores once every row count that launches a differently compiled confidence kernel: scoring runs
        outside the CUDA graphs on however many rows a step has, and a kernel compiled inside a step stalls every
        running request for the compile's time."""
        from kernels.confidence import compile_variants

        weight = self.model.lm_head.weight
        for rows in tqdm(compile_variants(weight.shape[0], self.device), desc="compiling confidence kernels"):
            self.kernels.lm_head_confidence(weight.new_zeros(rows, weight.shape[1]), weight)

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
        all_rows = np.array([row for rows in scored_rows for row in rows], dtype=np.int64)
        prefix_lens = np.array([r.cached_len for r, _ in batch], dtype=np.int64)
        fields = self.upload([np.array(ids, dtype=np.int64), slots, all_rows, positions, cu_seqlens, prefix_lens,
                              page_table.astype(np.int64)])
        input_ids, slot_mapping, scored_index, *int32_fields = fields
        positions_t, cu_seqlens_t, prefix_lens_t, page_table_t = (f.to(torch.int32) for f in int32_fields)
        return StepBatch(input_ids, positions_t, cu_seqlens_t, prefix_lens_t, page_table_t.view(page_table.shape),
                         slot_mapping, scored_rows, scored_index,
                         min(int(lengths_np.max(initial=0)), self.model.config.block_size))

    def upload(self, arrays: list[np.ndarray]) -> list[Tensor]:
        """The int64 arrays on the device, in one copy: each copy from pageable memory waits for the device, and
        a step has seven arrays. On CUDA the copy is from a pinned buffer kept across steps and returns at once.
        The same layout on every device (``aligned_starts``), so the CPU tests run the slicing the GPU uses."""
        sizes = [a.size for a in arrays]
        starts = aligned_starts(sizes)
        cuda = self.device.type == "cuda"
        if cuda:
            if self.staging.numel() < starts[-1]:
                self.staging = torch.empty(2 * starts[-1], dtype=torch.long, pin_memory=True)
            self.uploaded.synchronize()  # the previous copy out of the buffer is done (it is, after a collect)
            host = self.staging[:starts[-1]]
        else:
            host = torch.empty(starts[-1], dtype=torch.long)
        host_np = host.numpy()
        for array, start in zip(arrays, starts):
            host_np[start:start + array.size] = array.ravel()
        flat = host.to(self.device, non_blocking=True) if cuda else host
        if cuda:
            self.uploaded.record()
        return [flat[start:start + size] for start, size in zip(starts, sizes)]

    def attention(self, step: StepBatch, block_size: int):
        """The AttentionFn of this step: chunk attention over the pages, then the KV writes."""

        def attend(layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            out = self.kernels.chunk_attention(
                q[0], k[0], v[0], step.positions, step.cu_seqlens, self.kv.k[layer], self.kv.v[layer],
                step.page_table, step.prefix_lens, block_size, self.scale,
                max_window=step.tile_window or None)
            self.kernels.store_kv(k[0], v[0], self.kv.k[layer], self.kv.v[layer], step.slot_mapping)
            return out.unsqueeze(0)

        return attend

    def padded_tokens(self, requests: int, tokens: Sequence[int]) -> list[int]:
        """Tokens steps of ``requests`` requests and each of ``tokens`` tokens really run: their CUDA graph
        bucket's, or their own when they run eagerly."""
        return list(tokens) if self.graphs is None else self.graphs.buckets.padded(requests, tokens)

    @torch.no_grad()
    def run(self, batch: list[tuple[Request, StepPlan]]) -> list[dict[int, int]]:
        """Commits per request ({position: token}) for this step's plans."""
        return self.collect(self.launch(batch))

    @torch.no_grad()
    def launch(self, batch: list[tuple[Request, StepPlan]]) -> InFlight:
        """Queues the step on the device and returns at once on CUDA (on CPU the work is done here)."""
        step = self.pack(batch)
        hidden = self.forward(step)
        return InFlight(batch, step, hidden, self.score(step, hidden))

    def forward(self, step: StepBatch) -> Tensor:
        """Final hidden states [T, D] of the step's tokens: a CUDA graph replay when a bucket holds the step."""
        key = self.graphs.bucket(step) if self.graphs is not None else None
        if key is not None:
            return self.graphs(step, key)
        attend = self.attention(step, self.model.config.block_size)
        return self.model(step.input_ids.unsqueeze(0), step.positions.unsqueeze(0).long(), attend)[0]

    def score(self, step: StepBatch, hidden: Tensor) -> tuple[Tensor, Tensor] | None:
        """Greedy (confidence, token) of every scored row, from the LM head; None when no row is scored."""
        if not step.scored_index.numel():
            return None
        return self.kernels.lm_head_confidence(hidden[step.scored_index], self.model.lm_head.weight)

    @torch.no_grad()
    def collect(self, flight: InFlight) -> list[dict[int, int]]:
        """Waits for the step and lets the decoding rule pick each request's commits."""
        if flight.scores is None:
            return [{} for _ in flight.batch]
        greedy_conf, greedy_token = flight.scores
        greedy_conf, greedy_token = torch.stack((greedy_conf.double(), greedy_token.double())).tolist()  # one wait
        commits, offset = [], 0
        for (request, plan), rows in zip(flight.batch, flight.step.scored_rows):
            params = request.params
            if params.temperature == 0:
                tokens = greedy_token[offset:offset + len(rows)]
                confidence = greedy_conf[offset:offset + len(rows)]
            else:
                token_t, conf_t = choose_tokens(self.model.logits(flight.hidden[rows]), params,
                                                self.generator(request))
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
