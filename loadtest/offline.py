"""Offline (closed) throughput vs batch size: b requests started together through the target, run to completion."""

from __future__ import annotations

import threading
import time

from .driver import SAMPLE_PERIOD_S
from .metrics import RequestRecord, step_totals

TIMEOUT_S = 600.0


def measure_batch(target, prompts: list, params: dict, batch: int) -> dict:
    """Output tokens/s of ``batch`` requests started at once, and the sampled mean chunk size meanwhile."""
    chunks: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_PERIOD_S):
            chunk = target.stats().get("chunk", 0)
            if chunk:
                chunks.append(chunk)

    sampler = threading.Thread(target=sample, daemon=True)
    before = target.stats()
    sampler.start()
    start = time.perf_counter()
    records = [RequestRecord(arrival=start, deadline=start + TIMEOUT_S) for _ in range(batch)]
    for i, record in enumerate(records):
        target.start(prompts[i % len(prompts)], params, record)
    for record in records:
        record.done.wait(TIMEOUT_S + 5)
    elapsed = max((r.end for r in records if r.end is not None), default=time.perf_counter()) - start
    stop.set()
    sampler.join()
    tokens = sum(r.output_tokens for r in records if r.ok)
    return {"batch": batch, "completed": sum(r.ok for r in records), "output_tokens": tokens, "seconds": elapsed,
            "tokens_per_s": tokens / elapsed, "mean_chunk": sum(chunks) / len(chunks) if chunks else float("nan"),
            **step_accounting(before, target.stats(), elapsed)}


def step_accounting(before: dict, after: dict, elapsed: float) -> dict:
    """Engine steps between two stats snapshots, their mean whole-step and forward time, and the share of the
    elapsed time spent inside steps (the rest is the loop waiting or the host outside steps); NaN without the
    engine's step totals (the Triton path)."""
    totals = step_totals(before, after)
    if totals is None:
        nan = float("nan")
        return {"steps": nan, "step_ms_mean": nan, "forward_ms_mean": nan, "in_step_share": nan}
    steps, step_ms, forward_ms, _ = totals
    return {"steps": steps, "step_ms_mean": step_ms / steps, "forward_ms_mean": forward_ms / steps,
            "in_step_share": step_ms / 1e3 / elapsed}


def throughput_vs_batch(target, prompts: list, params: dict, batches: list[int]) -> list[dict]:
    return [measure_batch(target, prompts, params, b) for b in batches]
