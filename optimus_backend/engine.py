"""The engine: thread-safe submit / stream / abort over a background step loop.

One step reads: schedule (who runs, chunk size) -> runner (pack, forward, commit) -> request state ->
streamed deltas. The engine imports no Triton; the Triton model is a thin adapter over it.
"""

from __future__ import annotations

import itertools
import logging
import queue
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import torch

from kernels import get_kernels

from .config import ConfigError, EngineConfig, SamplingParams, check_mode
from .controller import StepRecord, controller_for
from .decoding import make_rule
from .detokenizer import Detokenizer
from .kv_cache import PagedKVCache
from .model_setup import load_model, resolve_device
from .profiler import load_cost_model
from .request import Request, StepKind
from .runner import StepRunner
from .scheduler import Scheduler

log = logging.getLogger("optimus.engine")
SLOW_STEP_MS = 200.0  # a step longer than this and SLOW_STEP_FACTOR times the recent steps' median is logged
SLOW_STEP_FACTOR = 4.0
RECENT_STEPS = 32  # steps in that median


@dataclass
class Delta:
    """New output of one request: text and token ids committed since the previous delta."""

    text: str
    token_ids: list[int]
    finished: bool = False
    finish_reason: str | None = None
    num_input_tokens: int = 0
    num_output_tokens: int = 0
    request_id: str = ""


class RequestHandle:
    """Iterating yields Deltas until the finished one. A handle given a queue shared with other requests
    (``Engine.submit(..., deltas=)``) is not iterated: its owner reads that queue, whose deltas carry their
    request_id, so one thread serves every request and wakes only when some delta is out."""

    def __init__(self, request: Request, deltas: queue.SimpleQueue | None = None):
        self.request_id = request.request_id
        self.request = request  # read-only view of the decoding state (steps, commit steps)
        self.num_input_tokens = request.prompt_len
        # put is C code, a tenth of Queue.put
        self.deltas: queue.SimpleQueue[Delta] = queue.SimpleQueue() if deltas is None else deltas

    def __iter__(self) -> Iterator[Delta]:
        while True:
            delta = self.deltas.get()
            yield delta
            if delta.finished:
                return

    def result(self) -> tuple[str, Delta]:
        """Blocks until the end: (whole text, final delta)."""
        text = []
        for delta in self:
            text.append(delta.text)
        return "".join(text), delta


@dataclass
class _Live:
    request: Request
    handle: RequestHandle
    detokenizer: Detokenizer
    sent_tokens: int = 0
    done: bool = False  # its final delta is sent


class Engine:
    """Serves one model in one decoding mode; every method is safe to call from any thread."""

    def __init__(self, config: EngineConfig, start: bool = True):
        self.config = config.validate()
        self.mode = config.decoding_mode()
        self.device, self.dtype = resolve_device(config)
        self.model, self.tokenizer = load_model(config, self.device, self.dtype)
        self.decode = self.tokenizer.decode if self.tokenizer is not None else (lambda ids: "")
        cfg = self.model.config
        check_mode(cfg, self.mode)
        if config.block_size is not None and config.block_size != cfg.block_size:
            cfg.block_size = config.block_size
        self.kv = PagedKVCache(cfg, self._num_pages(), config.page_size, self.device, self.dtype)
        fast = config.use_kernels and self.device.type == "cuda"
        kernels = get_kernels(self.device if fast else "cpu")
        self.model.use_kernels(kernels)
        self.model.fuse_projections()
        self.runner = StepRunner(self.model, self.kv, kernels,
                                 make_rule(config.decoding_rule),
                                 (config.max_running, config.graph_max_tokens) if fast and config.cuda_graphs else None)
        cost_model = load_cost_model(config, self) if self.mode.kind == "elastic" else None
        self.controller = controller_for(self.mode, cfg.block_size, cost_model, config.tpot_slo_ms)
        self.scheduler = Scheduler(self.kv, self.controller, config.max_running,
                                   config.prefix_kv_reuse and self.mode.kind != "bd", config.out_block,
                                   self.runner.padded_tokens)
        self._live: dict[str, _Live] = {}
        self._unsent: list[_Live] = []  # the last step's requests, whose deltas go out while the next step runs
        self._unobserved: StepRecord | None = None  # the last step, for the controller while the next step runs
        # on CPU a launch computes the whole step, so nothing would overlap: both happen at the end of their step
        self.overlap_host_work = self.device.type == "cuda"
        self._inbox: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.steps = 0
        self._recent_step_ms: deque[float] = deque(maxlen=RECENT_STEPS)
        self.last_step: dict = {}
        self.totals = {"committed": 0, "fed": 0, "finished": 0, "aborted": 0, "step_ms": 0.0, "forward_ms": 0.0,
                       "schedule_ms": 0.0}
        self._thread = threading.Thread(target=self._loop, name="optimus-engine", daemon=True)
        if start:
            self._thread.start()

    def _num_pages(self) -> int:
        cfg, config = self.model.config, self.config
        budget = config.kv_budget_bytes
        if budget is None:
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
                budget = int((free + cached) * config.kv_memory_fraction)  # cached: freed, not yet returned
            else:
                budget = config.kv_cpu_bytes
        return PagedKVCache.pages_for_budget(cfg, budget, config.page_size, self.dtype)

    # ---- public API -------------------------------------------------------------------------------------
    def submit(self, prompt: str | list[int], params: SamplingParams | None = None,
               request_id: str | None = None, deltas: queue.SimpleQueue | None = None) -> RequestHandle:
        """Queues a request; raises ConfigError (naming the field) for bad input. ``deltas``: a queue shared by
        many requests to put this one's deltas on (see RequestHandle)."""
        params = (params or SamplingParams()).validate(self.config.max_tokens_limit)
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ConfigError("text_input: this model has no tokenizer; submit token ids")
            if prompt and self.config.apply_chat_template:
                prompt = self.tokenizer.apply_chat_template(prompt)
            prompt_ids = self.tokenizer.encode(prompt)
        else:
            prompt_ids = list(prompt)
        if not prompt_ids:
            raise ConfigError("text_input: the prompt is empty")
        cfg = self.model.config
        if len(prompt_ids) + params.max_tokens > cfg.max_position_embeddings:
            raise ConfigError(f"text_input: prompt of {len(prompt_ids)} tokens plus max_tokens {params.max_tokens} "
                              f"exceeds the context of {cfg.max_position_embeddings}")
        if self.kv.pages_needed(len(prompt_ids) + params.max_tokens) > self.kv.num_pages:
            raise ConfigError(f"max_tokens: the request needs more KV pages than the pool has ({self.kv.num_pages})")
        request_id = request_id or f"req-{next(self._ids)}"
        request = Request.for_model(request_id, prompt_ids, params, cfg)
        handle = RequestHandle(request, deltas)
        live = _Live(request, handle, Detokenizer(self.decode, params.stop))
        with self._lock:
            if request_id in self._live:
                raise ConfigError(f"request_id: {request_id!r} is already running")
            self._live[request_id] = live
        self._inbox.put(("add", live))
        self._wake.set()
        return handle

    def abort(self, request_id: str) -> None:
        """Ends a request at the next step boundary; its pages return to the pool."""
        self._inbox.put(("abort", request_id))
        self._wake.set()

    def generate(self, prompts: list[str | list[int]], params: SamplingParams | None = None) -> list[str]:
        """Blocking convenience: submits all prompts and returns their texts in order."""
        handles = [self.submit(p, params) for p in prompts]
        return [h.result()[0] for h in handles]

    def run_until_idle(self, max_steps: int | None = None) -> int:
        """Steps an engine built with ``start=False`` by hand until nothing runs or waits (then sends the last
        step's deltas and observation), or for ``max_steps`` steps; returns the steps taken."""
        self._drain_inbox()
        steps = 0
        while (self.scheduler.running or self.scheduler.waiting) and (max_steps is None or steps < max_steps):
            self.step()
            steps += 1
        if not self.scheduler.running and not self.scheduler.waiting:
            self._catch_up()
        return steps

    def stats(self) -> dict:
        """A snapshot for metrics and logs."""
        with self._lock:
            return {
                "mode": str(self.mode),
                "running": len(self.scheduler.running),
                "waiting": len(self.scheduler.waiting),
                "kv_pages_used": self.kv.pages_used,
                "kv_pages_total": self.kv.num_pages,
                "steps": self.steps,
                **{f"total_{k}": v for k, v in self.totals.items()},
                **self.last_step,
            }

    def step_history(self, after: int = -1) -> list[StepRecord]:
        """The steps the controller observed after step ``after`` (at most its last HISTORY_LEN)."""
        history = tuple(self.controller.history)  # one C-level copy: the step thread may append meanwhile
        return [record for record in history if record.step > after]

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._catch_up()  # the last step's deltas (finished ones included) and its observation
        for live in list(self._live.values()):
            self._finish(live, "abort")

    # ---- step loop ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._drain_inbox()
            if not self.scheduler.running and not self.scheduler.waiting:
                self._catch_up()
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                self.step()
            except Exception:  # a bug must not take the server down: fail the running requests, keep serving
                log.exception("engine step failed; failing the running requests")
                for request in list(self.scheduler.running):
                    live = self._live.get(request.request_id)
                    if live is None:  # its final delta is out already (a stop string)
                        self._retire(request)
                    else:
                        self._finish(live, "error")

    def _drain_inbox(self) -> None:
        while True:
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                self.scheduler.add(item.request)
            elif item in self._live:
                live = self._live[item]
                if live.request.finished:  # it ended before the abort came: its final delta, text and all
                    self._emit(live)
                else:
                    self._finish(live, "abort")

    def step(self) -> None:
        """One engine step over every running request. On CUDA the previous step's deltas are sent, and the
        controller observes it, while the device computes this one (the launch returns at once), so neither costs
        device time."""
        start = time.perf_counter()
        controller = self.controller
        chunk, batch = self.scheduler.schedule()
        if not batch:
            self._catch_up()
            return
        predicted_ms, profiled_ms = controller.last_predicted_ms, controller.last_profiled_ms
        forward_start = time.perf_counter()
        schedule_ms = (forward_start - start) * 1e3
        flight = self.runner.launch(batch)
        self._catch_up()
        commits = self.runner.collect(flight)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        forward_ms = (time.perf_counter() - forward_start) * 1e3
        fed = sum(plan.fed_len for _, plan in batch)
        prefill = sum(plan.fed_len for _, plan in batch if plan.kind is StepKind.PREFILL)
        committed = sum(len(c) for c in commits)
        scored = [(plan.window, len(c)) for (_, plan), c in zip(batch, commits) if plan.scored]
        windows, window_commits = (tuple(v) for v in zip(*scored)) if scored else ((), ())
        for (request, plan), request_commits in zip(batch, commits):
            if not request.finished:  # else a stop string ended it while this step ran: its commits are dropped
                request.apply(plan, request_commits)
            if request.finished:
                self._retire(request)
        self._unsent = [live for live in (self._live.get(r.request_id) for r, _ in batch) if live is not None]
        if not self.overlap_host_work:
            self._send_deltas()
        step_ms = (time.perf_counter() - start) * 1e3
        self._note_slow_step(step_ms, forward_ms, len(batch), chunk, fed, prefill)
        decoding = sum(plan.kind is not StepKind.PREFILL for _, plan in batch)
        self._unobserved = StepRecord(self.steps, decoding, chunk, fed, committed, step_ms,
                                      predicted_ms=predicted_ms, profiled_ms=profiled_ms, prefill_tokens=prefill,
                                      windows=windows, commits=window_commits)
        if not self.overlap_host_work:
            self._catch_up()
        with self._lock:
            self.steps += 1
            self.totals["committed"] += committed
            self.totals["fed"] += fed
            self.totals["step_ms"] += step_ms
            self.totals["forward_ms"] += forward_ms
            self.totals["schedule_ms"] += schedule_ms
            self.last_step = {"chunk": chunk, "batch": len(batch), "fed_tokens": fed, "committed_tokens": committed,
                              "committed_per_fed": committed / fed if fed else 0.0, "step_ms": step_ms,
                              "forward_ms": forward_ms, "predicted_ms": predicted_ms}

    def _note_slow_step(self, step_ms: float, forward_ms: float, requests: int, chunk: int, fed: int,
                        prefill: int) -> None:
        """Logs a step far slower than the recent ones (a stall: a kernel compiled on first use, the allocator
        freeing its cache to grow, a large prefill), with what it ran."""
        recent = self._recent_step_ms
        usual = statistics.median(recent) if step_ms > SLOW_STEP_MS and recent else 0.0  # the median only if needed
        recent.append(step_ms)
        if step_ms <= SLOW_STEP_MS or step_ms <= SLOW_STEP_FACTOR * usual:
            return
        retries = (torch.cuda.memory_stats(self.device).get("num_alloc_retries", 0)
                   if self.device.type == "cuda" else 0)
        log.warning("slow step %d: %.0f ms (forward %.0f ms; recent median %.1f ms): %d requests, chunk %d, "
                    "%d tokens fed, %d of them prefill; CUDA allocator retries so far: %d",
                    self.steps, step_ms, forward_ms, usual, requests, chunk, fed, prefill, retries)

    def _catch_up(self) -> None:
        """The last step's deltas, then its observation and the controller's preparation for the next choice."""
        self._send_deltas()
        record, self._unobserved = self._unobserved, None
        if record is not None:
            self.controller.observe(record)
            self.controller.prepare()

    def _send_deltas(self) -> None:
        unsent, self._unsent = self._unsent, []
        for live in unsent:
            self._emit(live)

    def _emit(self, live: _Live) -> None:
        if live.done:
            return  # aborted since
        request = live.request
        tokens = request.generated()
        if len(tokens) == live.sent_tokens and not request.finished:
            return  # nothing new committed in the streamable prefix: skip the decode
        text = live.detokenizer.update(tokens, final=request.finished)
        if live.detokenizer.stopped and not request.finished:
            request.finish("stop")  # leaves the running set after the step in flight
            tokens = request.generated()
        if request.finished:
            self._send_final(live, text)
            return
        if text or len(tokens) > live.sent_tokens:
            live.handle.deltas.put(Delta(text, tokens[live.sent_tokens:], num_input_tokens=request.prompt_len,
                                         num_output_tokens=len(tokens), request_id=request.request_id))
            live.sent_tokens = len(tokens)

    def _retire(self, request: Request) -> None:
        """Takes a finished request out of the running set and frees its pages."""
        self.scheduler.remove(request)
        self.runner.forget(request.request_id)

    def _finish(self, live: _Live, reason: str) -> None:
        """Ends a request now (abort, error, shutdown) and sends its final delta."""
        live.request.finish(reason)
        self._retire(live.request)
        self._send_final(live)

    def _send_final(self, live: _Live, text: str = "") -> None:
        request = live.request
        live.done = True
        tokens = request.generated()
        with self._lock:
            self._live.pop(request.request_id, None)
            self.totals["aborted" if request.finish_reason == "abort" else "finished"] += 1
        live.handle.deltas.put(Delta(text, tokens[live.sent_tokens:], True, request.finish_reason,
                                     request.prompt_len, len(tokens), request.request_id))
