"""Wall time per engine step with the previous step's deltas sent (and the step observed by the controller) while
the device runs (the engine's order) and with both done right after each step (no overlap), alternating on one
engine, at a saturated batch.

    python3 scripts/overlap_ab.py [shape] [--mode chunk:8] [--batch 128] [--rounds 3]

Commits are replayed from the recorded acceptance statistics; every request decodes 256 tokens from a 128-token
prompt. On CPU the two orders do the same work one after another, so only a GPU shows a difference.
"""

from __future__ import annotations

import argparse
import statistics
import time

from optimus_backend.config import EngineConfig, SamplingParams
from optimus_backend.engine import Engine

REPLAY = "replay:docs/benchmarks/acceptance-synthetic.json"


def run_batch(engine: Engine, batch: int, overlap: bool) -> tuple[float, int, int]:
    """(seconds, steps, tokens) to decode one batch of requests to the end."""
    params = SamplingParams(max_tokens=256, ignore_eos=True)
    handles = [engine.submit([5 + i % 50] * 128, params) for i in range(batch)]
    engine.overlap_host_work = overlap  # False: each step's deltas and observation right away, as before
    start = time.perf_counter()
    steps = engine.run_until_idle()
    seconds = time.perf_counter() - start
    return seconds, steps, sum(h.request.output_len for h in handles)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shape", nargs="?", default="qwen3-1.7b", help='a named shape, or "tiny" for the shipped model')
    parser.add_argument("--mode", default="chunk:8")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shape = None if args.shape == "tiny" else args.shape
    engine = Engine(EngineConfig(shape=shape, mode=args.mode, max_running=args.batch, decoding_rule=REPLAY,
                                 kv_cpu_bytes=2**30), start=False)
    run_batch(engine, 8, True)  # warm-up
    results: dict[bool, list[tuple[float, int, int]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for overlap in (False, True):
            results[overlap].append(run_batch(engine, args.batch, overlap))
    print(f"{args.shape} {args.mode} batch {args.batch} on {engine.device}")
    print(f"{'deltas':<22}{'ms/step':>9}{'tokens/s':>10}  (median of {args.rounds} rounds)")
    for overlap, label in ((False, "after each step"), (True, "during the next step")):
        ms = statistics.median(s / n * 1e3 for s, n, _ in results[overlap])
        rate = statistics.median(t / s for s, _, t in results[overlap])
        print(f"{label:<22}{ms:9.2f}{rate:10.0f}")


if __name__ == "__main__":
    main()
