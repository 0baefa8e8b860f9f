"""Diagnostics on the CPU: the elastic controller in synthetic worlds whose true step time differs from the profile.

The test cost model (`tests/test_controller.py`) is the profile; the truth is the profile times (c / 8) ** tilt,
with log-normal noise per step and, in the "slow steps" worlds, a share of steps 3x slower (a collection, a late
compile). Prints, per world, the mean and worst efficiency over seeds (committed tokens per ms of the chosen c
against the best c, steps 50 onwards). Run another tree's controller with PYTHONPATH=<tree>.

    python scripts/time_factor_worlds.py --seeds 6
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from optimus_backend.acceptance import AcceptanceStats, synthetic
from optimus_backend.controller import ElasticController, StepRecord
from optimus_backend.cost_model import CostModel

BLOCK = 32
CHUNKS = np.arange(1, BLOCK + 1)
SLOW_FACTOR = 3.0


def step_ms(b: float, c: float) -> float:
    """The test cost model: flat at small b, linear in fed tokens once saturated."""
    return 5.0 + 0.01 * b * c + 0.05 * b


def efficiency(cost: CostModel, stats: AcceptanceStats, batch: int, tilt: float, noise: float, slow_share: float,
               seed: int, steps: int) -> float:
    """Committed tokens per ms of the chosen c against the best c, steps 50 onwards, in one world and seed."""
    expected = np.array([stats.mean(int(c)) for c in CHUNKS])
    true_ms = np.array([step_ms(batch, c) for c in CHUNKS]) * (CHUNKS / 8.0) ** tilt
    rate = expected / true_ms
    controller, rng, chosen = ElasticController(cost, BLOCK), np.random.default_rng(seed), []
    for step in range(steps):
        chunk = controller.choose(batch)
        committed = int(stats.sample(chunk, batch, rng).sum())
        slow = SLOW_FACTOR if rng.random() < slow_share else 1.0
        measured = true_ms[chunk - 1] * math.exp(noise * rng.standard_normal()) * slow
        controller.observe(StepRecord(step, batch, chunk, batch * chunk, committed, measured))
        chosen.append(chunk)
    return float(np.mean(rate[np.array(chosen[50:]) - 1]) / rate.max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    cost = CostModel({(b, c, 512): step_ms(b, c) for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)
                      for c in (1, 2, 4, 8, 16, 32)})
    stats = synthetic(steps=1500)
    print("| b | tilt | noise | slow steps | mean efficiency | worst seed |\n|---|---|---|---|---|---|")
    for batch in (16, 64, 128):
        for tilt in (0.0, 0.15):
            for noise, slow_share in ((0.03, 0.0), (0.05, 0.03)):
                runs = [efficiency(cost, stats, batch, tilt, noise, slow_share, seed, args.steps)
                        for seed in range(args.seeds)]
                print(f"| {batch} | {tilt} | {noise:.0%} | {slow_share:.0%} | {np.mean(runs):.4f} | {min(runs):.4f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
