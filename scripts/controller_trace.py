"""Diagnostics: one open-loop rate point of one mode on a random-weight shape (acceptance replayed), or a changing
load (``--load``, e.g. a closed loop ``users:10@2,4~128,10@128``), optionally followed by offline batches
(``--offline 4,16``: B requests at once, as the benchmark's offline rows run, one batch after the other), then every
step record the controller kept (batch, chunk, prefill tokens, predicted and measured ms, committed) as JSON, with
the elastic controller's E[c] estimates and their requests' worth as each batch began, and every ``SNAPSHOT_STEPS``
steps its decision inputs at that step's batch (optimistic E[c], step-time factors, the predicted rate of each c).

    python3 scripts/controller_trace.py --replay docs/benchmarks/acceptance-synthetic.json --rate 64 --out $OUT
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from loadtest import bench
from loadtest.driver import run_load, run_point
from loadtest.offline import measure_batch
from loadtest.scale import bench_args, shape_spec
from loadtest.shapes import parse
from optimus_backend.controller import BATCH_RANGES

SNAPSHOT_STEPS = 25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="qwen3-8b")
    parser.add_argument("--modes", default="elastic")
    parser.add_argument("--replay", required=True)
    parser.add_argument("--rate", type=float, default=64.0)
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--load", default="", help="a changing load (shapes.parse spec) instead of the rate point")
    parser.add_argument("--warm-batch", type=int, default=64,
                        help="requests at once in the warm-up (loadtest.scale warms up with its largest batch)")
    parser.add_argument("--offline", default="", help="requests of each offline batch after the rate point (4,16)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run_args = bench_args(args.shape, args.replay, 128, args.out)
    spec = shape_spec(args.shape, args.prompt_len, args.max_tokens, args.duration, 15.0, 50.0)
    prompts, params = spec.prompts, spec.params
    for mode in args.modes.split(","):
        with bench.open_target(run_args, bench.mode_config(run_args, mode), args.out, args.warm_batch) as target:
            bench.warm_up(target, prompts, params, args.warm_batch)
            first = target.engine.steps
            controller = target.engine.controller
            snapshots = watch(controller)
            row = run_load(target, parse(args.load), spec)[0] if args.load else run_point(target, args.rate, spec)
            offline = []
            for batch in (int(b) for b in args.offline.split(",") if b):
                offline.append({"first_step": target.engine.steps, **estimates(controller),
                                **measure_batch(target, prompts, params, batch)})
            records = [dataclasses.asdict(r) for r in controller.history if r.step >= first]
            del target  # the next mode's engine needs this one's GPU memory
        offline_note = "".join(f", offline b{o['batch']} {o['tokens_per_s']:.0f} tok/s" for o in offline)
        print(f"{mode}: {row['throughput_tok_s']:.0f} tok/s{offline_note}, {len(records)} steps", flush=True)
        factors = getattr(controller, "time_factors", None)  # per batch range [2**k, 2**(k+1))
        ranges = range(BATCH_RANGES) if factors is not None else ()
        trace = {"mode": mode, "row": row, "offline": offline, "records": records, "snapshots": snapshots,
                 "time_factors": {2**k: factors(2**k).tolist() for k in ranges}}
        del controller
        (args.out / f"trace_{mode.replace(':', '')}.json").write_text(json.dumps(trace))
    return 0


def watch(controller) -> list[dict]:
    """Snapshots of an elastic controller's decision every SNAPSHOT_STEPS steps (none for a fixed one): the
    step's batch, its requests' spare rooms, the optimistic and pessimistic E[c], the requests' worth behind each,
    the learned and decision step-time factors, the profile's step time and the rate of each c, and the c chosen."""
    snapshots: list[dict] = []
    if not hasattr(controller, "rates"):
        return snapshots
    choose = controller.choose

    def chosen(batch, prefix=None, step_tokens=None, spares=None) -> int:
        chunk = choose(batch, prefix, step_tokens, spares)
        if controller.steps % SNAPSHOT_STEPS == 0:
            rooms = None if spares is None else spares()
            rate, profiled, factors = controller.rates(batch, prefix, step_tokens, lambda: rooms)
            upper, lower = controller.decision_bounds()
            snapshots.append({"step": controller.steps, "batch": batch, "chunk": chunk, "rooms": rooms,
                              "optimistic_e": upper.tolist(), "pessimistic_e": lower.tolist(),
                              "requests": controller.requests().tolist(), "factors": factors.tolist(),
                              "decision_factors": controller.decision_factors(batch).tolist(),
                              "profiled_ms": profiled.tolist(), "rate": np.where(np.isfinite(rate), rate, 0).tolist()})
        return chunk

    controller.choose = chosen
    return snapshots


def estimates(controller) -> dict:
    """The elastic controller's E[c] and the requests' worth behind each (nothing for a fixed one)."""
    if not hasattr(controller, "estimate"):
        return {}
    return {"estimate": controller.estimate.tolist(), "requests": controller.requests().tolist()}


if __name__ == "__main__":
    raise SystemExit(main())
