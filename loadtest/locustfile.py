"""Locust load test of the Optimus Triton model: gRPC streaming and HTTP generate_stream (SSE) users.

Arrivals are open loop: a Poisson process whose rate follows ``--schedule`` (constant ``"600@2"``, steps
``"60@1,60@2,60@4"``, ramps ``"120~8"``; see shapes.py), drawn once and handed to the users in order, so a slow
server builds a queue instead of slowing the arrivals. A ``users:`` schedule (``"users:60@2,30~64,60@64"``) is a
closed loop instead: that many users, each sending its next request as soon as its previous one ends (Locust stops
the users above a lower count at once, cancelling their requests, which are not counted). Each request fires
three Locust request events, all in ms and measured from its scheduled arrival: ``TTFT``, ``TPOT`` ((e2e - TTFT)
/ (tokens - 1)) and ``E2E`` (its response length is the output token count; a failed request fails this event).
Prompts are held-out eval problems in the checkpoint's chat template.

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 --grpc-url 127.0.0.1:8001 \\
        --schedule 600@2 --csv out/locust/soak GrpcStreamUser      # or HttpStreamUser
"""

from __future__ import annotations

import queue
import time

import gevent
import grpc.experimental.gevent as grpc_gevent
from locust import LoadTestShape, User, events, task

from client import http
from client.grpc_stream import GrpcStream, read_generation
from client.result import Generation
from loadtest.shapes import Arrivals, parse
from loadtest.workload import eval_prompts
from optimus_backend.config import DEFAULT_CHECKPOINT
from optimus_backend.simulator import LoadSchedule

grpc_gevent.init_gevent()  # gRPC's own threads must cooperate with Locust's greenlets

PROMPTS: list[str] = []


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    parser.add_argument("--schedule", default="60@1",
                        help="arrival rate schedule, e.g. 600@2, 60@1,60@2, 120~8; or users:60@2,60@64 (closed loop)")
    parser.add_argument("--grpc-url", default="127.0.0.1:8001", help="Triton gRPC address (GrpcStreamUser)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="whose chat template the prompts use")
    parser.add_argument("--prompts-per-task", type=int, default=64, help="held-out problems per eval task")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request")
    parser.add_argument("--ignore-eos", action="store_true", help="every request generates max_tokens")
    parser.add_argument("--max-in-flight", type=int, default=64, help="users, i.e. the most requests in flight")
    parser.add_argument("--drain-s", type=float, default=60.0, help="wait for requests in flight after the schedule")
    parser.add_argument("--request-timeout-s", type=float, default=600.0)


@events.init.add_listener
def _setup(environment, **_) -> None:
    options = environment.parsed_options
    if options is None:
        return
    if not PROMPTS:
        PROMPTS.extend(eval_prompts(options.prompts_per_task))
    # gRPC under gevent polls each channel's completion queue from gevent's thread pool (10 threads by default):
    # with more streams than threads, responses wait for a free thread (seconds, seen here with 16 users).
    schedule = parse(options.schedule)
    users = schedule.peak if schedule.users else options.max_in_flight
    gevent.get_hub().threadpool.maxsize = 2 * int(users) + 8


class ArrivalShape(LoadTestShape):
    """Keeps ``--max-in-flight`` users (a ``users:`` schedule: its users of the moment) for the schedule's
    duration, then up to ``--drain-s`` while requests are in flight; hands each user the next scheduled arrival
    (closed loop: the moment it asks)."""

    schedule: LoadSchedule | None = None
    arrivals: Arrivals | None = None
    sent = 0
    in_flight = 0

    def _options(self):
        return self.runner.environment.parsed_options

    def reset_time(self) -> None:
        super().reset_time()
        self.schedule = parse(self._options().schedule)
        self.arrivals = None if self.schedule.users else Arrivals(self.schedule)
        self.sent = self.in_flight = 0

    def next_arrival(self) -> tuple[int, float] | None:
        """(index, absolute perf_counter time) of the next arrival, or None when the schedule is exhausted."""
        if self.schedule is None:
            return None
        if self.schedule.users:
            if self.get_run_time() >= self.schedule.duration:
                return None
            self.sent += 1
            return self.sent - 1, time.perf_counter()
        taken = self.arrivals.take()
        return None if taken is None else (taken[0], self.start_time + taken[1])

    def tick(self) -> tuple[int, float] | None:
        options, run_time = self._options(), self.get_run_time()
        end = self.schedule.duration if self.schedule is not None else float("inf")
        if run_time > end and (self.in_flight == 0 or run_time > end + options.drain_s):
            return None
        if self.schedule is not None and self.schedule.users:  # past the end, the last users finish theirs
            users = self.schedule.users_at(min(run_time, end - 1e-6))
            return users, float(max(users, 100))
        return options.max_in_flight, float(options.max_in_flight)


class _StreamUser(User):
    """One request in flight at a time, started at its scheduled arrival; reports TTFT / TPOT / E2E."""

    abstract = True
    protocol = ""

    def params(self) -> dict:
        options = self.environment.parsed_options
        return {"max_tokens": options.max_tokens, "ignore_eos": options.ignore_eos}

    def generate(self, prompt: str) -> Generation:
        raise NotImplementedError

    @task
    def arrive(self) -> None:
        shape = self.environment.shape_class
        arrival = shape.next_arrival()
        if arrival is None:
            gevent.sleep(1.0)
            return
        index, at = arrival
        gevent.sleep(max(0.0, at - time.perf_counter()))
        shape.in_flight += 1
        try:
            sent = time.perf_counter()
            gen = self.generate(PROMPTS[index % len(PROMPTS)])
        finally:
            shape.in_flight -= 1
        self.report(gen, at, sent)

    def report(self, gen: Generation, arrival: float, sent: float) -> None:
        fire = self.environment.events.request.fire
        e2e_ms = (sent + gen.e2e_s - arrival) * 1e3
        tokens = gen.num_output_tokens or 0
        if gen.error is not None:
            fire(request_type=self.protocol, name="E2E", response_time=e2e_ms, response_length=tokens,
                 exception=RuntimeError(gen.error), context={})
            return
        ttft_ms = (sent + gen.ttft_s - arrival) * 1e3 if gen.ttft_s is not None else e2e_ms  # no text: TTFT = E2E
        fire(request_type=self.protocol, name="TTFT", response_time=ttft_ms, response_length=0, exception=None,
             context={})
        if tokens > 1:
            fire(request_type=self.protocol, name="TPOT", response_time=(e2e_ms - ttft_ms) / (tokens - 1),
                 response_length=0, exception=None, context={})
        fire(request_type=self.protocol, name="E2E", response_time=e2e_ms, response_length=tokens, exception=None,
             context={})


class GrpcStreamUser(_StreamUser):
    """Triton gRPC bidirectional streaming (tritonclient), one stream per user."""

    protocol = "grpc"

    def on_start(self) -> None:
        self.stream = GrpcStream(self.environment.parsed_options.grpc_url)

    def on_stop(self) -> None:
        self.stream.close(cancel=True)

    def generate(self, prompt: str) -> Generation:
        gen = Generation()
        self.stream.send(prompt, self.params())
        try:
            return read_generation(self.stream, gen, timeout_s=self.environment.parsed_options.request_timeout_s)
        except queue.Empty:
            gen.error = "timed out"
            self.stream.close(cancel=True)
            self.stream = GrpcStream(self.environment.parsed_options.grpc_url)
            return gen.finish()


class HttpStreamUser(_StreamUser):
    """Triton HTTP /v2/models/optimus/generate_stream (server-sent events)."""

    protocol = "http-sse"

    def generate(self, prompt: str) -> Generation:
        try:
            return http.generate_stream(prompt, self.params(), self.host,
                                        timeout_s=self.environment.parsed_options.request_timeout_s)
        except OSError as exc:
            gen = Generation()
            gen.error = f"{type(exc).__name__}: {exc}"
            return gen.finish()
