"""Open-loop load shapes: Poisson arrivals whose rate holds constant, steps, or ramps.

A schedule is the simulator's ``LoadSchedule`` (piecewise-linear rate over time), written as a spec:
``"60@2"`` holds 2 req/s for 60 s, ``"30@1,30@2,30@4"`` steps, ``"60~8"`` ramps from the previous rate (0 at the
start) to 8 req/s over 60 s. Arrival times are drawn once, up front, from a seeded Poisson process, so every mode
and protocol sees the same arrivals. ``ArrivalShape`` is the Locust side: it keeps enough users alive to carry
the load and hands each of them the next arrival time; users never pace themselves (no closed-loop wait).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from locust import LoadTestShape

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


class ArrivalShape(LoadTestShape):
    """Locust shape: ``users`` users for the schedule's duration, then up to ``drain_s`` for requests in flight.

    Subclasses (the locustfile's) set ``schedule`` / ``users`` / ``drain_s`` in ``configure`` from the parsed
    command-line options.
    """

    abstract = True
    users = 256  # the most requests in flight; arrivals wait for a free user beyond that
    drain_s = 60.0

    def configure(self, schedule: LoadSchedule, users: int, drain_s: float, seed: int = SEED) -> None:
        self.arrivals = Arrivals(schedule, seed)
        self.users, self.drain_s = users, drain_s
        self.in_flight = 0
        self.origin = time.perf_counter()

    def reset_time(self) -> None:
        super().reset_time()
        self.origin = time.perf_counter()

    def next_arrival(self) -> tuple[int, float] | None:
        """(index, absolute perf_counter time) of the next arrival for a user, or None when there is none."""
        taken = self.arrivals.take()
        return None if taken is None else (taken[0], self.origin + taken[1])

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        over = run_time > self.arrivals.schedule.duration
        if over and (self.in_flight == 0 or run_time > self.arrivals.schedule.duration + self.drain_s):
            return None
        return self.users, float(self.users)
