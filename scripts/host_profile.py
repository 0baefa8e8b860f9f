"""Diagnostics: where the engine thread's host time goes, per mode, at one open-loop rate on a random-weight shape
(acceptance replayed). The step loop runs under cProfile (which slows Python work, so compare modes, not
absolutes); prints per mode the milliseconds per step of the engine's main calls and writes the top functions by
own time to ``host_<mode>.txt``.

    python3 scripts/host_profile.py --shape qwen3-1.7b --modes elastic,chunk:8 --rate 128 --out $OUT
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
from pathlib import Path

from loadtest import bench
from loadtest.driver import run_point
from loadtest.scale import bench_args, shape_spec
from optimus_backend.engine import Engine

CALLS = ("step", "schedule", "choose", "plan", "launch", "collect", "_catch_up", "apply", "observe", "prepare")


def profiled_loops() -> list[cProfile.Profile]:
    """Runs every engine's step loop under its own profiler (enabled in the engine's thread); returns them."""
    profilers: list[cProfile.Profile] = []
    loop = Engine._loop

    def profiled_loop(engine: Engine) -> None:
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()
        try:
            loop(engine)
        finally:
            profiler.disable()

    Engine._loop = profiled_loop
    return profilers


def per_step_ms(profiler: cProfile.Profile, steps: int) -> dict[str, float]:
    """Cumulative ms per step of the CALLS (summed over every function of that name)."""
    totals = dict.fromkeys(CALLS, 0.0)
    for (_, _, name), (_, _, _, cumulative, _) in pstats.Stats(profiler).stats.items():
        if name in totals:
            totals[name] += cumulative * 1e3 / max(steps, 1)
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="qwen3-1.7b")
    parser.add_argument("--modes", default="elastic,chunk:8")
    parser.add_argument("--replay", default="docs/benchmarks/acceptance-synthetic.json")
    parser.add_argument("--rate", type=float, default=128.0)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run_args = bench_args(args.shape, args.replay, 128, args.out)
    spec = shape_spec(args.shape, args.prompt_len, args.max_tokens, args.duration, 15.0, 50.0)
    prompts, params = spec.prompts, spec.params
    profilers = profiled_loops()
    for mode in args.modes.split(","):
        with bench.open_target(run_args, bench.mode_config(run_args, mode), args.out, 64) as target:
            bench.warm_up(target, prompts, params, 64)
            row = run_point(target, args.rate, spec)
            steps = target.engine.steps
        profiler = profilers[-1]
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
        (args.out / f"host_{mode.replace(':', '')}.txt").write_text(text.getvalue())
        calls = ", ".join(f"{name} {ms:.3f}" for name, ms in per_step_ms(profiler, steps).items())
        print(f"{mode}: {row['throughput_tok_s']:.0f} tok/s, host {row['host_ms_per_step']:.3f} ms/step, "
              f"schedule {row['schedule_ms_per_step']:.3f} ms/step, mean c {row['mean_chunk']:.1f}; "
              f"ms per step (cumulative, profiled, {steps} steps): {calls}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
