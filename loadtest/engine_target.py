"""The in-process request path: the engine behind the same interface as the Triton target (targets.py), for
machines where Triton can't run. Rows it produces are labelled "in-process"."""

from __future__ import annotations

import itertools
import queue
import threading
import time

from .metrics import RequestRecord

DEADLINE_CHECK_S = 0.05  # how often the collector checks the requests' deadlines


class EngineTarget:
    """One collector thread reads every request's deltas from one shared queue, so hundreds of requests in flight
    add no thread per request to the engine's process, and the collector wakes only when deltas are out (the
    engine sends them while the device computes a step), not in the engine's scheduling between two steps."""

    label = "in-process"

    def __init__(self, engine):
        self.engine = engine
        self.deltas: queue.SimpleQueue = queue.SimpleQueue()
        self.pending: dict[str, list] = {}  # request_id -> [record, first-token time]
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._collect, daemon=True, name="bench-collector")
        self.thread.start()

    def start(self, prompt: str | list[int], params: dict, record: RequestRecord) -> None:
        from optimus_backend.config import ConfigError, SamplingParams

        request_id = f"bench-{next(self.ids)}"
        with self.lock:  # before submitting: its first delta may come at once
            self.pending[request_id] = [record, None]
        try:
            self.engine.submit(prompt, SamplingParams.from_dict(dict(params)), request_id, deltas=self.deltas)
        except ConfigError as exc:
            with self.lock:
                del self.pending[request_id]
            record.finish(time.perf_counter(), 0, None, str(exc))

    def _collect(self) -> None:
        next_check = time.perf_counter() + DEADLINE_CHECK_S
        while not self.stopping.is_set():
            try:
                delta = self.deltas.get(timeout=DEADLINE_CHECK_S)
            except queue.Empty:
                delta = None
            now = time.perf_counter()
            if delta is not None:
                self._record(delta, now)
            if now >= next_check:
                self._give_up_late(now)
                next_check = now + DEADLINE_CHECK_S

    def _record(self, delta, now: float) -> None:
        """Notes a request's first token and its end."""
        with self.lock:
            item = self.pending.get(delta.request_id)
        if item is None:
            return  # given up on already
        record = item[0]
        if delta.token_ids and item[1] is None:
            item[1] = now
        if delta.finished:
            error = "engine error" if delta.finish_reason == "error" else None
            record.finish(now, delta.num_output_tokens, item[1], error)
            with self.lock:
                del self.pending[delta.request_id]

    def _give_up_late(self, now: float) -> None:
        """Aborts the requests past their deadline and counts them unfinished."""
        with self.lock:
            late = [(request_id, item[0]) for request_id, item in self.pending.items() if now > item[0].deadline]
            for request_id, _ in late:
                del self.pending[request_id]
        for request_id, record in late:
            self.engine.abort(request_id)
            record.give_up()

    def stats(self) -> dict:
        return self.engine.stats()

    def step_history(self, after: int) -> list:
        """The engine's step records after step ``after`` (the Triton target has none to give)."""
        return self.engine.step_history(after)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
