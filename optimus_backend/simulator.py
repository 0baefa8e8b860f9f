"""Discrete-event load simulator: replays a cost model T(b, c) and acceptance statistics under a request load.

Each simulated step takes T(b, c) from the cost model at the step's mean window (plus prefill of the prompts admitted
this step and, if set, host time per step and per request), and each decoding request commits a number of tokens
drawn from the acceptance distribution at its window: min(c, its room left in the current block), as the engine's
windows end at the block's end (BD and AR excepted); a request admitted in a step only prefills there, as in the
engine. Policies:
``elastic`` (the ElasticController), ``chunk:c`` (fixed c with prefix-KV reuse), ``bd`` (c = B without reuse: feeds
the whole block and spends one extra clean pass per finished block) and ``ar`` (c = 1, one token per step).
Arrivals are Poisson with a rate that follows a schedule (steady, steps, ramps), or come from a closed loop of
concurrent users whose number follows the schedule (a ``users:`` spec: each user sends its next request when its
previous one ends, so a faster policy serves more requests); batching is continuous.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .acceptance import AcceptanceStats
from .config import PROJECT_ROOT, DecodingMode, EngineConfig
from .controller import StepRecord, controller_for
from .cost_model import CostModel
from .scheduler import fed_tokens


USERS_PREFIX = "users:"


@dataclass
class LoadSchedule:
    """Arrival rate (requests/s) over time, piecewise linear through (time s, rate) knots; with ``users`` the
    values are concurrent users of a closed loop instead."""

    knots: list[tuple[float, float]]
    users: bool = False

    @staticmethod
    def steady(rate: float, duration: float) -> LoadSchedule:
        return LoadSchedule([(0.0, rate), (duration, rate)])

    @staticmethod
    def parse(spec: str, scale: float = 1.0) -> LoadSchedule:
        """``"30@0.2,30@1.1,60~0.1"``: hold rate 0.2 for 30 s, hold 1.1 for 30 s, ramp to 0.1 over 60 s
        (rates multiplied by ``scale``). ``"users:30@2,30@64"``: 2 concurrent users for 30 s, then 64 (not
        scaled)."""
        users = spec.startswith(USERS_PREFIX)
        spec, scale = (spec.removeprefix(USERS_PREFIX), 1.0) if users else (spec, scale)
        knots: list[tuple[float, float]] = []
        t = 0.0
        for part in spec.split(","):
            ramp = "~" in part
            seconds, rate = (float(v) for v in part.split("~" if ramp else "@"))
            if not ramp or not knots:
                knots.append((t + (1e-6 if knots else 0.0), rate * scale))
            t += seconds
            knots.append((t, rate * scale))
        if users and min(value for _, value in knots) < 1:
            raise ValueError(f"a users schedule needs at least one user throughout, got {spec!r}")
        return LoadSchedule(knots, users)

    @property
    def duration(self) -> float:
        return self.knots[-1][0]

    @property
    def peak(self) -> float:
        """The highest rate (or number of users) of the schedule."""
        return max(value for _, value in self.knots)

    def rate(self, t: float | np.ndarray) -> float | np.ndarray:
        times, rates = zip(*self.knots)
        return np.interp(t, times, rates)

    def users_at(self, t: float) -> int:
        """Concurrent users of a closed loop at ``t`` (none after the schedule ends)."""
        return round(float(self.rate(t))) if t < self.duration else 0

    def arrivals(self, rng: np.random.Generator) -> np.ndarray:
        """Arrival times of a Poisson process with this rate (by thinning)."""
        if self.users:
            raise ValueError("a users schedule has no arrival process: its users send requests in a closed loop")
        peak = self.peak
        if peak <= 0:
            return np.zeros(0)
        count = rng.poisson(peak * self.duration)
        times = np.sort(rng.uniform(0.0, self.duration, count))
        return times[rng.uniform(0.0, peak, count) < self.rate(times)]


@dataclass
class SimConfig:
    """The served system and the request mix."""

    max_batch: int = EngineConfig.max_running
    prompt_len: int = 512
    output_len: tuple[int, int] = (64, 448)  # uniform, inclusive
    warmup_s: float = 10.0  # excluded from the measurement window
    time_noise: float = 0.02  # lognormal sigma of the step time around T(b, c)
    host_ms: tuple[float, float] = (0.0, 0.0)  # host time per step and per running request, unseen by the profile
    tpot_slo_ms: float | None = None  # given to the elastic controller (admission)
    drain_factor: float = 3.0  # after the arrivals end, run at most this many schedule durations
    true_cost: CostModel | None = None  # prices the steps when it differs from the controller's profile


@dataclass
class _Request:
    arrival: float
    output_len: int
    done: int = 0
    block_done: int = 0  # BD: tokens committed in the current block
    room: int = 0  # chunk and elastic: positions left before the current block's end (0: not decoding yet)
    clean_pass: bool = False  # BD: the next step is this request's clean pass
    first_token: float | None = None
    finish: float | None = None


@dataclass
class SimResult:
    policy: str
    requests: list[_Request]
    steps: list[tuple[float, int, int, int]] = field(default_factory=list)  # (end time s, batch, chunk, committed)


def _commit(request: _Request, drawn: int, bd_block: int | None) -> int:
    """Commits up to ``drawn`` tokens of ``request``; BD (``bd_block`` given) commits within its block (at least
    one) and spends one clean pass after each finished block."""
    if bd_block is not None:
        if request.clean_pass:
            request.clean_pass = False
            return 0
        drawn = max(1, min(drawn, bd_block - request.block_done))
        request.block_done += drawn
        request.clean_pass = request.block_done == bd_block
        request.block_done %= bd_block
    k = min(drawn, request.output_len - request.done)
    request.done += k
    return k


def _draws(acceptance: AcceptanceStats, windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Committed tokens of each request, drawn at its own window."""
    draws = np.zeros(len(windows), int)
    for window in np.unique(windows):
        at = windows == window
        draws[at] = acceptance.sample(int(window), int(at.sum()), rng)
    return draws


def simulate(policy: str, cost: CostModel, acceptance: AcceptanceStats, schedule: LoadSchedule, cfg: SimConfig,
             seed: int = 0, arrivals: np.ndarray | None = None) -> SimResult:
    """Runs one policy; the same seed gives every policy the same arrivals and output lengths (with a users
    schedule, the same sequence of output lengths).

    ``arrivals``: explicit arrival times (s) instead of the schedule's Poisson process.
    """
    load_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)

    def output_lengths(count: int) -> np.ndarray:
        return load_rng.integers(cfg.output_len[0], cfg.output_len[1] + 1, count)

    if schedule.users:
        arrivals = np.zeros(0)
    elif arrivals is None:
        arrivals = schedule.arrivals(load_rng)
    pending = [_Request(float(t), int(n)) for t, n in zip(arrivals, output_lengths(len(arrivals)))]
    result = SimResult(policy, list(pending))
    block = acceptance.block_size
    mode = DecodingMode.parse(policy)
    controller = controller_for(mode, block, cost, cfg.tpot_slo_ms)
    truth = cfg.true_cost or cost
    running: list[_Request] = []
    now, end, next_arrival = 0.0, schedule.duration * (1 + cfg.drain_factor), 0
    while True:
        if schedule.users:  # each user whose request ended sends the next one now
            for length in output_lengths(max(0, schedule.users_at(now) - len(running) - len(pending) + next_arrival)):
                pending.append(_Request(now, int(length)))
                result.requests.append(pending[-1])
        if not (next_arrival < len(pending) or running) or now >= end:
            break
        admitted = 0
        while (next_arrival < len(pending) and pending[next_arrival].arrival <= now and len(running) < cfg.max_batch
               and (not running or controller.can_admit(len(running)))):
            running.append(pending[next_arrival])
            next_arrival, admitted = next_arrival + 1, admitted + 1
        if not running:
            now = pending[next_arrival].arrival
            continue
        decoding = running[:len(running) - admitted]  # as in the engine, a request only prefills in its first step
        b = len(decoding)
        windowed = mode.kind not in ("ar", "bd")  # windows cut at the block's end, as the engine's prefix reuse
        rooms = [r.room for r in decoding]
        if windowed:
            chunk = controller.choose(b, step_tokens=lambda chunks: fed_tokens(sorted(rooms), 0, chunks),
                                      spares=lambda: rooms)
        else:
            chunk = controller.choose(b)
        windows = np.minimum(chunk, rooms) if windowed else np.full(b, chunk)
        draws = np.ones(b, int) if mode.kind == "ar" else _draws(acceptance, windows, rng)
        commits = []
        prefill_tokens = cfg.prompt_len * admitted
        decode_ms = truth.predict(b, windows.mean()) * float(np.exp(rng.normal(0.0, cfg.time_noise))) if b else 0.0
        step_ms = decode_ms + truth.token_ms() * prefill_tokens + cfg.host_ms[0] + cfg.host_ms[1] * b
        now += step_ms / 1e3
        for request, drawn in zip(decoding, draws):
            k = _commit(request, int(drawn), block if mode.kind == "bd" else None)
            commits.append(k)
            request.room = request.room - k if request.room > k else block
            if k and request.first_token is None:
                request.first_token = now
            if request.done == request.output_len:
                request.finish = now
        for request in running[len(running) - admitted:]:  # its first block starts after the prompt
            request.room = block - cfg.prompt_len % block
        running = [r for r in running if r.finish is None]
        per_request = (tuple(windows.tolist()), tuple(commits)) if windowed else (None, ())
        controller.observe(StepRecord(len(result.steps), b, chunk, int(windows.sum()), sum(commits), step_ms,
                                      prefill_tokens=prefill_tokens, windows=per_request[0], commits=per_request[1]))
        result.steps.append((now, b, chunk, sum(commits)))
    return result


def summarize(result: SimResult, start: float, stop: float, slo_ms: float) -> dict:
    """Throughput over [start, stop) and latency of the requests that arrived in it (TPOT as in DESIGN §8)."""
    steps = np.array(result.steps, float).reshape(-1, 4)
    inside = (steps[:, 0] >= start) & (steps[:, 0] < stop)
    window = [r for r in result.requests if start <= r.arrival < stop]
    done = [r for r in window if r.finish is not None]
    ttft = np.array([r.first_token - r.arrival for r in done]) * 1e3
    tpot = np.array([(r.finish - r.first_token) / max(r.output_len - 1, 1) for r in done]) * 1e3
    e2e = np.array([r.finish - r.arrival for r in done])
    committed = steps[inside, 3]

    def pct(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if len(values) else float("nan")

    return {
        "policy": result.policy,
        "throughput_tok_s": float(committed.sum() / (stop - start)),
        "requests": len(window),
        "finished": len(done),
        "ttft_p50_ms": pct(ttft, 50), "ttft_p90_ms": pct(ttft, 90),
        "tpot_p50_ms": pct(tpot, 50), "tpot_p90_ms": pct(tpot, 90), "tpot_p99_ms": pct(tpot, 99),
        "e2e_p50_s": pct(e2e, 50), "e2e_p90_s": pct(e2e, 90),
        "slo_attainment": float(np.sum(tpot <= slo_ms) / len(window)) if window else float("nan"),
        "mean_batch": float(np.average(steps[inside, 1])) if inside.any() else 0.0,
        "mean_chunk": float(np.average(steps[inside, 2], weights=steps[inside, 1])) if inside.any() else 0.0,
    }


def capacity_rps(cost: CostModel, acceptance: AcceptanceStats, cfg: SimConfig) -> float:
    """Requests/s the best fixed chunk sustains at the batch limit, prefill included: the scale of rate sweeps."""
    cost = cfg.true_cost or cost
    b, mean_len = cfg.max_batch, sum(cfg.output_len) / 2
    decode_ms = min(cost.predict(b, c) / (b * acceptance.mean(c)) for c in range(1, acceptance.block_size + 1))
    return 1e3 / (mean_len * decode_ms + cost.token_ms() * cfg.prompt_len)


def load_profile(path: str | Path) -> CostModel:
    """A saved cost model, or a reference {"b x c": ms} profile (/work/shared/reference/sat_*.json)."""
    import json

    data = json.loads(Path(path).read_text())
    if "points" in data:
        return CostModel.load(path)
    name = Path(path).stem.removeprefix("sat_").split("_")[0]
    return CostModel.from_reference(path, meta={"model": name, "device": "H100 (reference naive step)",
                                                "dtype": "bfloat16"})


DEFAULT_POLICIES = "elastic,ar,bd," + ",".join(f"chunk:{c}" for c in range(1, 33))
DEFAULT_FRACTIONS = "0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.3"
DEFAULT_CHANGING = ("burst=40@0.1,40@1.1,40@0.3,40~1.0,40@0.05;"
                    "wave=30@0.1,30~0.85,30@0.85,30~0.2,30@0.2,30~0.6,30@0.05;"
                    "users=users:20@2,10~64,20@64,10~8,20@8,10~128,20@128,10~1,20@1")
OUT_DIR = PROJECT_ROOT / "docs" / "benchmarks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", type=Path, nargs="+", required=True,
                        help="cost model JSON(s): a saved profile or a reference {'b x c': ms} file")
    parser.add_argument("--acceptance", type=Path, help="acceptance statistics JSON (default: synthetic)")
    parser.add_argument("--policies", default=DEFAULT_POLICIES, help="comma list of elastic, ar, bd, chunk:c")
    parser.add_argument("--rates", default=DEFAULT_FRACTIONS,
                        help="steady rates as fractions of the estimated capacity (comma list); '' skips")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of arrivals per steady rate")
    parser.add_argument("--changing", default=DEFAULT_CHANGING,
                        help="changing loads 'label=secs@frac,secs~frac;label=...' (hold / ramp, fractions of "
                             "capacity), or 'label=users:secs@n,...' (a closed loop of n concurrent users); '' skips")
    parser.add_argument("--max-batch", type=int, default=SimConfig.max_batch)
    parser.add_argument("--prompt-len", type=int, default=SimConfig.prompt_len)
    parser.add_argument("--host-ms", default="0,0",
                        help="host time per step and per running request (ms) that the profile does not include")
    parser.add_argument("--true-profile", type=Path,
                        help="price the steps by this profile instead (e.g. one measured on the serving machine, "
                             "while the controller is given --profile from another)")
    parser.add_argument("--tpot-slo-ms", type=float, default=50.0, help="SLO for the attainment column")
    parser.add_argument("--seeds", type=int, default=1, help="repeat every run with this many seeds (mean)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)


def run(args: argparse.Namespace) -> int:
    from .acceptance import synthetic
    from .sim_report import report

    acceptance = AcceptanceStats.load(args.acceptance) if args.acceptance else synthetic()
    acceptance.save(args.out_dir / "simulated_acceptance.json")  # what these results assumed
    per_step, per_request = (float(v) for v in args.host_ms.split(","))
    cfg = SimConfig(max_batch=args.max_batch, prompt_len=args.prompt_len, host_ms=(per_step, per_request),
                    true_cost=load_profile(args.true_profile) if args.true_profile else None)
    policies = args.policies.split(",")
    fractions = [float(v) for v in args.rates.split(",") if v]
    changing = dict(item.split("=", 1) for item in args.changing.split(";") if item)
    for path in args.profile:
        cost = load_profile(path)
        for line in report(cost, acceptance, cfg, policies, fractions, args.duration, changing,
                           args.tpot_slo_ms, args.seeds, args.out_dir):
            print(line)
    return 0
