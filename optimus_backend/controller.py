"""Which chunk size c (positions fed per request) each step uses: fixed, or elastic (saturation-aware).

The elastic rule, every step at batch b: c* = argmax_c sum_i E[w_i(c)]/T(b, c), committed tokens per second, where T
comes from the profiled cost model, w_i(c) = min(c, spare_i) is the window chunk c gives request i (its window ends at
its block's end: spare_i is its room left there), and E[w] (committed tokens per request per step with a whole
window of w positions) is learned online from the requests whose window was whole:

- Learned from every request of a step, E[large c] came from the steps where the rooms were short (a large c costs
  no more there, so it was chosen then) and came out low: on an H200 at 4 users, 3.1 tokens for c = 32 inside
  elastic against 4.07 in a chunk:32 run, and elastic kept c near 16 where 28-32 was best. A cut window is priced
  at E[its window] but teaches nothing: what it commits depends on where its request stood, since a window's first
  positions are those the step before committed, fed again to be cached. Learning E at every request's window
  (cut ones included) or at the positions from the first MASK let a large c's regime teach low E at the small
  windows and stick (at 64 users, c = 12-18 where chunk:8 was best: docs/CONTROLLER.md). A c past every request's
  room runs the same step as the longest room, so it is not chosen (its step-time factor would be learned from
  another c's steps). Without rooms (a caller that gives none) every window is c.
- E[c] is a moving average per c that counts requests, not steps (a step of b requests weighs like b
  observations, capped so that one step never dominates): a running mean while few requests are behind it, an
  exponential moving average after that. Each estimate carries the requests' worth of information behind it (its
  inverse variance), which halves every ``half_life`` steps that c is not observed: an old estimate keeps its value
  but grows less certain.
- Decisions use confidence bounds: the estimates made nondecreasing in c by a weighted isotonic fit (an estimate
  from a few requests yields to better-measured neighbours), plus or minus ``Z`` standard errors, and clipped by
  the nearest observed neighbours, assuming E is nondecreasing in c and E[c]/c nonincreasing: at most
  min(c, E[above], E[below] * c / below), at least max(E[below], E[above] * c / above) (the E[c]/c part is dropped
  while measured estimates contradict it). An unobserved c gets the neighbours' bounds only. The choice uses the
  upper bound: this optimism is the only exploration, a c is tried when it could beat the best known one, so a c
  far from the best is not re-tried once measured and a close one is re-checked as its estimate ages. With nothing
  observed E[c] = c, so the first step runs the largest chunk (the cold start).
- The first observation of a c (nothing behind its estimate), when the step before ran another c, counts as
  smaller c / larger c of its requests: the windows still hold what the previous c committed (after a switch
  down they have fewer MASK slots than the steady state at that c, after a switch up more), so that step's E is
  biased, the more so the larger the switch. Counted in full, it would give a c tried once a narrow bound around a
  wrong value, and that c would not be tried again.
- The surprise, a fast moving average of observed / estimated E over the steps (whatever their c), detects a
  shift in acceptance: when it leaves 1 by more than ``drift``, every other estimate is forgotten. A step without
  windows counts in it by the share of b * c decode tokens it fed: windows cut short (the last steps of a draining
  load) commit less without any shift.
- T(b, c) is the profile at the tokens the step really runs (a c that leaves a CUDA graph bucket part empty pays
  for all of it, so c that fill a bucket win), times that c's measured / profiled step time over the steps without
  prefill (a step's prefill is paid whichever c runs, so it is kept out): a running mean over the c's first steps,
  a moving average after that, a step's ratio held within ``RATIO_BAND`` of the recent steps' median, which starts
  at the profile's (one slow step, a collection or a compile on first use, can't price a c out, the first one
  included). A profile made on another machine can be off by a
  different factor at each c. A c not yet run takes the factor interpolated in log c between the nearest c that
  ran (the nearest one's beyond them): profile errors change smoothly with c. The factors are learned per batch
  range (powers of two): the host's part of a step, which the profile leaves out, makes a step at a small batch
  1.3-1.5x its profile and one at 64 requests ~1.1x, so a factor learned in the first steps at small batches priced
  its c out at large ones. A range where no c ran yet takes the nearest range's factors. Each range's factors are
  its level, the part common to every c (a moving average over every step of the range), times each c's own
  factor: when all step times drift (prefixes grow through a closed batch of long requests), the c that runs
  learns the drift and the level carries it to the c not run lately, which would otherwise keep older, lower times
  and win the next choices.
- Decisions lower each factor by ``Z_TIME`` of its standard errors (optimism in T, as in E): a c whose few steps
  came out slow would otherwise keep a high factor and never run again, and with step times that spread by a few
  percent the choice drifted to a smaller c whose factor happened to land low. The error of a factor after n steps
  in its range combines the error of its prior (counted as two steps) and the step-to-step spread, both measured
  as running means of a step's squared log deviation from its c's factor (a c's first step in a range, later ones),
  less the recent steps' median deviation: an error common to every c (all factors still learning a profile made
  elsewhere) does not change which c wins, and counted as prior error it kept the controller exploring.
- With a TPOT SLO, c must keep T(b, c)/E[c] <= SLO by the lower bound of E (so exploration never gambles with the
  SLO) when some candidate does. At a fixed b the throughput-best c is also the TPOT-best (b is common to all
  candidates), so the SLO acts mostly through admission: ``can_admit`` says whether one more request still leaves
  a c that keeps it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .config import DecodingMode
from .cost_model import CostModel, isotonic

HISTORY_LEN = 4096  # step records kept for metrics and plots
EMA_ALPHA = 0.003  # weight of one request's observation in E[c]
FAST_ALPHA = 0.05  # the same for the surprise (observed / estimated E) that detects acceptance shifts
MAX_SURPRISE_STEP_WEIGHT = 0.25  # at most this weight for one step in the surprise: a shift must last a few steps
MAX_STEP_WEIGHT = 0.02  # at most this weight for one step however large the batch (its requests are correlated)
MIN_SAMPLES = 8  # requests behind an estimate before it can veto the E[c]/c bound
Z = 0.7  # standard errors of an estimate in its confidence bounds (variance taken as the mean)
RATIO_SLACK = 0.15  # how far measured E[c]/c may rise with c before that bound is dropped
HALF_LIFE = 512  # steps without an observation that halve the information behind an estimate
DRIFT = 0.25  # how far the surprise may leave 1 before every other estimate is forgotten
LATENCY_ALPHA = 0.05  # least weight of one step in the measured / profiled step-time factors
LEVEL_ALPHA = 0.05  # weight of one step in a batch range's level, the part of its factors common to every c
RATIO_BAND = 1.2  # a step's measured / profiled ratio counts as at most this far from the recent median's
RATIO_WINDOW = 9  # steps in that median
PREFIX_BUCKET = 64  # step-time predictions are cached per batch and prefix bucket
TABLES_KEPT = 512  # profile tables (T at every token count, a few thousand floats each) kept before a reset
BATCH_RANGES = 10  # step-time factors are learned per batch range [2**k, 2**(k+1)), k < BATCH_RANGES (the last open)
Z_TIME = 0.5  # standard errors by which a c's step-time factor is lowered in decisions (optimism in T)
PREPARED_BATCHES = 8  # prepare() makes the choice's tables for batches this far from the last choice's


@dataclass(frozen=True)
class StepRecord:
    """One engine step as the controller saw it."""

    step: int
    batch: int  # decoding requests, the choice's batch (not those that only prefill): its range learns the step time
    chunk: int
    fed_tokens: int
    committed_tokens: int
    measured_ms: float  # the whole step: scheduling, forward, commits and streaming
    predicted_ms: float | None = None  # None: filled in by the controller from its own prediction
    profiled_ms: float | None = None  # the profile's T for the choice (elastic); None: as for predicted_ms
    prefill_tokens: int = 0  # prompt tokens prefilled in the same step (not part of ``batch``)
    windows: tuple[int, ...] | None = None  # each scored request's window (``StepPlan.window``); None: every one whole
    commits: tuple[int, ...] = ()  # the tokens each of them committed, with ``windows``


class ChunkController:
    """The interface the scheduler uses, plus the bounded history of observed steps."""

    def __init__(self, cost_model: CostModel | None = None, history_len: int = HISTORY_LEN):
        self.cost_model = cost_model
        self.history: deque[StepRecord] = deque(maxlen=history_len)
        self.last_predicted_ms: float | None = None
        self.last_profiled_ms: float | None = None

    def choose(self, batch: int, prefix: float | None = None,
               step_tokens: Callable[[Sequence[int]], Sequence[int]] | None = None,
               spares: Callable[[], list[int] | None] | None = None) -> int:
        """The chunk size for this step of ``batch`` decoding requests (``prefix``: their mean cached length;
        ``step_tokens``: the decode tokens the step really runs for each chunk size, default ``batch * c``;
        ``spares``: each request's room for a window, before its block's end, if known)."""
        raise NotImplementedError

    def observe(self, record: StepRecord) -> None:
        """Records a finished step (a missing predicted_ms is the last choice's prediction, and its profiled_ms)."""
        self.history.append(self.completed(record))

    def completed(self, record: StepRecord) -> StepRecord:
        """``record`` with the last choice's predicted and profiled ms if it has no prediction of its own."""
        if record.predicted_ms is not None:
            return record
        return dataclasses.replace(record, predicted_ms=self.last_predicted_ms, profiled_ms=self.last_profiled_ms)

    def prepare(self) -> None:
        """Work for the next choice that does not depend on its batch; the engine calls it while the device runs a
        step, after observing the step before."""

    def can_admit(self, running: int) -> bool:
        """Whether one more request may join ``running`` ones (the KV pool is the scheduler's check)."""
        return True


class FixedController(ChunkController):
    """Always the same c: chunk:c, AR (c = 1) and BD (c = B)."""

    def __init__(self, chunk: int, cost_model: CostModel | None = None, history_len: int = HISTORY_LEN):
        super().__init__(cost_model, history_len)
        if chunk < 1:
            raise ValueError(f"chunk: must be >= 1, got {chunk}")
        self.chunk = chunk

    def choose(self, batch: int, prefix: float | None = None,
               step_tokens: Callable[[Sequence[int]], Sequence[int]] | None = None,
               spares: Callable[[], list[int] | None] | None = None) -> int:
        if self.cost_model is not None:
            self.last_predicted_ms = self.cost_model.predict(max(batch, 1), self.chunk, prefix)
        return self.chunk


class ElasticController(ChunkController):
    """Saturation-aware chunk size: maximizes predicted committed tokens per second every step."""

    def __init__(self, cost_model: CostModel, block_size: int, tpot_slo_ms: float | None = None,
                 ema_alpha: float = EMA_ALPHA, half_life: float = HALF_LIFE, drift: float = DRIFT,
                 history_len: int = HISTORY_LEN):
        super().__init__(cost_model, history_len)
        self.candidates = np.arange(1, block_size + 1)
        self._chunk_values = self.candidates.astype(float)
        self._chunk_list = self.candidates.tolist()
        self._neighbour_cache: dict[bytes, tuple[np.ndarray, ...]] = {}
        self.tpot_slo_ms = tpot_slo_ms
        self.ema_alpha, self.half_life, self.drift = ema_alpha, half_life, drift
        self.estimate = np.zeros(block_size)  # E[c], index c - 1
        self.count = np.zeros(block_size)  # requests' worth of information behind each estimate when last observed
        self.seen = np.zeros(block_size)  # step of the last observation
        self.surprise = 1.0  # fast moving average of observed / estimated E at the chosen c
        # measured / profiled step time of each c that ran, relative to its batch range's level (the part common to
        # every c, which follows a drift of all step times: prefixes grow), and the steps without prefill it ran
        self.learned_factor = np.ones((BATCH_RANGES, block_size))
        self.level = np.ones(BATCH_RANGES)
        self.latency_steps = np.zeros((BATCH_RANGES, block_size))
        # of the last steps without prefill, any c; it starts as the profile's, so that the first steps' ratios are
        # held near it too (a kernel autotuned or compiled on first use makes a step many times slower)
        self._recent_ratios: deque[float] = deque([1.0] * RATIO_WINDOW, maxlen=RATIO_WINDOW)
        self._log_chunks = np.log(self._chunk_values)
        self._factors: dict[int, np.ndarray] = {}  # time_factors() per batch range as of ``_factors_step`` steps
        self._factors_step = -1
        self._last_batch = 1  # the batch of the last choice
        self._ranges_run: set[int] = set()  # batch ranges where some c ran
        # squared log deviations of a step's ratio from its c's factor: [first steps of a c in a range, later steps]
        # (less the median of the last steps' log deviations: an error common to every c does not change the choice)
        self._deviation_sums, self._deviation_counts = np.zeros(2), np.zeros(2)
        self._recent_deviations: deque[float] = deque(maxlen=RATIO_WINDOW)
        self.steps = 0
        self._previous_chunk: int | None = None  # the c of the last observed step
        # (batch, prefix bucket) -> T at 0, 1, ... tokens, as an array and as a list (the choice's lookups)
        self._tables: dict[tuple[int, int | None], tuple[np.ndarray, list[float]]] = {}
        self._optimistic: dict[int, np.ndarray] = {}  # decision_factors() per batch range, as of _optimistic_step
        self._optimistic_step = -1
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None  # bounds() as of ``_bounds_step`` observed steps
        self._bounds_step = -1

    def requests(self) -> np.ndarray:
        """The requests' worth of information behind each estimate now: its count, halved every ``half_life``
        steps without an observation (0: never observed, or not since the last shift)."""
        return self.count * 0.5 ** ((self.steps - self.seen) / self.half_life)

    def neighbour_bounds(self, upper: np.ndarray, lower: np.ndarray, known: np.ndarray,
                         ratio: bool) -> tuple[np.ndarray, np.ndarray]:
        """(most, least) E[c] can be for every c given the confidence limits of the nearest ``known`` estimates
        strictly above and below it, assuming E is nondecreasing in c and, if ``ratio``, E[c]/c nonincreasing."""
        c = self._chunk_values
        hi, lo = upper[known], lower[known]
        if not len(hi):
            return c, np.zeros_like(c)
        k, up, has_up, down, has_down = self._neighbours(known)
        high = np.minimum(c, np.where(has_up, hi[up], np.inf))
        low = np.where(has_down, lo[down], 0.0)
        if ratio:
            high = np.minimum(high, np.where(has_down, hi[down] * c / k[down], np.inf))
            low = np.maximum(low, np.where(has_up, lo[up] * c / k[up], 0.0))
        return high, np.minimum(low, high)

    def _neighbours(self, known: np.ndarray) -> tuple[np.ndarray, ...]:
        """(known c values; for every c the index among them of the nearest known c' > c, whether there is one;
        the same for c' < c), cached per set of known c (it changes only when a c is first or last seen)."""
        key = known.tobytes()
        if key not in self._neighbour_cache:
            if len(self._neighbour_cache) > HISTORY_LEN:
                self._neighbour_cache.clear()
            c = self._chunk_values
            k = c[known]
            up = np.minimum(np.searchsorted(k, c, side="right"), len(k) - 1)
            down = np.maximum(np.searchsorted(k, c, side="left") - 1, 0)
            self._neighbour_cache[key] = k, up, k[up] > c, down, k[down] < c
        return self._neighbour_cache[key]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(optimistic, pessimistic) E[c] for decisions: the estimates made nondecreasing in c (a weighted
        isotonic fit, so an estimate from few requests yields to better-measured neighbours) plus or minus ``Z``
        standard errors, clipped to what the nearest observed neighbours allow; an unobserved c gets only the
        neighbours' bounds. The E[c]/c bound is used only while the estimates agree with it (``RATIO_SLACK``)."""
        n = self.requests()
        known = n > 0
        values = self.estimate.copy()
        values[known] = isotonic(self.estimate[known], n[known])
        error = Z * np.sqrt(np.maximum(values, 0.5) / np.maximum(n, 1e-9))  # variance taken as the mean
        upper, lower = np.where(known, values + error, np.inf), np.where(known, np.maximum(values - error, 0.0), 0.0)
        measured = n >= MIN_SAMPLES
        per_token = values[measured] / self.candidates[measured]
        ratio = bool(np.all(per_token[1:] <= per_token[:-1] * (1.0 + RATIO_SLACK)))
        high, low = self.neighbour_bounds(upper, lower, known, ratio)
        optimistic = np.minimum(upper, high)
        return np.maximum(optimistic, 1e-6), np.minimum(np.maximum(lower, low), optimistic)

    def profiled(self, batch: int, tokens: np.ndarray, prefix: float | None = None) -> np.ndarray:
        """The profile's T for steps of ``batch`` requests running ``tokens`` (integer) decode tokens in all."""
        tokens = np.asarray(tokens)
        return self._table(batch, prefix, int(np.max(tokens)))[0][tokens]

    def _table(self, batch: int, prefix: float | None, tokens: int) -> tuple[np.ndarray, list[float]]:
        """T at every token count up to at least ``tokens`` for steps of ``batch`` requests, as an array and a list:
        made once per batch and prefix bucket (evaluating the curve every step was a third of the choice's host
        time, which the device waits for)."""
        bucket = None if prefix is None else int(prefix) // PREFIX_BUCKET
        key = (batch, bucket)
        table = self._tables.get(key)
        if table is None or len(table[1]) <= tokens:
            if len(self._tables) > TABLES_KEPT:
                self._tables.clear()
            at = None if bucket is None else (bucket + 0.5) * PREFIX_BUCKET
            size = max(tokens, batch * len(self.candidates) * 3 // 2) + 1  # room for CUDA graph padding (<= 1.5x)
            values = self.cost_model.chunk_curve(batch, at)(np.arange(size) / batch)
            table = self._tables[key] = values, values.tolist()
        return table

    def step_profile(self, batch: int, prefix: float | None = None,
                     step_tokens: Callable[[Sequence[int]], Sequence[int]] | None = None) -> np.ndarray:
        """The profile's T(batch, c) for every candidate at the tokens the step really runs (windows cut short feed
        less; a c that leaves a CUDA graph bucket part empty pays for all of it)."""
        tokens = batch * self.candidates if step_tokens is None else np.asarray(step_tokens(self._chunk_list))
        return self.profiled(batch, np.maximum(tokens, 1), prefix)

    def step_times(self, batch: int, prefix: float | None = None,
                   step_tokens: Callable[[Sequence[int]], Sequence[int]] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(predicted, profiled) T(batch, c) for every candidate: ``step_profile``, and it times each c's measured /
        profiled factor (``time_factors``)."""
        profiled = self.step_profile(batch, prefix, step_tokens)
        return profiled * self.time_factors(batch), profiled

    @staticmethod
    def batch_range(batch: int) -> int:
        """The batch range whose step-time factors price a step of ``batch`` requests: k for [2**k, 2**(k+1)). (Ranges
        centred on powers of two, so that a steady load of 2**k users stays in one, did worse at 128 users on two
        H200 hosts: docs/CONTROLLER.md, "Whole windows on the GPU, and the host time of the choice".)"""
        return min(max(int(batch), 1).bit_length() - 1, BATCH_RANGES - 1)

    def nearest_range_run(self, wanted: int) -> int:
        """The batch range nearest ``wanted`` where some c ran (``wanted`` itself before any ran)."""
        return min(self._ranges_run, key=lambda r: abs(r - wanted), default=wanted)

    def time_factors(self, batch: int) -> np.ndarray:
        """Each c's measured / profiled step time at ``batch`` requests: learned in its batch range for a c that ran
        there, interpolated in log c between the nearest c that ran there for one that has not, the nearest one's
        beyond them; the nearest range's where no c ran in this one (1 before any c ran)."""
        if self._factors_step != self.steps:
            self._factors, self._factors_step = {}, self.steps
        wanted = self.batch_range(batch)
        if wanted not in self._factors:
            factors = np.ones(len(self.candidates))
            if self._ranges_run:
                k = self.nearest_range_run(wanted)
                ran, factors = self.latency_steps[k] > 0, self.learned_factor[k].copy()
                if not ran.all():
                    log_factors = np.interp(self._log_chunks, self._log_chunks[ran], np.log(factors[ran]))
                    factors[~ran] = np.exp(log_factors[~ran])
                factors *= self.level[k]
            self._factors[wanted] = factors
        return self._factors[wanted]

    def choose(self, batch: int, prefix: float | None = None,
               step_tokens: Callable[[Sequence[int]], Sequence[int]] | None = None,
               spares: Callable[[], list[int] | None] | None = None) -> int:
        self._last_batch = batch = max(batch, 1)
        rate, profiled = self._rates(batch, prefix, step_tokens, spares)
        index = max(range(len(rate)), key=rate.__getitem__)  # the first best, as argmax
        self.last_profiled_ms = profiled[index]
        self.last_predicted_ms = profiled[index] * float(self.time_factors(batch)[index])
        return self._chunk_list[index]

    def rates(self, batch: int, prefix: float | None = None,
              step_tokens: Callable[[Sequence[int]], Sequence[int]] | None = None,
              spares: Callable[[], list[int] | None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(decision rate of every c: optimistic committed tokens per request per ms, -inf where c is ruled out;
        the profile's step time; the learned step-time factors) for the next step; ``choose`` takes the best c."""
        rate, profiled = self._rates(max(batch, 1), prefix, step_tokens, spares)
        return np.array(rate), np.array(profiled), self.time_factors(batch)

    def _rates(self, batch: int, prefix: float | None, step_tokens: Callable[[Sequence[int]], Sequence[int]] | None,
               spares: Callable[[], list[int] | None] | None) -> tuple[list[float], list[float]]:
        """``rates``' first two as lists, in plain Python: the engine waits for the choice, and a numpy call lets go
        of the GIL, so another thread (one sending the last step's deltas, a client's) could hold the engine up. On
        a 2-core CPU at 128 requests, beside one busy thread, the numpy choice took 392 us and this one 132 us (57
        and 60 us alone)."""
        chunks = self._chunk_list
        tokens = [batch * c for c in chunks] if step_tokens is None else step_tokens(chunks)
        table = self._table(batch, prefix, int(max(tokens)))[1]
        profiled = [table[max(int(t), 1)] for t in tokens]
        upper, lower = (bound.tolist() for bound in self.decision_bounds())
        rooms = None if spares is None else spares()
        factors = self.decision_factors(batch).tolist()
        rate = [e / (f * t) for e, f, t in zip(self.window_mean(upper, rooms), factors, profiled)]
        if rooms:  # a c past every request's room runs the same step as the longest room: that c names it
            longest = max(rooms)
            rate = [r if c <= longest else -math.inf for c, r in zip(chunks, rate)]
        if self.tpot_slo_ms is not None:  # exploration never gambles with the SLO
            floors = self.window_mean(lower, rooms)
            keeps = [t * f <= self.tpot_slo_ms * e
                     for t, f, e in zip(profiled, self.time_factors(batch).tolist(), floors)]
            if any(keeps):
                rate = [r if keep else -math.inf for r, keep in zip(rate, keeps)]
        return rate, profiled

    def window_mean(self, values: Sequence[float], spares: list[int] | None) -> Sequence[float]:
        """For every c, the mean over the step's requests of ``values`` (E bounds, by window) at the window c gives
        each: min(c, its spare room); ``values`` itself when the spares are unknown (every window c)."""
        if not spares:
            return values
        size = len(self._chunk_list)
        at_room = [0] * (size + 1)  # requests whose window is cut at each room (a histogram: rooms are at most B)
        for spare, requests in Counter(spares).items():
            at_room[min(max(spare, 1), size)] += requests
        count, means, cut, cut_sum = len(spares), [], 0, 0.0
        for c, value in zip(self._chunk_list, values):  # cut: requests whose room is under c, cut_sum: their E
            means.append((cut_sum + (count - cut) * value) / count)
            cut, cut_sum = cut + at_room[c], cut_sum + at_room[c] * value
        return means

    def decision_factors(self, batch: int) -> np.ndarray:
        """``optimistic_factors`` at ``batch`` requests, once per observed step and batch range."""
        if self._optimistic_step != self.steps:
            self._optimistic, self._optimistic_step = {}, self.steps
        wanted = self.batch_range(batch)
        if wanted not in self._optimistic:
            self._optimistic[wanted] = self.optimistic_factors(batch)
        return self._optimistic[wanted]

    def optimistic_factors(self, batch: int) -> np.ndarray:
        """``time_factors`` lowered by ``Z_TIME`` standard errors each: (4 * prior error + n * spread) / (n + 2)**2
        in log terms for a c of n steps in the batch range (n capped at the moving average's effective count)."""
        prior_error, spread = self._deviation_sums / np.maximum(self._deviation_counts, 1.0)
        n = np.minimum(self.latency_steps[self.batch_range(batch)], 2.0 / LATENCY_ALPHA - 1.0)
        error = np.sqrt((4.0 * prior_error + n * spread) / (n + 2.0) ** 2)
        return self.time_factors(batch) * np.exp(-Z_TIME * error)

    def decision_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``bounds()``, computed once per observed step."""
        if self._bounds_step != self.steps:
            self._bounds, self._bounds_step = self.bounds(), self.steps
        return self._bounds

    def prepare(self) -> None:
        """The bounds, and the decision factors and profile tables of the batches near the last choice's (requests join
        and leave: at 128 users a step's batch is 115-128, on both sides of a batch range's edge), so that the
        choice, which the device waits for, finds them made."""
        self.decision_bounds()
        last = self._last_batch
        for batch in range(max(last - PREPARED_BATCHES, 1), last + PREPARED_BATCHES + 1):
            self.decision_factors(batch)
            self._table(batch, None, batch * len(self._chunk_list))

    def observe(self, record: StepRecord) -> None:
        record = self.completed(record)
        super().observe(record)
        self.steps += 1
        i = record.chunk - 1
        if record.batch <= 0 or not 0 <= i < len(self.candidates):
            return
        if record.measured_ms > 0 and not record.prefill_tokens:
            profiled = (record.profiled_ms if record.profiled_ms is not None
                        else self.cost_model.predict(record.batch, record.chunk))
            ratio = record.measured_ms / profiled
            self._recent_ratios.append(ratio)
            usual = statistics.median(self._recent_ratios)  # one slow step (a collection) can't price a c out
            ratio = min(max(ratio, usual / RATIO_BAND), usual * RATIO_BAND)
            k = self.batch_range(record.batch)
            if k not in self._ranges_run:  # a range's first step starts from the nearest range's level
                self.level[k] = self.level[self.nearest_range_run(k)]
            own = self.time_factors(record.batch)[i]  # a c's first step in a range starts from its interpolated factor
            self._recent_deviations.append(float(np.log(ratio / own)))
            if len(self._recent_deviations) >= 3:  # less the recent steps' common part (every factor lagging)
                later = int(self.latency_steps[k, i] > 0)  # 0: the c's first step in this range
                self._deviation_sums[later] += (self._recent_deviations[-1]
                                                - statistics.median(self._recent_deviations)) ** 2
                self._deviation_counts[later] += 1
            self.level[k] *= (ratio / own) ** LEVEL_ALPHA
            relative, own = ratio / self.level[k], own / self.level[k]
            weight = max(LATENCY_ALPHA, 1.0 / (self.latency_steps[k, i] + 3.0))  # the prior counts as two steps
            self.learned_factor[k, i] = own + weight * (relative - own)
            self.latency_steps[k, i] += 1
            self._ranges_run.add(k)
            self._factors_step = self._optimistic_step = -1
        self._observe_acceptance(record)

    def _observe_acceptance(self, record: StepRecord) -> None:
        """Updates E[c] from the step's requests whose window was whole, c positions (one the room cut commits by
        where its request stood, not by c), or from all of them when the record has no windows; and the surprise."""
        if record.windows is not None:
            whole = [k for w, k in zip(record.windows, record.commits) if w >= record.chunk]
            count, committed, full = len(whole), sum(whole), 1.0  # the windows say how much each request was fed
        else:
            count, committed = record.batch, record.committed_tokens
            full = min((record.fed_tokens - record.prefill_tokens) / (record.batch * record.chunk), 1.0)
        share = switch_share(record.chunk, self._previous_chunk)
        self._previous_chunk = record.chunk
        if not count:
            return
        i = record.chunk - 1
        n = self.requests()[i]
        value = committed / count
        b = count * (share if n <= 0 else 1.0)  # requests' worth
        if n * FAST_ALPHA >= 1.0 and self.estimate[i] > 0:
            weight = min(1.0 - (1.0 - FAST_ALPHA) ** b, MAX_SURPRISE_STEP_WEIGHT) * max(full, 0.0)
            self.surprise += weight * (value / self.estimate[i] - self.surprise)
            if abs(self.surprise - 1.0) > self.drift:  # acceptance shifted: forget every other c
                self.count[:], self.surprise = 0.0, 1.0
                n = min(n, 1.0 / FAST_ALPHA)  # keep this one, but let it move fast
        # A running mean while few requests are behind the estimate, an EMA over requests after that.
        step_weight = min(1.0 - (1.0 - self.ema_alpha) ** b, MAX_STEP_WEIGHT)
        weight = max(step_weight, b / (n + b))
        self.estimate[i] += weight * (value - self.estimate[i])
        self.count[i] = 1.0 / ((1.0 - weight) ** 2 / n + weight**2 / b) if n > 0 else b  # inverse variance
        self.seen[i] = self.steps

    def can_admit(self, running: int) -> bool:
        """False only when an SLO is set and, by what is known, no c keeps it with ``running + 1`` requests."""
        if self.tpot_slo_ms is None or not self.count.any():
            return True
        return bool(np.any(self.step_times(running + 1)[0] <= self.tpot_slo_ms * self.decision_bounds()[1]))


def switch_share(chunk: int, previous: int | None) -> float:
    """The share of a step's requests its E observation counts for when the step before ran ``previous``."""
    if previous is None or previous == chunk:
        return 1.0
    return min(chunk, previous) / max(chunk, previous)


def controller_for(mode: DecodingMode, block_size: int, cost_model: CostModel | None = None,
                   tpot_slo_ms: float | None = None) -> ChunkController:
    """The controller a decoding mode runs with: ar -> c=1, bd -> c=B, chunk:c -> c, elastic -> elastic."""
    if mode.kind == "elastic":
        if cost_model is None:
            raise ValueError("elastic mode needs a cost model (run `optimus profile`)")
        return ElasticController(cost_model, block_size, tpot_slo_ms)
    chunk = {"ar": 1, "bd": block_size}.get(mode.kind, mode.chunk)
    return FixedController(min(chunk, block_size), cost_model)
