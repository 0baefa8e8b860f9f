"""Offline (closed) throughput vs batch size: b requests submitted at once to the in-process engine."""

from __future__ import annotations

import time

from optimus_backend.config import SamplingParams


def measure_batch(engine, prompts: list, params: SamplingParams, batch: int) -> dict:
    """Runs ``batch`` requests together to completion; output tokens/s, steps/s and mean chunk of the run."""
    before = engine.stats()
    start = time.perf_counter()
    handles = [engine.submit(prompts[i % len(prompts)], params) for i in range(batch)]
    tokens = sum(handle.result()[1].num_output_tokens for handle in handles)
    elapsed = time.perf_counter() - start
    after = engine.stats()
    steps = after["steps"] - before["steps"]
    fed = after["total_fed"] - before["total_fed"]
    committed = after["total_committed"] - before["total_committed"]
    chunks = [record.chunk for record in list(engine.controller.history)[-steps:]] if steps else []
    return {"batch": batch, "output_tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed,
            "steps_per_s": steps / elapsed, "committed_per_fed": committed / max(fed, 1),
            "mean_chunk": sum(chunks) / max(len(chunks), 1)}


def throughput_vs_batch(engine, prompts: list, params: SamplingParams, batches: list[int]) -> list[dict]:
    engine.generate(prompts[:1], SamplingParams(max_tokens=4, ignore_eos=True))  # warm-up
    return [measure_batch(engine, prompts, params, b) for b in batches]
