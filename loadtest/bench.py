"""`optimus bench`: open-loop rate sweeps per decoding mode until the SLO breaks, plus offline throughput vs batch.

For each mode (ar on the AR twin; bd, chunk:N and elastic on the block-diffusion model) the benchmark starts a
real tritonserver (``--path triton``, the default) or, where Triton can't run, the in-process engine behind the
same request interface (``--path in-process``; rows are labelled so). Random-weight shapes (``--shape``) send
random token ids and, with ``--replay STATS``, commit as many slots per step as the recorded shipped model did
(rows are labelled replayed). ``--changing`` adds loads whose rate steps or ramps over time, run by every mode
on the same arrivals, or whose number of concurrent users (closed loop) does. ``--offline`` prints the steps/s
and tokens/s table of each mode instead.

    optimus bench --duration 30 --out out/bench              # CPU, shipped model, Triton gRPC
    optimus bench --offline                                  # the engine's steps/s & tokens/s per mode
    optimus bench --shape qwen3-8b --path in-process --replay docs/benchmarks/acceptance.json --ignore-eos
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from optimus_backend.config import DEFAULT_AR_CHECKPOINT, PROJECT_ROOT, DecodingMode, EngineConfig
from optimus_backend.engine_args import add_engine_arguments, engine_config_from_args
from optimus_backend.simulator import USERS_PREFIX

from . import report
from .driver import PointSpec, interpolated_capacity, parse_loads, run_changing, slo_capacity, sweep
from .metrics import RequestRecord
from .offline import throughput_vs_batch
from .shapes import parse
from .workload import eval_prompts, token_prompts

SWEEP_SHARE = 0.6  # of a time-boxed mode's seconds, for starting rate points
MODES = "ar,bd,chunk:4,chunk:8,chunk:16,elastic"
WARMUP_TOKENS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_engine_arguments(parser, mode=False)
    parser.add_argument("--ar-checkpoint", type=Path, default=DEFAULT_AR_CHECKPOINT, help="the AR twin (mode ar)")
    parser.add_argument("--modes", default=MODES, help="comma-separated decoding modes")
    parser.add_argument("--offline", action="store_true",
                        help="print the in-process steps/s & tokens/s table per mode and exit (no server)")
    parser.add_argument("--path", choices=["triton", "in-process"], default="triton",
                        help="request path: a real tritonserver, or the in-process engine where Triton can't run")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="Triton: gRPC stream or SSE")
    parser.add_argument("--rates", default="0.25,0.5,1,2,4,8,16,32,64",
                        help="increasing request rates (req/s); each mode stops after the first that breaks the SLO")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of Poisson arrivals per rate point")
    parser.add_argument("--changing", type=loads_argument, default={},
                        help="changing loads run before the sweep, 'label=secs@rps,secs~rps;label=...' (hold a rate, "
                             "ramp to one; absolute req/s), e.g. 'burst=10@1,10@12,10@2,10~8,10@0.5', or a closed "
                             "loop of concurrent users, e.g. 'users=users:20@2,10~64,20@64'")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds past the arrivals before cancelling")
    parser.add_argument("--slo-ms", type=float, default=50.0, help="P90 TPOT SLO (ms)")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request")
    parser.add_argument("--ignore-eos", action="store_true", help="every request generates max_tokens")
    parser.add_argument("--prompts-per-task", type=int, default=64, help="held-out problems per eval task")
    parser.add_argument("--prompt-len", type=int, default=512, help="tokens per random prompt (--shape)")
    parser.add_argument("--batches", default="1,4,16,64", help="batch sizes of the offline throughput runs")
    parser.add_argument("--replay", type=Path, default=None,
                        help="acceptance statistics (loadtest/record.py) whose commit decisions are replayed")
    parser.add_argument("--workers", type=int, default=64, help="Triton path: client workers (most in flight)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench", help="output directory")


def loads_argument(text: str) -> dict[str, str]:
    """``--changing``'s value, parsed (argparse shows the message naming the bad item)."""
    try:
        return parse_loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def mode_config(args: argparse.Namespace, mode: str) -> EngineConfig:
    """The EngineConfig of one mode: the AR twin (checkpoint or "<shape>-ar") for ar, the BD model otherwise."""
    ar = DecodingMode.parse(mode).kind == "ar"
    overrides: dict = {"mode": mode}
    if args.shape:
        overrides.update(shape=f"{args.shape}-ar" if ar else args.shape, checkpoint=None)
    elif ar:
        overrides["checkpoint"] = args.ar_checkpoint
    if args.replay:
        overrides["decoding_rule"] = f"replay:{args.replay.resolve()}"
    return engine_config_from_args(args, **overrides)


def load_prompts(args: argparse.Namespace) -> list:
    if args.shape:
        from optimus_backend.checkpoint import SHAPES

        return token_prompts(SHAPES[args.shape]["vocab_size"], args.prompt_len, 64)
    return eval_prompts(args.prompts_per_task)


def card(config: EngineConfig) -> str:
    """The machine the numbers come from: the GPU's name, or the CPU's model and core count."""
    import torch

    from optimus_backend.model_setup import resolve_device

    device, _ = resolve_device(config)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "cpu")
    return f"CPU: {model}, {os.cpu_count()} cores"


def _free_device_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def open_target(args: argparse.Namespace, config: EngineConfig, log_dir: Path, min_workers: int):
    """A tritonserver with its pool of at least ``min_workers`` clients, or the in-process engine."""
    from optimus_backend.engine import Engine

    from .engine_target import EngineTarget

    if args.path == "in-process":
        _free_device_memory()  # what the previous mode left: its KV pool is sized from the free memory
        engine = Engine(config)
        target = EngineTarget(engine)
        try:
            yield target
        finally:
            target.close()
            engine.shutdown()
            del target, engine  # the next mode's engine needs this one's GPU memory
            _free_device_memory()
        return
    from optimus_backend.model_setup import resolve_device
    from optimus_backend.triton_server import TritonServer, config_to_parameters

    from .targets import TritonTarget

    kind = "KIND_CPU" if resolve_device(config)[0].type == "cpu" else None
    log = log_dir / f"triton-{config.mode.replace(':', '')}.log"
    with TritonServer(config_to_parameters(config), instance_kind=kind, log_path=log) as server:
        target = TritonTarget(server.grpc_url, server.http_url, server.metrics_url, args.protocol,
                              max(args.workers, min_workers))
        try:
            yield target
        finally:
            target.close()


def warm_up(target, prompts: list, params: dict, batch: int) -> None:
    """Two single requests, then ``batch`` at once with a few tokens: first-use costs (CUDA graph captures,
    kernel compilation, the elastic profile) stay out of the measured points."""
    short = {**params, "max_tokens": min(params["max_tokens"], WARMUP_TOKENS)}
    for group in ([prompts[0]], [prompts[-1]], [prompts[i % len(prompts)] for i in range(batch)]):
        records = [RequestRecord(arrival=time.perf_counter(), deadline=time.perf_counter() + 300) for _ in group]
        for prompt, record in zip(group, records):
            target.start(prompt, short, record)
        for record in records:
            record.done.wait(310)


def warm_up_batch(batches: list[int], changing: dict[str, str]) -> int:
    """Requests at once in the warm-up: the largest offline batch, or more users if a closed-loop load holds more
    (its first burst of prompts, the largest prefill of the run, pays first-use costs too)."""
    users = [parse(spec).peak for spec in changing.values() if spec.startswith(USERS_PREFIX)]
    return int(max([*batches, *users]))


@dataclass
class ModeResults:
    """One mode's rows: the rate sweep, offline throughput, and each changing load's summary, timeline and
    per-chunk step rows."""

    sweep: list[dict]
    offline: list[dict]
    changing: list[dict] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    chunks: list[dict] = field(default_factory=list)

    def merge(self, other: "ModeResults") -> None:
        """Appends another mode's rows."""
        self.sweep += other.sweep
        self.offline += other.offline
        self.changing += other.changing
        self.timeline += other.timeline
        self.chunks += other.chunks


def bench_mode(args: argparse.Namespace, config: EngineConfig, prompts: list, spec: PointSpec, labels: dict,
               rates: list[float], batches: list[int], seconds: float | None = None) -> ModeResults:
    """One mode's changing loads (``args.changing``), rate sweep and offline rows, time-boxed to about ``seconds``
    after its start and warm-up (which are not counted: the first mode compiles the kernels): no rate point starts
    past SWEEP_SHARE of them (the changing loads always run whole)."""
    with open_target(args, config, args.out, max(batches)) as target:
        warm_up(target, prompts, spec.params, warm_up_batch(batches, args.changing))
        labels = {**labels, "path": target.label}
        sweep_end = None if seconds is None else time.monotonic() + SWEEP_SHARE * seconds
        changing, timeline, chunks = run_changing(target, args.changing, spec) if args.changing else ([], [], [])
        rows = [{**labels, **row} for row in sweep(target, rates, spec, config.mode, sweep_end)]
        offline = [{**labels, **row} for row in throughput_vs_batch(target, prompts, spec.params, batches)]
    model_mode = {"model": labels["model"], "mode": labels["mode"]}
    return ModeResults(rows, offline, [{**labels, **row} for row in changing],
                       [{**model_mode, **row} for row in timeline], [{**model_mode, **row} for row in chunks])


def capacity_row(labels: dict, rows: list[dict], slo_ms: float) -> dict:
    return {**labels, "path": rows[0]["path"], "slo_ms": slo_ms, "capacity_rps": slo_capacity(rows),
            "capacity_interp_rps": interpolated_capacity(rows, slo_ms),
            "max_rate_tested": max(r["rate_rps"] for r in rows),
            "max_throughput_tok_s": max(r["throughput_tok_s"] for r in rows)}


def write_csvs(out: Path, results: ModeResults, capacity: list[dict]) -> None:
    """``sweep.csv``, ``capacity.csv``, ``offline.csv`` and, with changing loads, ``changing.csv``,
    ``timeline.csv`` and (in-process engine) ``chunks.csv``."""
    report.write_csv(results.sweep, report.SWEEP_COLUMNS, out / "sweep.csv")
    report.write_csv(capacity, report.CAPACITY_COLUMNS, out / "capacity.csv")
    report.write_csv(results.offline, report.OFFLINE_COLUMNS, out / "offline.csv")
    if results.changing:
        report.write_csv(results.changing, report.CHANGING_COLUMNS, out / "changing.csv")
        report.write_csv(results.timeline, report.TIMELINE_COLUMNS, out / "timeline.csv")
    if results.chunks:
        report.write_csv(results.chunks, report.CHUNK_COLUMNS, out / "chunks.csv")


def write_outputs(out: Path, results: ModeResults, capacity: list[dict], slo_ms: float, title: str,
                  preamble: str) -> str:
    """CSV files, then plots and summary.md from them; returns the headline Markdown."""
    write_csvs(out, results, capacity)
    return report.render(out, slo_ms, title, preamble)


def run_offline_table(args: argparse.Namespace, modes: list[str]) -> int:
    from optimus_backend.offline_bench import run_offline

    table_args = argparse.Namespace(modes=modes, max_tokens=args.max_tokens)
    return run_offline(table_args, lambda mode: mode_config(args, mode), load_prompts(args))


def run(args: argparse.Namespace) -> int:
    """SIGTERM unwinds like Ctrl-C while this runs, so every tritonserver it started is stopped (by PID)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        DecodingMode.parse(mode)
    if args.offline:
        return run_offline_table(args, modes)
    if args.shape and args.path == "triton":
        print("optimus bench: random-weight shapes have no tokenizer; use --path in-process", file=sys.stderr)
        return 2
    rates = sorted(float(r) for r in args.rates.split(","))
    batches = [int(b) for b in args.batches.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts(args)
    params = {"max_tokens": args.max_tokens, "ignore_eos": args.ignore_eos}
    spec = PointSpec(prompts, params, args.duration, args.drain, args.slo_ms)
    model = args.shape or args.checkpoint.name
    base = {"model": model, "replayed": "yes" if args.replay else "no", "card": card(mode_config(args, modes[0]))}
    started = datetime.datetime.now().astimezone()
    results, capacity = ModeResults([], []), []
    for mode in tqdm(modes, desc="modes", unit="mode"):
        config = mode_config(args, mode)
        labels = {**base, "mode": mode, "checkpoint": str(config.shape or config.checkpoint)}
        mode_results = bench_mode(args, config, prompts, spec, labels, rates, batches)
        results.merge(mode_results)
        capacity.append(capacity_row(labels, mode_results.sweep, args.slo_ms))
    settings = " ".join(f"{k}={v}" for k, v in sorted(vars(args).items()))
    preamble = (f"# optimus bench: {model}\n\n- date: {started:%Y-%m-%d %H:%M %Z}\n- card: {base['card']}\n"
                f"- request path: {results.sweep[0]['path']}; replayed commit decisions: {base['replayed']}\n"
                f"- max_tokens {args.max_tokens}, ignore_eos {args.ignore_eos}, {args.duration:g} s per rate point\n"
                f"- settings: `{settings}`\n")
    print(write_outputs(args.out, results, capacity, args.slo_ms, f"{model} on {base['card']}", preamble))
    print(f"optimus bench: results in {args.out}")
    return 0
