"""The Triton request path of the benchmark: gRPC streaming or HTTP generate_stream (SSE) client workers.

A target takes requests without blocking (``start``), completes their ``RequestRecord``, and reports the engine's
state (``stats``: chunk, running, waiting, kv_pages_used) for the chunk-size-vs-load plots; engine_target.py is
the in-process twin.
"""

from __future__ import annotations

import queue
import threading
import time
import urllib.request

from client import http
from client.grpc_stream import GrpcStream, read_generation
from client.result import Generation

from .metrics import RequestRecord

# Prometheus gauge of the Triton adapter -> stats key
GAUGES = {"optimus_chunk_size": "chunk", "optimus_num_requests_running": "running",
          "optimus_num_requests_waiting": "waiting", "optimus_kv_pages_used": "kv_pages_used"}


def scrape_gauges(metrics_url: str) -> dict:
    """The adapter's engine gauges from Triton's Prometheus endpoint, as stats keys (summed over instances)."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    out: dict = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in GAUGES:
            out[GAUGES[name]] = out.get(GAUGES[name], 0.0) + float(line.rsplit(" ", 1)[1])
    return out


class TritonTarget:
    """A pool of client workers, each with its own gRPC stream (or HTTP connection) and one request in flight,
    as Locust users have. A request still running at its deadline is cancelled and counted unfinished."""

    def __init__(self, grpc_url: str, http_url: str, metrics_url: str, protocol: str = "grpc", workers: int = 64):
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol: expected grpc or http, got {protocol!r}")
        self.label = f"triton-{protocol}"
        self.grpc_url, self.http_url, self.metrics_url, self.protocol = grpc_url, http_url, metrics_url, protocol
        self.jobs: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._worker, daemon=True, name=f"bench-client-{i}")
                        for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def start(self, prompt: str, params: dict, record: RequestRecord) -> None:
        self.jobs.put((prompt, params, record))

    def _worker(self) -> None:
        stream = GrpcStream(self.grpc_url) if self.protocol == "grpc" else None
        try:
            while (job := self.jobs.get()) is not None:
                stream = self._serve(stream, *job)
        finally:
            if stream is not None:
                stream.close(cancel=True)

    def _serve(self, stream: GrpcStream | None, prompt: str, params: dict, record: RequestRecord):
        """Runs one request; returns the stream to use next (a fresh one after a cancel)."""
        left = record.deadline - time.perf_counter()
        if left <= 0:
            record.give_up()
            return stream
        sent = time.perf_counter()
        try:
            if stream is None:
                gen = http.generate_stream(prompt, params, self.http_url, timeout_s=left)
            else:
                gen = Generation()
                stream.send(prompt, params)
                read_generation(stream, gen, timeout_s=left)
        except (queue.Empty, OSError):  # past the deadline (socket timeouts are OSErrors too)
            record.give_up()
            if stream is not None:
                stream.close(cancel=True)
                return GrpcStream(self.grpc_url)
            return stream
        first = None if gen.ttft_s is None else sent + gen.ttft_s
        record.finish(sent + gen.e2e_s, gen.num_output_tokens or 0, first, gen.error)
        return stream

    def stats(self) -> dict:
        return scrape_gauges(self.metrics_url)

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join(timeout=30)
