"""The in-process request path: the engine behind the same interface as the Triton target (targets.py), for
machines where Triton can't run. Rows it produces are labelled "in-process"."""

from __future__ import annotations

import queue
import threading
import time

from .metrics import RequestRecord

POLL_S = 0.002  # the collector's poll period (TTFT / TPOT resolution)


class EngineTarget:
    """One collector thread polls every request's deltas, so hundreds of requests in flight add no thread per
    request to the engine's process (and no GIL hand-off per request per step)."""

    label = "in-process"

    def __init__(self, engine):
        self.engine = engine
        self.pending: list[list] = []  # [handle, record, first-token time]
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._collect, daemon=True, name="bench-collector")
        self.thread.start()

    def start(self, prompt: str | list[int], params: dict, record: RequestRecord) -> None:
        from optimus_backend.config import ConfigError, SamplingParams

        try:
            handle = self.engine.submit(prompt, SamplingParams.from_dict(dict(params)))
        except ConfigError as exc:
            record.finish(time.perf_counter(), 0, None, str(exc))
            return
        with self.lock:
            self.pending.append([handle, record, None])

    def _collect(self) -> None:
        while not self.stopping.wait(POLL_S):
            with self.lock:
                items = list(self.pending)
            done = set()
            for item in items:
                handle, record, _ = item
                if self._drain(item):
                    done.add(id(item))
                elif time.perf_counter() > record.deadline:
                    self.engine.abort(handle.request_id)
                    record.give_up()
                    done.add(id(item))
            if done:
                with self.lock:
                    self.pending = [item for item in self.pending if id(item) not in done]

    @staticmethod
    def _drain(item: list) -> bool:
        """Reads the request's new deltas; True once it finished."""
        handle, record, _ = item
        while True:
            try:
                delta = handle.deltas.get_nowait()
            except queue.Empty:
                return False
            now = time.perf_counter()
            if delta.token_ids and item[2] is None:
                item[2] = now
            if delta.finished:
                error = "engine error" if delta.finish_reason == "error" else None
                record.finish(now, delta.num_output_tokens, item[2], error)
                return True

    def stats(self) -> dict:
        return self.engine.stats()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
