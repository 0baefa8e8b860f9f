"""The slow, obviously-correct decoder: one request, a dense KV tensor, plain loops (the engine's oracle).

It follows DESIGN §3 through ``Request.plan`` and records, per step, what was fed, which KV was written
and what was committed, so tests can check the contract step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .config import DecodingMode, SamplingParams, check_mode
from .decoding import DecodingRule, LowConfidenceDynamic, choose_tokens
from .masks import block_causal
from .model import Transformer, masked_attention
from .request import Request


@dataclass
class StepRecord:
    step: int
    kind: str
    chunk: int
    fed: tuple[int, int]
    kv_written: tuple[int, int]
    committed: dict[int, int] = field(default_factory=dict)


@dataclass
class ReferenceResult:
    token_ids: list[int]
    text: str
    finish_reason: str
    records: list[StepRecord]


def first_stop(text: str, stops: list[str]) -> int | None:
    """Index where the earliest stop string starts in text, or None."""
    hits = [text.find(stop) for stop in stops if stop in text]
    return min(hits) if hits else None


class DenseKV:
    """Per-layer K/V of one request as dense [positions, Hkv, D] tensors."""

    def __init__(self, model: Transformer, length: int):
        cfg = model.config
        param = next(model.parameters())
        shape = (cfg.num_hidden_layers, length, cfg.num_key_value_heads, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=param.dtype, device=param.device)
        self.v = torch.zeros_like(self.k)

    def attention(self, cached_len: int, positions: Tensor, write: range, block_size: int):
        """An AttentionFn: window rows see the cached prefix and, block-causally, the window."""
        window_allowed = block_causal(positions, positions, block_size)
        prefix_allowed = torch.ones(len(positions), cached_len, dtype=torch.bool, device=positions.device)
        allowed = torch.cat([prefix_allowed, window_allowed], dim=1).unsqueeze(0)
        start = int(positions[0])

        def attend(layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            keys = torch.cat([self.k[layer, :cached_len], k[0]]).unsqueeze(0)
            values = torch.cat([self.v[layer, :cached_len], v[0]]).unsqueeze(0)
            out = masked_attention(q, keys, values, allowed)
            for pos in write:
                self.k[layer, pos] = k[0, pos - start]
                self.v[layer, pos] = v[0, pos - start]
            return out

        return attend


class ReferenceDecoder:
    """Decodes one request at a time; ``chunks(step)`` gives the chunk size of each step."""

    def __init__(self, model: Transformer, rule: DecodingRule | None = None):
        self.model = model
        self.rule = rule or LowConfidenceDynamic()

    @torch.no_grad()
    def generate(self, prompt_ids: list[int], params: SamplingParams, mode: DecodingMode,
                 decode_text: Callable[[list[int]], str] = lambda ids: "", prefix_reuse: bool = True,
                 out_block: bool = False, chunks: Callable[[int], int] | None = None) -> ReferenceResult:
        cfg = self.model.config
        check_mode(cfg, mode)
        block = cfg.block_size
        request = Request.for_model("ref", prompt_ids, params, cfg)
        reuse = prefix_reuse and mode.kind != "bd"
        kv = DenseKV(self.model, request.total_len)
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        records: list[StepRecord] = []
        device = next(self.model.parameters()).device
        while not request.finished:
            chunk = {"ar": 1, "bd": block}.get(mode.kind) or (chunks(request.steps) if chunks else mode.chunk or block)
            plan = request.plan(chunk, reuse, out_block)
            positions = torch.arange(plan.fed_start, plan.fed_end, device=device)
            ids = torch.tensor([request.ids[plan.fed_start:plan.fed_end]], device=device)
            attend = kv.attention(request.cached_len, positions, range(plan.fed_start, plan.cache_end),
                                  block)
            hidden = self.model(ids, positions.unsqueeze(0), attend)[0]
            commits: dict[int, int] = {}
            if plan.scored:
                rows = [p - request.shift - plan.fed_start for p in plan.scored]
                tokens, confidence = choose_tokens(self.model.logits(hidden[rows]), params, generator)
                for i in self.rule.select(confidence.tolist(), params.threshold):
                    commits[plan.scored[i]] = int(tokens[i])
            records.append(StepRecord(request.steps, plan.kind.value, chunk, (plan.fed_start, plan.fed_end),
                                      (plan.fed_start, plan.cache_end), commits))
            request.apply(plan, commits)
            text = decode_text(request.generated())
            cut = first_stop(text, params.stop)
            if cut is not None:
                request.finish("stop")
                return ReferenceResult(request.generated(), text[:cut], "stop", records)
        return ReferenceResult(request.generated(), decode_text(request.generated()), request.finish_reason, records)
