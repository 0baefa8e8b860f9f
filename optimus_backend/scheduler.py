"""Step-level continuous batching: who runs this step, with which window."""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from typing import Callable, Iterable, Sequence

from .controller import ChunkController
from .kv_cache import PagedKVCache
from .request import Request, StepPlan


class Scheduler:
    """Waiting queue and running set. Finished requests leave at once; waiting ones join at the next step
    while the batch limit, the controller's admission (SLO) and the KV pool allow."""

    def __init__(self, kv: PagedKVCache, controller: ChunkController, max_running: int,
                 prefix_reuse: bool, out_block: bool,
                 padded_tokens: Callable[[int, Sequence[int]], list[int]] | None = None):
        """``padded_tokens(requests, tokens)``: the tokens steps of each size really run (CUDA graph padding)."""
        self.kv = kv
        self.padded_tokens = padded_tokens
        self.controller = controller
        self.max_running = max_running
        self.prefix_reuse = prefix_reuse
        self.out_block = out_block
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []

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
        if not self.running:
            return 0, []
        prefilling = [r for r in self.running if not r.prefilled]  # these only prefill this step
        decoding = [r for r in self.running if r.prefilled]
        frames: dict[str, tuple[int, int, int]] = {}  # the decoding windows' frames, if the controller asked
        chunk = self.controller.choose(max(len(decoding), 1),
                                       step_tokens=self._step_tokens(decoding, prefilling, frames),
                                       spares=self._spares(decoding, frames))
        return chunk, [(r, r.plan(chunk, self.prefix_reuse, self.out_block, frames.get(r.request_id)))
                       for r in self.running]

    def _frames(self, decoding: list[Request], frames: dict[str, tuple[int, int, int]]) -> None:
        """Fills ``frames`` with the decoding windows' frames (first MASK, tail, room) once, for the plans too."""
        if not frames:
            frames.update((r.request_id, r.frame(self.out_block)) for r in decoding)

    def _step_tokens(self, decoding: list[Request], prefilling: list[Request],
                     frames: dict[str, tuple[int, int, int]]) -> Callable[[Sequence[int]], list[int]]:
        """Decode tokens a step really runs for each chunk size (computed only if the controller asks, leaving
        the windows' frames in ``frames`` for the plans): windows cut at their block's end feed less than c, and
        the step runs its CUDA graph bucket's tokens."""

        def step_tokens(chunks: Sequence[int]) -> list[int]:
            if self.prefix_reuse and decoding:
                self._frames(decoding, frames)
                fed = fed_tokens(list(frames.values()), chunks)
            else:
                fed = [max(len(decoding), 1) * c for c in chunks]
            if self.padded_tokens is None:
                return fed
            prefill, requests = sum(r.prefill_end() for r in prefilling), len(self.running)
            return [t - prefill for t in self.padded_tokens(requests, [f + prefill for f in fed])]

        return step_tokens

    def _spares(self, decoding: list[Request], frames: dict[str, tuple[int, int, int]]
                ) -> Callable[[], list[int] | None]:
        """Each decoding request's room for a window past its uncached prompt tail (chunk c feeds min(c, spare)
        of it), computed only if the controller asks; None without prefix reuse (a BD window is its block)."""

        def spares() -> list[int] | None:
            if not (self.prefix_reuse and decoding):
                return None
            self._frames(decoding, frames)
            return spare_rooms(frames.values())

        return spares

    def remove(self, request: Request) -> None:
        """Drops a finished or aborted request and frees its pages."""
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.kv.release(request.request_id)


def spare_rooms(frames: Iterable[tuple[int, int, int]]) -> list[int]:
    """Each window's room past its uncached prompt tail, from its frame (first MASK, tail, room), sorted: chunk c
    feeds tail + min(c, spare) positions."""
    return sorted(room - tail for _, tail, room in frames)


def fed_tokens(frames: list[tuple[int, int, int]], chunks: Sequence[int]) -> list[int]:
    """Tokens a step feeds for each chunk size: the sum over the requests' frames (first MASK, tail, room) of
    min(tail + c, room), from the sorted room left after each tail. Plain Python on purpose: numpy lets go of the
    GIL during an operation on more than a few hundred elements (a [requests, chunks] array), and when another
    thread is runnable then (one handling the last step's deltas), the engine thread waits for it."""
    spare = spare_rooms(frames)
    spare_sums = list(itertools.accumulate(spare, initial=0))
    tails, count = sum(tail for _, tail, _ in frames), len(spare)
    fed = []
    for c in chunks:
        below = bisect.bisect_left(spare, c)  # requests whose spare is under c
        fed.append(tails + spare_sums[below] + c * (count - below))
    return fed
