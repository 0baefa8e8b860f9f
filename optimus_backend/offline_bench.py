"""`optimus bench --offline`: steps/s and committed tokens/s of the in-process engine for each mode."""

from __future__ import annotations

import argparse
import time

from .config import SamplingParams

DEFAULT_MODES = ["bd", "chunk:4", "chunk:8", "chunk:16", "elastic"]


def measure_mode(config, prompts: list[str], params: SamplingParams) -> dict:
    """Runs every prompt at once through a fresh engine; returns throughput numbers."""
    from .engine import Engine

    engine = Engine(config)
    try:
        engine.generate(prompts[:1], SamplingParams(max_tokens=4))  # warm-up
        before = engine.stats()
        start = time.perf_counter()
        engine.generate(prompts, params)
        elapsed = time.perf_counter() - start
        after = engine.stats()
    finally:
        engine.shutdown()
    steps = after["steps"] - before["steps"]
    committed = after["total_committed"] - before["total_committed"]
    fed = after["total_fed"] - before["total_fed"]
    return {"mode": config.mode, "requests": len(prompts), "steps": steps, "seconds": elapsed,
            "steps_per_s": steps / elapsed, "tokens_per_s": committed / elapsed,
            "tokens_per_step": committed / max(steps, 1), "committed_per_fed": committed / max(fed, 1)}


def format_table(rows: list[dict]) -> str:
    lines = [f"{'mode':<10}{'requests':>9}{'steps':>7}{'steps/s':>9}{'tokens/s':>10}{'tok/step':>10}{'commit/fed':>11}"]
    for r in rows:
        lines.append(f"{r['mode']:<10}{r['requests']:>9}{r['steps']:>7}{r['steps_per_s']:>9.1f}{r['tokens_per_s']:>10.1f}"
                     f"{r['tokens_per_step']:>10.2f}{r['committed_per_fed']:>11.2f}")
    return "\n".join(lines)


def run_offline(args: argparse.Namespace, config_for_mode, prompts: list[str]) -> int:
    """Prints the table for ``args.modes`` (each mode's EngineConfig from ``config_for_mode(mode)``)."""
    params = SamplingParams(max_tokens=args.max_tokens)
    rows = [measure_mode(config_for_mode(mode), prompts, params) for mode in args.modes]
    print(format_table(rows))
    return 0
