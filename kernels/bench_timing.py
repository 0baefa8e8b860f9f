"""Timing and memory-bandwidth measurement for kernels/bench.py."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import triton

GIB = 2**30


class Timer:
    """Median milliseconds of a call. On CUDA: replays of a CUDA graph of the call with L2 flushed
    before each (host launch overhead excluded, as in the engine's captured steps), falling back to
    do_bench where capture fails; `last_method` says which. Elsewhere: wall clock."""

    def __init__(self, device: torch.device):
        self.device = device
        self.flush = torch.empty(256 * 2**20, dtype=torch.int8, device=device) if device.type == "cuda" else None
        self.last_method = "wall"

    def __call__(self, fn: Callable[[], object]) -> float:
        fn()  # compile and autotune outside any timing
        if self.device.type != "cuda":
            return self._wall_ms(fn)
        try:
            return self._graph_ms(fn)
        except Exception:  # noqa: BLE001 - not capturable: time eager launches instead
            torch.cuda.synchronize()
            self.last_method = "do_bench"
            return triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median")

    def _graph_ms(self, fn) -> float:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        repeats = max(5, min(100, int(20 / max(start.elapsed_time(end), 1e-3))))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            self.flush.zero_()
            start.record()
            graph.replay()
            end.record()
        torch.cuda.synchronize()
        del graph
        self.last_method = "cuda_graph"
        return statistics.median(start.elapsed_time(end) for start, end in events)

    def _wall_ms(self, fn) -> float:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - started) * 1e3)
        return statistics.median(runs)


def memory_bandwidths(device: torch.device, time_ms: Timer) -> dict:
    """Device-to-device copy (bytes read + written per second) and a pure read (a sum), 1 GiB."""
    size = GIB if device.type == "cuda" else 2**24
    source = torch.randn(size // 2, device=device, dtype=torch.bfloat16)
    dest = torch.empty_like(source)
    return dict(
        copy_bandwidth_Bps=2 * size / (time_ms(lambda: dest.copy_(source)) * 1e-3),
        read_bandwidth_Bps=size / (time_ms(lambda: source.sum(dtype=torch.float32)) * 1e-3),
    )
