"""Step-level continuous batching: who runs this step, with which window."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .controller import ChunkController
from .kv_cache import PagedKVCache
from .request import Request, StepPlan


AHEAD_SLACK = 0.05  # a chunk chosen ahead for b requests serves steps of down to b less this share (at least 1)


@dataclass(frozen=True)
class AheadChoice:
    """A chunk size chosen while the device ran the step before, for the batch the next step has if no request
    finishes in that step."""

    batch: int
    chunk: int

    def serves(self, batch: int) -> bool:
        """Whether it holds for a step of ``batch`` decoding requests (some may have finished since)."""
        return self.batch - max(1, round(AHEAD_SLACK * self.batch)) <= batch <= self.batch


class Scheduler:
    """Waiting queue and running set. Finished requests leave at once; waiting ones join at the next step
    while the batch limit, the controller's admission (SLO) and the KV pool allow."""

    def __init__(self, kv: PagedKVCache, controller: ChunkController, max_running: int,
                 prefix_reuse: bool, out_block: bool,
                 padded_tokens: Callable[[int, np.ndarray], np.ndarray] | None = None):
        """``padded_tokens(requests, tokens)``: the tokens steps of each size really run (CUDA graph padding)."""
        self.kv = kv
        self.padded_tokens = padded_tokens
        self.controller = controller
        self.max_running = max_running
        self.prefix_reuse = prefix_reuse
        self.out_block = out_block
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._ahead: AheadChoice | None = None

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def admit(self) -> None:
        while self.waiting and len(self.running) < self.max_running:
            request = self.waiting[0]
            if self.running and not self.controller.can_admit(len(self.running)):
                break
            if not self.kv.can_admit(request.total_len):
                break
            self.waiting.popleft()
            self.kv.admit(request.request_id, request.total_len)
            self.running.append(request)

    def schedule(self) -> tuple[int, list[tuple[Request, StepPlan]]]:
        """(chunk size, plans of every running request) for the next step."""
        self.admit()
        ahead, self._ahead = self._ahead, None
        if not self.running:
            return 0, []
        prefilling = [r for r in self.running if not r.prefilled]  # these only prefill this step
        decoding = [r for r in self.running if r.prefilled]
        batch = max(len(decoding), 1)
        if ahead is not None and ahead.serves(batch):
            plans = [(r, r.plan(ahead.chunk, self.prefix_reuse, self.out_block)) for r in self.running]
            prefill = sum(plan.fed_len for r, plan in plans if not r.prefilled)
            fed = np.array([sum(plan.fed_len for r, plan in plans if r.prefilled)])
            self.controller.price(batch, ahead.chunk, self._padded(fed, prefill)[0])
            return ahead.chunk, plans
        frames: dict[str, tuple[int, int, int]] = {}  # the decoding windows' frames, if the controller asked
        prefill = sum(r.prefill_end() for r in prefilling)
        chunk = self.controller.choose(batch, step_tokens=self._step_tokens(decoding, prefill, frames))
        return chunk, [(r, r.plan(chunk, self.prefix_reuse, self.out_block, frames.get(r.request_id)))
                       for r in self.running]

    def choose_ahead(self) -> None:
        """While the device runs a step: the next step's chunk size, chosen for the batch it has if no request
        finishes (every running request decoding) with the windows as they are before this step's commits, so
        that ``schedule`` skips pricing every candidate between the two steps (controllers that ``chooses_ahead``)."""
        decoding = [r for r in self.running if r.prefilled]
        if not self.controller.chooses_ahead or not decoding:
            self._ahead = None
            return
        batch = len(self.running)
        step_tokens = self._step_tokens(decoding, 0, {}, scale=batch / len(decoding))
        self._ahead = AheadChoice(batch, self.controller.choose(batch, step_tokens=step_tokens))

    def _step_tokens(self, decoding: list[Request], prefill: int, frames: dict[str, tuple[int, int, int]],
                     scale: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
        """Decode tokens a step really runs for each chunk size (computed only if the controller asks, leaving
        the windows' frames in ``frames`` for the plans): windows cut at their block's end feed less than c, and
        the step runs its CUDA graph bucket's tokens (``prefill`` prompt tokens ride along); ``scale``: for a
        batch that many times ``decoding``'s."""

        def step_tokens(chunks: np.ndarray) -> np.ndarray:
            if self.prefix_reuse and decoding:
                frames.update((r.request_id, r.frame(self.out_block)) for r in decoding)
                _, tail, room = np.array(list(frames.values())).T
                fed = np.minimum(tail[:, None] + chunks[None, :], room[:, None]).sum(axis=0)
            else:
                fed = max(len(decoding), 1) * chunks
            return self._padded(fed * scale if scale != 1.0 else fed, prefill)

        return step_tokens

    def _padded(self, fed: np.ndarray, prefill: int) -> np.ndarray:
        """Decode tokens steps feeding ``fed`` decode and ``prefill`` prompt tokens really run (CUDA graph buckets)."""
        if self.padded_tokens is None:
            return fed
        return self.padded_tokens(len(self.running), fed + prefill) - prefill

    def remove(self, request: Request) -> None:
        """Drops a finished or aborted request and frees its pages."""
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.kv.release(request.request_id)
