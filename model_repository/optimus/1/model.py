"""Triton Python-backend adapter for Optimus: validate, submit to the engine, stream deltas back, report metrics.

Thin on purpose: decoding, scheduling and KV management live in optimus_backend. Requests follow Triton's
vLLM-backend schema (see config.pbtxt); each accepted request is streamed from its own thread, a monitor
thread aborts cancelled requests and refreshes the engine gauges.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

_ROOT = Path(__file__).resolve().parents[3]  # model_repository/optimus/1/model.py -> the project
if (_ROOT / "optimus_backend").is_dir() and str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from optimus_backend.config import ConfigError, DecodingMode, SamplingParams  # noqa: E402
from optimus_backend.engine import Engine, RequestHandle  # noqa: E402
from optimus_backend.triton_server import config_from_parameters  # noqa: E402

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
MONITOR_PERIOD_S = 0.05  # cancellation of requests without deltas (queued), metric flushes
GAUGE_PERIOD_S = 0.25
OPTION_INPUTS = ("stream", "exclude_input_in_output", "return_finish_reason", "return_num_input_tokens",
                 "return_num_output_tokens")
LATENCY_BUCKETS = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]
TPOT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0]
# engine.stats() key -> (metric name, description)
GAUGES = {
    "running": ("optimus_num_requests_running", "Requests in the running batch"),
    "waiting": ("optimus_num_requests_waiting", "Requests queued for admission"),
    "chunk": ("optimus_chunk_size", "Chunk size c of the latest step"),
    "committed_per_fed": ("optimus_committed_fed_ratio", "Committed / fed tokens of the latest step"),
    "kv_pages_used": ("optimus_kv_pages_used", "KV-cache pages held by running requests"),
}


@dataclass
class Job:
    """One accepted request on its way through the engine."""

    request_id: str
    sender: object  # pb_utils.InferenceResponseSender
    handle: RequestHandle
    prompt: str
    options: dict[str, bool]
    arrived: float
    cancelled: bool = False
    closed: bool = False  # FINAL sent: the sender must not be touched again (not even is_cancelled)
    first_token_at: float | None = None
    last_delta_at: float = 0.0
    text: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, response=None, final: bool = False) -> None:
        with self.lock:
            if not self.closed:
                self.closed = final
                self.sender.send(response, flags=FINAL if final else 0)

    def poll_cancelled(self) -> bool:
        """True once, when the client has cancelled this request."""
        with self.lock:
            if self.closed or self.cancelled or not self.sender.is_cancelled():
                return False
            self.cancelled = True
            return True


class Metrics:
    """Custom Prometheus metrics on Triton's /metrics endpoint (families outlive their metrics).

    Only the monitor thread touches them: concurrent metric calls from several threads crash the 2.51 Python
    backend (seen here under 8 concurrent streams), so finished requests are queued through `pending`.
    """

    def __init__(self, labels: dict[str, str]):
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.families = []
        self.ttft = self._metric("optimus_time_to_first_token_seconds", "Time to first token",
                                 pb_utils.MetricFamily.HISTOGRAM, labels, LATENCY_BUCKETS)
        self.tpot = self._metric("optimus_time_per_output_token_seconds", "Time per output token after the first",
                                 pb_utils.MetricFamily.HISTOGRAM, labels, TPOT_BUCKETS)
        self.e2e = self._metric("optimus_e2e_request_latency_seconds", "End-to-end request latency",
                                pb_utils.MetricFamily.HISTOGRAM, labels, LATENCY_BUCKETS)
        self.prompt_tokens = self._metric("optimus_prompt_tokens_total", "Prompt tokens processed",
                                          pb_utils.MetricFamily.COUNTER, labels)
        self.generation_tokens = self._metric("optimus_generation_tokens_total", "Generated tokens",
                                              pb_utils.MetricFamily.COUNTER, labels)
        self.gauges = {key: self._metric(name, desc, pb_utils.MetricFamily.GAUGE, labels)
                       for key, (name, desc) in GAUGES.items()}

    def _metric(self, name: str, description: str, kind, labels: dict, buckets: list[float] | None = None):
        family = pb_utils.MetricFamily(name=name, description=description, kind=kind)
        self.families.append(family)
        return family.Metric(labels=labels, buckets=buckets) if buckets else family.Metric(labels=labels)

    def finished(self, job: Job, end: float, num_input: int, num_output: int) -> None:
        """Thread-safe: queues the request's numbers for the monitor thread."""
        self.pending.put((job.arrived, job.first_token_at, end, num_input, num_output))

    def flush(self) -> None:
        """Monitor thread only: records the queued requests."""
        while not self.pending.empty():
            self._record(*self.pending.get())

    def _record(self, arrived: float, first_token_at: float | None, end: float, num_input: int,
                num_output: int) -> None:
        self.e2e.observe(end - arrived)
        if first_token_at is not None:
            self.ttft.observe(first_token_at - arrived)
            if num_output > 1:
                self.tpot.observe((end - first_token_at) / (num_output - 1))
        self.prompt_tokens.increment(num_input)
        self.generation_tokens.increment(num_output)

    def engine_stats(self, stats: dict) -> None:
        for key, gauge in self.gauges.items():
            if stats.get(key) is not None:
                gauge.set(float(stats[key]))


def _scalar(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy().reshape(-1)
    if array.size != 1:
        raise ConfigError(f"{name}: expected one element, got {array.size}")
    return array[0]


def _text(request, name: str) -> str | None:
    value = _scalar(request, name)
    if value is None or isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _json_object(text: str, name: str) -> dict:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: malformed JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: must be a JSON object")
    return value


class TritonPythonModel:
    """The decoupled Optimus model: one engine per model instance."""

    def initialize(self, args: dict) -> None:
        model_config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}
        config = config_from_parameters(params)
        if config.device == "auto" and args.get("model_instance_kind") == "GPU":
            config.device = f"cuda:{args['model_instance_device_id']}"
        self.config = config
        self.mode = config.decoding_mode()
        self.engine = Engine(config)
        self.metrics = Metrics({"model": args["model_name"], "version": args["model_version"]})
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.monitor = threading.Thread(target=self._monitor, name="optimus-monitor", daemon=True)
        self.monitor.start()
        pb_utils.Logger.log_info(f"optimus: engine ready (mode {self.mode}, device {config.device})")

    def execute(self, requests: list) -> None:
        for request in requests:
            arrived = time.perf_counter()
            sender = request.get_response_sender()
            try:
                job = self._accept(request, sender, arrived)
            except ConfigError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                continue
            except Exception as exc:  # a bug fails this request only
                pb_utils.Logger.log_error(f"optimus: rejecting a request: {exc!r}")
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"internal error: {exc}")),
                            flags=FINAL)
                continue
            threading.Thread(target=self._stream, args=(job,), name=f"optimus-{job.request_id}", daemon=True).start()
        return None

    def _accept(self, request, sender, arrived: float) -> Job:
        """Validates one request and submits it; raises ConfigError naming the offending field."""
        prompt = _text(request, "text_input")
        if not prompt:
            raise ConfigError("text_input: empty prompt")
        # The HTTP generate endpoint's "parameters" arrive as request parameters; sampling_parameters wins.
        values = _json_object(request.parameters(), "parameters")
        values.update(_json_object(_text(request, "sampling_parameters") or "", "sampling_parameters"))
        options = {}
        for name in OPTION_INPUTS:  # an input tensor wins over a parameter of the same name
            value = values.pop(name, None)
            if value is not None and not isinstance(value, bool):
                raise ConfigError(f"{name}: must be a boolean, got {value!r}")
            tensor = _scalar(request, name)
            options[name] = bool(tensor if tensor is not None else value)
        mode = values.pop("mode", None)
        if mode is not None and DecodingMode.parse(str(mode)) != self.mode:
            raise ConfigError(f"mode: this server runs {self.mode}, not {mode} (start it with --mode {mode})")
        params = SamplingParams.from_dict(values, self.config.max_tokens_limit)
        handle = self.engine.submit(prompt, params)
        job = Job(str(handle.request_id), sender, handle, prompt, options, arrived)
        with self.lock:
            self.jobs[job.request_id] = job
        return job

    def _response(self, job: Job, text: str, delta) -> "pb_utils.InferenceResponse":
        tensors = [pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))]
        if job.options["return_finish_reason"]:
            reason = (delta.finish_reason or "") if delta.finished else ""
            tensors.append(pb_utils.Tensor("finish_reason", np.array([reason.encode()], dtype=np.object_)))
        if job.options["return_num_input_tokens"]:
            tensors.append(pb_utils.Tensor("num_input_tokens", np.array([delta.num_input_tokens], dtype=np.int32)))
        if job.options["return_num_output_tokens"]:
            tensors.append(pb_utils.Tensor("num_output_tokens", np.array([delta.num_output_tokens], dtype=np.int32)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _stream(self, job: Job) -> None:
        """Forwards the engine's deltas: one response each when streaming, else one final response."""
        last = None
        try:
            for delta in job.handle:
                last, job.last_delta_at = delta, time.perf_counter()
                if not delta.finished and job.poll_cancelled():  # checked every step while it runs
                    self.engine.abort(job.request_id)
                if job.first_token_at is None and delta.token_ids:
                    job.first_token_at = job.last_delta_at
                if delta.finish_reason == "error":
                    raise RuntimeError("the engine step failed (see the server log)")
                if job.cancelled:
                    continue
                if job.options["stream"]:
                    if delta.text or delta.finished:
                        job.send(self._response(job, delta.text, delta), final=delta.finished)
                else:
                    job.text.append(delta.text)
                if delta.finished:
                    break
            if job.cancelled or last is None or not last.finished:
                job.send(final=True)
            elif not job.options["stream"]:
                text = "".join(job.text)
                if not job.options["exclude_input_in_output"]:
                    text = job.prompt + text
                job.send(self._response(job, text, last), final=True)
            if last is not None and last.finished:
                self.metrics.finished(job, time.perf_counter(), last.num_input_tokens, last.num_output_tokens)
        except Exception as exc:  # report to this client; the model keeps serving the others
            pb_utils.Logger.log_error(f"optimus: request {job.request_id} failed: {exc!r}")
            self.engine.abort(job.request_id)
            try:
                job.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"internal error: {exc}")), final=True)
            except Exception:  # the stream may already be closed
                pass
        finally:
            with self.lock:
                self.jobs.pop(job.request_id, None)

    def _monitor(self) -> None:
        """Aborts cancelled requests (the engine frees their KV within a step) and refreshes the gauges."""
        next_gauges = 0.0
        while not self.stopping.wait(MONITOR_PERIOD_S):
            with self.lock:
                jobs = list(self.jobs.values())
            now = time.perf_counter()
            for job in jobs:  # requests that get no deltas (queued, or text held back) are checked here
                if now - max(job.arrived, job.last_delta_at) >= MONITOR_PERIOD_S and job.poll_cancelled():
                    self.engine.abort(job.request_id)
            self.metrics.flush()
            if time.monotonic() >= next_gauges:
                next_gauges = time.monotonic() + GAUGE_PERIOD_S
                self.metrics.engine_stats(self.engine.stats())

    def finalize(self) -> None:
        self.stopping.set()
        self.monitor.join(timeout=5)
        for job in list(self.jobs.values()):
            self.engine.abort(job.request_id)
        self.engine.shutdown()
