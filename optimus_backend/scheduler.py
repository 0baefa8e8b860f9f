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
        windows = StepWindows(decoding, self.out_block) if self.prefix_reuse and decoding else None
        chunk = self.controller.choose(max(len(decoding), 1),
                                       step_tokens=self._step_tokens(decoding, prefilling, windows),
                                       spares=windows.spares if windows is not None else lambda: None)
        frames = windows.made() if windows is not None else {}  # the frames the choice made, for the plans
        return chunk, [(r, r.plan(chunk, self.prefix_reuse, self.out_block, frames.get(r.request_id)))
                       for r in self.running]

    def _step_tokens(self, decoding: list[Request], prefilling: list[Request], windows: StepWindows | None
                     ) -> Callable[[Sequence[int]], list[int]]:
        """Decode tokens a step really runs for each chunk size (computed only if the controller asks): windows
        cut at their block's end feed less than c, and the step runs its CUDA graph bucket's tokens."""

        def step_tokens(chunks: Sequence[int]) -> list[int]:
            if windows is not None:
                fed = fed_tokens(windows.spares(), windows.tails(), chunks)
            else:
                fed = [max(len(decoding), 1) * c for c in chunks]
            if self.padded_tokens is None:
                return fed
            prefill, requests = sum(r.prefill_end() for r in prefilling), len(self.running)
            return [t - prefill for t in self.padded_tokens(requests, [f + prefill for f in fed])]

        return step_tokens

    def remove(self, request: Request) -> None:
        """Drops a finished or aborted request and frees its pages."""
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.kv.release(request.request_id)


class StepWindows:
    """The decoding requests' window frames (first MASK, tail, room) of one step with prefix reuse, made once on
    first use and shared by the controller's choice and the plans; and what the choice reads of them."""

    def __init__(self, decoding: list[Request], out_block: bool):
        self._decoding, self._out_block = decoding, out_block
        self._frames: dict[str, tuple[int, int, int]] | None = None
        self._spares: list[int] | None = None

    def frames(self) -> dict[str, tuple[int, int, int]]:
        """Each decoding request's frame, by request id, in the order of the requests."""
        if self._frames is None:
            out_block = self._out_block
            self._frames = {r.request_id: r.frame(out_block) for r in self._decoding}
        return self._frames

    def made(self) -> dict[str, tuple[int, int, int]]:
        """The frames if something asked for them already, else none (each plan makes its own)."""
        return self._frames or {}

    def spares(self) -> list[int]:
        """Each window's room past its uncached prompt tail, sorted (``spare_rooms``)."""
        if self._spares is None:
            self._spares = spare_rooms(self.frames().values())
        return self._spares

    def tails(self) -> int:
        """The uncached prompt tails fed along with the windows, in all."""
        return sum(tail for _, tail, _ in self.frames().values())


def spare_rooms(frames: Iterable[tuple[int, int, int]]) -> list[int]:
    """Each window's room past its uncached prompt tail, from its frame (first MASK, tail, room), sorted: chunk c
    feeds tail + min(c, spare) positions."""
    return sorted(room - tail for _, tail, room in frames)


def fed_tokens(spares: list[int], tails: int, chunks: Sequence[int]) -> list[int]:
    """Tokens a step feeds for each chunk size: ``tails`` plus the sum over the windows of min(c, spare), from their
    sorted ``spares`` (``spare_rooms``). Plain Python on purpose: numpy lets go of the GIL during an operation on
    more than a few hundred elements (a [requests, chunks] array), and when another thread is runnable then (one
    handling the last step's deltas), the engine thread waits for it."""
    spare_sums = list(itertools.accumulate(spares, initial=0))
    count, fed = len(spares), []
    for c in chunks:
        below = bisect.bisect_left(spares, c)  # requests whose spare is under c
        fed.append(tails + spare_sums[below] + c * (count - below))
    return fed
