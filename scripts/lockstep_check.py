"""Diagnostics on the CPU: the controller's decisions on a lockstep batch after a warm-up, priced by a GPU profile.

The shipped tiny model replays recorded (or synthetic) acceptance; 64 staggered requests (one every ``--warm-gap``
engine steps, the engine stepped by hand, so a run is deterministic) warm the controller up, then 64 requests are
admitted at once (the offline benchmark's case). Prints the steps, the chosen chunk sizes and
the committed tokens per second the profile gives those steps at the tokens they really fed (no GPU needed: the
controller is fed the profile's step times, not the CPU's).

    python scripts/lockstep_check.py --mode elastic --profile docs/benchmarks/profile_qwen3-1.7b.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optimus_backend.config import PROJECT_ROOT, SamplingParams
from priced_engine import priced_engine, step_price


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="elastic")
    parser.add_argument("--profile", type=Path, default=PROJECT_ROOT / "docs/benchmarks/profile_qwen3-1.7b.json")
    parser.add_argument("--replay", default="docs/benchmarks/acceptance-synthetic.json")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--tilt", type=float, default=0.0,
                        help="price steps at the profile times (c / 8) ** TILT (0: the profile is the truth)")
    parser.add_argument("--warm-gap", type=int, default=2, help="engine steps between two warm-up requests")
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens each request generates")
    parser.add_argument("--graph-padding", action="store_true",
                        help="price steps (and let the controller price choices) at the GPU's CUDA graph buckets")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="sigma of a lognormal factor on the step times the controller observes")
    args = parser.parse_args()
    engine, cost, buckets = priced_engine(args.mode, args.profile, args.replay, start=False, tilt=args.tilt,
                                         graph_padding=args.graph_padding, noise=args.noise)
    params = SamplingParams(max_tokens=args.max_tokens, ignore_eos=True)

    for i in range(args.requests):
        engine.submit([5 + i % 50] * 128, params)
        engine.run_until_idle(args.warm_gap)
    engine.run_until_idle()
    start = engine.steps
    for i in range(args.requests):
        engine.submit([7 + i % 40] * 128, params)
    engine.run_until_idle()
    steps = [r for r in engine.controller.history if r.step >= start and r.batch]
    engine.shutdown()
    ms = sum(step_price(cost, r, args.tilt, buckets) for r in steps)
    committed = sum(r.committed_tokens for r in steps)
    print(f"{args.mode}: {len(steps)} steps, chunks {[r.chunk for r in steps]}")
    switches = sum(a.chunk != b.chunk for a, b in zip(steps, steps[1:]))
    print(f"{args.mode}: {switches} switches of c, mean c {sum(r.chunk for r in steps) / len(steps):.2f}")
    print(f"{args.mode}: {committed} tokens in {ms:.1f} ms by the profile = {committed / ms * 1e3:.0f} tok/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
