"""Open-loop load shapes: Poisson arrivals whose rate holds constant, steps, or ramps.

A schedule is the simulator's ``LoadSchedule`` (piecewise-linear rate over time), written as a spec:
``"60@2"`` holds 2 req/s for 60 s, ``"30@1,30@2,30@4"`` steps, ``"60~8"`` ramps from the previous rate (0 at the
start) to 8 req/s over 60 s. Arrival times are drawn once, up front, from a seeded Poisson process, so every mode
and protocol sees the same arrivals. The Locust load shape that hands these arrivals to users lives in
locustfile.py: this module must not import locust, which monkey-patches threads into greenlets on import.
"""

from __future__ import annotations

import threading

import numpy as np

from optimus_backend.simulator import LoadSchedule

SEED = 0


def constant(rate: float, duration_s: float) -> LoadSchedule:
    return LoadSchedule.steady(rate, duration_s)


def parse(spec: str) -> LoadSchedule:
    """A schedule from its spec; a ramp first ramps from 0."""
    spec = spec.strip()
    return LoadSchedule.parse(f"0@0,{spec}" if spec.split(",")[0].count("~") else spec)


class Arrivals:
    """The arrival times of one run (seconds from its start), handed out in order; thread- and greenlet-safe."""

    def __init__(self, schedule: LoadSchedule, seed: int = SEED):
        self.schedule = schedule
        self.times = schedule.arrivals(np.random.default_rng(seed))
        self.next_index = 0
        self.lock = threading.Lock()

    def take(self) -> tuple[int, float] | None:
        """(index, time) of the next arrival, or None once the schedule is exhausted."""
        with self.lock:
            if self.next_index >= len(self.times):
                return None
            index = self.next_index
            self.next_index += 1
            return index, float(self.times[index])
