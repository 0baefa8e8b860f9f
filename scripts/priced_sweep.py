"""Diagnostics on the CPU: the engine's own decisions under open-loop arrivals, on a clock priced by a GPU profile.

The shipped tiny model replays recorded (or synthetic) acceptance, so windows, commits and the controller's choices
are the real engine's; only time is virtual: each step advances the clock by the profile's T at the decode tokens
the step really fed, plus the profile's per-token prefill cost. Poisson arrivals follow ``--rates`` (5 s each, the
sweep's order), and the last rate is measured: committed tokens/s from its start until the last request is done,
and the P50 / P90 TPOT of the requests that arrived in it. What it isolates: decision quality, with the profile as
the truth (a real engine's step times differ from the profile; this leaves that out).

    python scripts/priced_sweep.py --modes elastic,chunk:8,chunk:16 --rates 4,8,16,32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from optimus_backend.config import PROJECT_ROOT, SamplingParams
from priced_engine import priced_engine, step_price

PHASE_S = 5.0


def arrival_times(rates: list[float], seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    times: list[float] = []
    for index, rate in enumerate(rates):
        times += sorted((index * PHASE_S + rng.uniform(0.0, PHASE_S, rng.poisson(rate * PHASE_S))).tolist())
    return times


def run(mode: str, args: argparse.Namespace) -> dict:
    """One mode through every phase; the measured row of the last one."""
    engine, cost, _ = priced_engine(mode, args.profile, args.replay, start=False)
    params = SamplingParams(max_tokens=args.max_tokens, ignore_eos=True)
    arrivals = arrival_times(args.rates)
    measured_from = (len(args.rates) - 1) * PHASE_S
    clock, next_arrival, live, committed = 0.0, 0, {}, 0
    tpots = []
    while next_arrival < len(arrivals) or live:
        while next_arrival < len(arrivals) and arrivals[next_arrival] <= clock:
            handle = engine.submit([5 + next_arrival % 50] * args.prompt_len, params)
            live[handle.request_id] = [handle, arrivals[next_arrival], None]
            next_arrival += 1
        engine._drain_inbox()
        if not engine.scheduler.running and not engine.scheduler.waiting:
            clock = arrivals[next_arrival]
            continue
        engine.step()
        record = engine.controller.history[-1]
        clock += step_price(cost, record) / 1e3
        if clock >= measured_from:
            committed += record.committed_tokens
        for request_id, entry in list(live.items()):
            handle, arrival, first = entry
            if first is None and handle.request.generated():
                entry[2] = first = clock
            if handle.request.finished:
                if arrival >= measured_from:
                    tpots.append((clock - first) / max(args.max_tokens - 1, 1) * 1e3)
                del live[request_id]
    engine.shutdown()
    steps = [r for r in engine.controller.history if r.batch]
    return {"mode": mode, "tok_s": committed / (clock - measured_from),
            "tpot_p50_ms": float(np.percentile(tpots, 50)), "tpot_p90_ms": float(np.percentile(tpots, 90)),
            "mean_chunk": float(np.mean([r.chunk for r in steps[-200:]]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="elastic,chunk:4,chunk:8,chunk:16")
    parser.add_argument("--profile", type=Path, default=PROJECT_ROOT / "docs/benchmarks/profile_qwen3-8b.json")
    parser.add_argument("--replay", default="docs/benchmarks/acceptance-synthetic.json")
    parser.add_argument("--rates", type=lambda v: [float(r) for r in v.split(",")], default=[4.0, 8.0, 16.0, 32.0])
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    rows = [run(mode, args) for mode in args.modes.split(",")]
    best = max((r for r in rows if r["mode"] != "elastic"), key=lambda r: r["tok_s"], default=None)
    for row in rows:
        versus = f", {row['tok_s'] / best['tok_s']:.3f}x {best['mode']}" if best and row["mode"] == "elastic" else ""
        print(f"{row['mode']:>9}: {row['tok_s']:7.0f} tok/s by the profile{versus}; TPOT P50 {row['tpot_p50_ms']:.2f} "
              f"P90 {row['tpot_p90_ms']:.2f} ms; mean c of the last 200 steps {row['mean_chunk']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
