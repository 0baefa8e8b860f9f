"""CUDA graphs of the model forward, bucketed by (requests, tokens, q tile), so a step costs one replay on the host.

A step's packed metadata is copied into static buffers; the bucket is padded with one dummy request that
owns the padding tokens (prefix 0, no KV writes) and empty requests after it. Every bucket is captured when
the engine starts (largest first, each after an eager warm-up run that lets Triton pick its kernel configs) and
replayed once (a graph's first launch uploads it: on an H200 the first step in each bucket ran 1.15x its profile
at the median and up to 2.2x, which priced the chunk sizes that reach a new bucket out of the elastic choice), so
no request waits for a capture or an upload; a kernel launch depends only on the bucket, never on the step's
contents. The q tile (query rows per attention program) follows the step's longest window: a tile sized from the
bucket's mean window made windows just above it take two tiles, each reading the whole prefix (on an H200 at 64
requests, c = 17-23 cost 10.3 ms a step against 9.0 at c = 16 for the same tokens).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from .model import Transformer

REQUEST_BUCKETS = [2, 4, 8, 16, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512]
TOKEN_BUCKETS = [8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192]


@dataclass(frozen=True)
class Buckets:
    """The (requests, tokens) sizes graphs are captured for: a step runs the smallest bucket that holds it."""

    requests: tuple[int, ...]  # request slots, one more than a step's requests (the padding's dummy request)
    tokens: tuple[int, ...]

    @staticmethod
    def for_limits(max_requests: int, max_tokens: int) -> "Buckets":
        return Buckets(tuple(b for b in REQUEST_BUCKETS if b < max_requests + 1) + (max_requests + 1,),
                       tuple(t for t in TOKEN_BUCKETS if t < max_tokens) + (max_tokens,))

    def key(self, requests: int, tokens: int) -> tuple[int, int] | None:
        """The smallest bucket for a step of this many requests and tokens, or None (too large: eager)."""
        b = bisect.bisect_left(self.requests, requests + 1)
        t = bisect.bisect_left(self.tokens, tokens)
        if b == len(self.requests) or t == len(self.tokens):
            return None
        return self.requests[b], self.tokens[t]

    def padded(self, requests: int, tokens: Sequence[int]) -> list[int]:
        """Tokens that steps of ``requests`` requests and each of ``tokens`` tokens really run: their bucket's, or
        their own where no bucket holds them (they run eagerly); ``key`` for many token counts at once, in plain
        Python (the engine waits for the choice that calls it, and numpy lets go of the GIL)."""
        if requests + 1 > self.requests[-1]:
            return [int(t) for t in tokens]
        sizes = self.tokens
        padded = []
        for t in tokens:
            i = bisect.bisect_left(sizes, t)
            padded.append(sizes[i] if i < len(sizes) else int(t))
        return padded


def graph_keys(buckets: Buckets, block_size: int, tile_rows: Callable[[int], int]) -> list[tuple[int, int, int]]:
    """Every (request slots, tokens, q tile rows) a step can need, largest tokens first. A step in bucket (b, t)
    has at least the previous request bucket's count of requests, each feeding >= 1 token, and feeds more than the
    previous token bucket over at most b - 1 requests, so its longest window (capped at ``block_size``: prompts
    longer than a block take several tiles) is at least their mean; ``tile_rows`` maps it to the kernel's tile."""
    requests, tokens = buckets.requests, buckets.tokens
    fewest_requests = dict(zip(requests, (1,) + requests[:-1]))
    fewer_tokens = dict(zip(tokens, (0,) + tokens[:-1]))
    keys = []
    for t in reversed(tokens):
        for b in (b for b in requests if t >= fewest_requests[b]):
            shortest = min(-(-(fewer_tokens[t] + 1) // (b - 1)), block_size)
            tiles = {tile_rows(window) for window in range(shortest, min(t, block_size) + 1)}
            keys += [(b, t, tile) for tile in sorted(tiles)]
    return keys


class GraphedForward:
    """Replays a captured forward (input ids -> final hidden states) for steps that fit a bucket."""

    def __init__(self, model: Transformer, max_requests: int, max_tokens: int, max_pages: int,
                 attention_for: Callable, empty_step):
        """``empty_step`` is a StepBatch of no requests, from which every bucket's padded layout is captured."""
        device = next(model.parameters()).device
        self.model = model
        self.attention_for = attention_for  # StepBatch -> AttentionFn
        self.buckets = Buckets.for_limits(max_requests, max_tokens)
        b_max, t_max = self.buckets.requests[-1], self.buckets.tokens[-1]
        self.input_ids = torch.zeros(t_max, dtype=torch.long, device=device)
        self.positions = torch.zeros(t_max, dtype=torch.int32, device=device)
        self.slot_mapping = torch.full((t_max,), -1, dtype=torch.long, device=device)
        self.cu_seqlens = torch.zeros(b_max + 1, dtype=torch.int32, device=device)
        self.prefix_lens = torch.zeros(b_max, dtype=torch.int32, device=device)
        self.page_table = torch.zeros(b_max, max_pages, dtype=torch.int32, device=device)
        self.graphs: dict[tuple[int, int, int], tuple[torch.cuda.CUDAGraph, Tensor]] = {}
        self.pool = None
        from kernels.chunk_attention import q_tile_rows

        config = model.config
        self.tile_rows = lambda window: q_tile_rows(window, config.num_attention_heads // config.num_key_value_heads)
        for key in tqdm(graph_keys(self.buckets, config.block_size, self.tile_rows), desc="capturing CUDA graphs"):
            self._load(empty_step, *key[:2])
            self._capture(key, self._static_step(empty_step, *key))

    def bucket(self, step) -> tuple[int, int, int] | None:
        """The smallest (requests + dummy, tokens) bucket holding the step and the q tile its longest window
        needs, or None (run it eagerly)."""
        if step.page_table.shape[1] > self.page_table.shape[1]:
            return None
        key = self.buckets.key(step.prefix_lens.numel(), step.input_ids.numel())
        return None if key is None else (*key, self.tile_rows(step.tile_window))

    def _static_step(self, step, b_pad: int, t_pad: int, tile: int):
        return type(step)(self.input_ids[:t_pad], self.positions[:t_pad], self.cu_seqlens[:b_pad + 1],
                          self.prefix_lens[:b_pad], self.page_table[:b_pad], self.slot_mapping[:t_pad], [],
                          self.slot_mapping[:0], tile)

    def _load(self, step, b_pad: int, t_pad: int) -> None:
        b, t = step.prefix_lens.numel(), step.input_ids.numel()
        self.input_ids[:t].copy_(step.input_ids)
        self.input_ids[t:t_pad].zero_()
        self.positions[:t].copy_(step.positions)
        self.positions[t:t_pad].zero_()
        self.slot_mapping[:t].copy_(step.slot_mapping)
        self.slot_mapping[t:t_pad].fill_(-1)
        self.cu_seqlens[:b + 1].copy_(step.cu_seqlens)
        self.cu_seqlens[b + 1:b_pad + 1].fill_(t_pad)
        self.prefix_lens[:b].copy_(step.prefix_lens)
        self.prefix_lens[b:b_pad].zero_()
        width = step.page_table.shape[1]
        self.page_table[:b, :width].copy_(step.page_table)

    def _forward(self, static) -> Tensor:
        ids, positions = static.input_ids.unsqueeze(0), static.positions.unsqueeze(0).long()
        return self.model(ids, positions, self.attention_for(static))[0]

    def __call__(self, step, key: tuple[int, int, int]) -> Tensor:
        """Final hidden states [T, D] of the step's real tokens."""
        self._load(step, *key[:2])
        graph, hidden = self.graphs[key]
        graph.replay()
        return hidden[:step.input_ids.numel()]

    def _capture(self, key: tuple[int, int, int], static) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._forward(static)  # warm-up: Triton autotuning, allocator growth (same inputs as the replay)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            hidden = self._forward(static)
        graph.replay()  # the first launch of a graph uploads it to the device (ms): here, not in a request's step
        self.pool = graph.pool()
        self.graphs[key] = (graph, hidden)
