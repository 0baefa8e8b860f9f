"""Diagnostics on the CPU: the controller's decisions under a closed loop of concurrent users, priced by a GPU
profile (the shipped tiny model replays acceptance; the engine is stepped by hand, its clock the sum of the priced
step times, so a run is deterministic). Each user sends its next request when its previous one ends.

    python scripts/users_check.py --mode elastic --profile docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
from pathlib import Path

from tqdm import tqdm

from optimus_backend.config import SamplingParams
from optimus_backend.simulator import LoadSchedule
from priced_engine import priced_engine

USERS = "users:10@2,4~64,10@64,4~8,10@8,4~128,10@128,4~1,10@1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="elastic")
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--replay", default="docs/benchmarks/acceptance-synthetic.json")
    parser.add_argument("--users", default=USERS, help="the users schedule (seconds of priced time)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--noise", type=float, default=0.06)
    parser.add_argument("--out", type=Path, help="write every step record here (JSON)")
    args = parser.parse_args()
    schedule = LoadSchedule.parse(args.users)
    engine, _, _ = priced_engine(args.mode, args.profile, args.replay, start=False, graph_padding=True,
                                 noise=args.noise)
    clock = [0.0]
    priced = engine.controller.observe

    def observe(record) -> None:
        priced(record)
        clock[0] += engine.controller.history[-1].measured_ms / 1e3

    engine.controller.observe = observe
    params = SamplingParams(max_tokens=args.max_tokens, ignore_eos=True)
    deltas: queue.SimpleQueue = queue.SimpleQueue()
    in_flight, sent, records = 0, 0, []
    bar = tqdm(total=round(schedule.duration), desc="priced seconds", unit="s")
    while clock[0] < schedule.duration:
        if int(clock[0]) > bar.n:
            bar.update(int(clock[0]) - bar.n)
        while not deltas.empty():
            in_flight -= deltas.get().finished
        for _ in range(schedule.users_at(clock[0]) - in_flight):
            engine.submit([5 + sent % 50] * 128, params, deltas=deltas)
            in_flight, sent = in_flight + 1, sent + 1
        engine.run_until_idle(1)
        records.append((clock[0], engine.controller.history[-1]) if engine.controller.history else None)
    bar.close()
    engine.run_until_idle()
    steps = [(t, r) for t, r in (x for x in records if x) if r.batch]
    print(f"{args.mode}: {sent} requests, {len(steps)} steps")
    edges = [0.0] + [t for t, _ in schedule.knots[1:]]
    for lo, hi in zip(edges, edges[1:]):
        part = [r for t, r in steps if lo <= t < hi]
        if part:
            ms = sum(r.measured_ms for r in part)
            print(f"  {lo:5.1f}-{hi:5.1f} s users {schedule.users_at(lo)}-{schedule.users_at(hi - 1e-6)}: "
                  f"{len(part)} steps, mean c {sum(r.chunk for r in part) / len(part):5.1f}, "
                  f"{sum(r.committed_tokens for r in part) / ms * 1e3:6.0f} tok/s, "
                  f"prefill steps {sum(r.prefill_tokens > 0 for r in part) / len(part):.0%}")
    ms = sum(r.measured_ms for _, r in steps)
    print(f"{args.mode}: {sum(r.committed_tokens for _, r in steps) / ms * 1e3:.0f} tok/s over {ms / 1e3:.1f} s")
    if args.out:
        args.out.write_text(json.dumps([{"t": t, **dataclasses.asdict(r)} for t, r in steps]))
    engine.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
