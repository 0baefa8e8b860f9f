"""`optimus generate "prompt"`: stream one completion from the in-process engine to the terminal."""

from __future__ import annotations

import argparse
import sys
import time

from .config import SamplingParams
from .engine_args import add_engine_arguments, engine_config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="the prompt text")
    add_engine_arguments(parser)
    defaults = SamplingParams()
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    parser.add_argument("--threshold", type=float, default=defaults.threshold)
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    parser.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")


def run(args: argparse.Namespace) -> int:
    from .engine import Engine

    engine = Engine(engine_config_from_args(args, apply_chat_template=not args.raw))
    try:
        params = SamplingParams(max_tokens=args.max_tokens, threshold=args.threshold, temperature=args.temperature,
                                top_p=args.top_p, seed=args.seed, stop=args.stop)
        start = time.perf_counter()
        first = None
        for delta in engine.submit(args.prompt, params):
            if delta.text and first is None:
                first = time.perf_counter() - start
            sys.stdout.write(delta.text)
            sys.stdout.flush()
        elapsed = time.perf_counter() - start
        steps = engine.stats()["steps"]
        print(f"\n[{delta.finish_reason}] {delta.num_output_tokens} tokens in {elapsed:.2f}s "
              f"(TTFT {1e3 * (first or elapsed):.0f} ms, {steps} steps, mode {engine.mode}, {engine.device})",
              file=sys.stderr)
        return 0
    finally:
        engine.shutdown()
