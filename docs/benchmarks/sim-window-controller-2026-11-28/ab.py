"""Simulated A/B of the elastic controller learning acceptance per window (as committed) against per chunk size
(the controller before: no rooms given, every request's window counted as c), closed loops of N users, requests of
prompt 128 and 256 tokens out, every request's window cut at its block's end (the simulator's block phases).
Run from the repository root: python docs/benchmarks/sim-window-controller-2026-11-28/ab.py qwen3-8b"""

import dataclasses
import sys

import numpy as np

import optimus_backend.simulator as sim
from optimus_backend.acceptance import AcceptanceStats
from optimus_backend.controller import ElasticController

PROFILES = "docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/{}/profile.json"
FIXED = ("chunk:4", "chunk:8", "chunk:16", "chunk:24", "chunk:32")


class PerChunk(ElasticController):
    """The controller before: E learned per chunk size, decisions blind to the rooms."""

    def choose(self, batch, prefix=None, step_tokens=None, spares=None):
        return super().choose(batch, prefix, step_tokens)

    def observe(self, record):
        super().observe(dataclasses.replace(record, windows=None, commits=()))


def throughput(policy: str, users: int, cost, acceptance, cfg, seeds: int = 3, seconds: float = 20.0) -> float:
    rates = []
    for seed in range(seeds):
        result = sim.simulate(policy, cost, acceptance, sim.LoadSchedule.parse(f"users:{seconds}@{users}"), cfg, seed)
        steps = [s for s in result.steps if cfg.warmup_s <= s[0] <= seconds]
        rates.append(sum(s[3] for s in steps) / (steps[-1][0] - steps[0][0]))
    return float(np.mean(rates))


def main(shape: str) -> None:
    cost = sim.load_profile(PROFILES.format(shape))
    acceptance = AcceptanceStats.load("docs/benchmarks/acceptance-synthetic.json")
    cfg = sim.SimConfig(prompt_len=128, output_len=(256, 256), warmup_s=2.0, max_batch=128)
    make = sim.controller_for
    print("| shape | users | best fixed | elastic per window / best | elastic per chunk / best |")
    print("|---|---|---|---|---|")
    for users in (1, 4, 16, 64, 128):
        fixed = {policy: throughput(policy, users, cost, acceptance, cfg) for policy in FIXED}
        best = max(fixed, key=fixed.get)
        by_window = throughput("elastic", users, cost, acceptance, cfg)
        sim.controller_for = lambda mode, block, model=None, slo=None: (
            PerChunk(model, block, slo) if mode.kind == "elastic" else make(mode, block, model, slo))
        by_chunk = throughput("elastic", users, cost, acceptance, cfg)
        sim.controller_for = make
        print(f"| {shape} | {users} | {best} | {by_window / fixed[best]:.3f} | {by_chunk / fixed[best]:.3f} |",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
