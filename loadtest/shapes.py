"""Open-loop load shapes: Poisson arrivals whose rate holds constant, steps, or ramps.

A schedule is the simulator's ``LoadSchedule`` (piecewise-linear rate over time), written as a spec:
``"60@2"`` holds 2 req/s for 60 s, ``"30@1,30@2,30@4"`` steps, ``"60~8"`` ramps from the previous rate (0 at the
start) to 8 req/s over 60 s; ``"users:30@2,30@64"`` is a closed loop of 2, then 64 concurrent users instead
(driver.py). Arrival times are drawn once, up front, from a seeded Poisson process, so every mode
and protocol sees the same arrivals. The Locust load shape that hands these arrivals to users lives in
locustfile.py: this module must not import locust, which monkey-patches threads into greenlets on import.
"""

from __future__ import annotations

import threading

import numpy as np

from optimus_backend.simulator import USERS_PREFIX, LoadSchedule

SEED = 0


def constant(rate: float, duration_s: float) -> LoadSchedule:
    return LoadSchedule.steady(rate, duration_s)


def parse(spec: str) -> LoadSchedule:
    """A schedule from its spec; a ramp first ramps from 0 req/s (a ``users:`` ramp from one user)."""
    spec = spec.strip()
    users = spec.startswith(USERS_PREFIX)
    body = spec.removeprefix(USERS_PREFIX)
    if "~" in body.split(",")[0]:
        body = ("0@1," if users else "0@0,") + body
    return LoadSchedule.parse((USERS_PREFIX if users else "") + body)


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
