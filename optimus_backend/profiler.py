"""`optimus profile`: measures the real engine step T(b, c, prefix), caches it per model + device + dtype."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .config import PROJECT_ROOT, EngineConfig, SamplingParams
from .cost_model import CostModel, cache_name, plot
from .engine_args import add_engine_arguments, engine_config_from_args
from .model_setup import model_name
from .request import Request, StepKind, StepPlan

log = logging.getLogger("optimus.profiler")

QUICK_CHUNKS = [1, 2, 4, 8, 16, 32]  # the first-start sweep's chunk sizes (those past the block size are dropped)
QUICK_PREFIX = 256  # and its cached prefix length, less where the KV pool can't hold a full batch of it
QUICK_STOP_MS = 100.0  # and no larger batch once a step takes longer than this (CPU first starts stay short)
PROFILE_DIR = PROJECT_ROOT / ".cache" / "profiles"
# the code one engine step runs: a profile measured with another version of it may price the chunk sizes wrong
STEP_MODULES = ("kernels", "kernels.activation", "kernels.chunk_attention", "kernels.confidence", "kernels.launch",
                "kernels.rms_norm", "kernels.rope", "optimus_backend.cuda_graphs", "optimus_backend.model",
                "optimus_backend.runner")


def step_code(modules: tuple[str, ...] = STEP_MODULES) -> str:
    """A fingerprint of the source of ``modules``, which profiles carry as ``step_code``."""
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode() + b"\0" + Path(importlib.util.find_spec(name).origin).read_bytes())
    return digest.hexdigest()[:12]


def device_name(device: torch.device) -> str:
    """The device name profiles carry: the GPU's, or ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def profile_meta(engine) -> dict:
    return {"model": model_name(engine.config), "device": device_name(engine.device),
            "dtype": str(engine.dtype).removeprefix("torch."),
            "block_size": engine.model.config.block_size, "step_code": step_code()}


def profile_path(engine) -> Path:
    return engine.config.profile_path or PROFILE_DIR / cache_name(profile_meta(engine))


def measure_step(engine, batch: int, chunk: int, prefix: int, repeats: int) -> float | None:
    """Median ms of one engine step feeding ``chunk`` MASK slots per request over a ``prefix`` cache, or None
    when the KV pool can't hold the batch. The KV is filled with random values, not zeros."""
    cfg = engine.model.config
    generator = torch.Generator().manual_seed(batch * 1000 + chunk)
    requests = []
    for i in range(batch):
        prompt = torch.randint(0, cfg.vocab_size, (prefix,), generator=generator).tolist()
        requests.append(Request.for_model(f"profile-{i}", prompt, SamplingParams(max_tokens=chunk), cfg))
    if not engine.kv.can_admit(batch * (prefix + chunk) + batch * engine.kv.page_size):
        return None
    plans = []
    for request in requests:
        engine.kv.admit(request.request_id, request.total_len)
        engine.kv.ensure(request.request_id, request.total_len)
        request.cached_len = prefix
        scored = tuple(range(prefix + request.shift, prefix + chunk))
        plans.append((request, StepPlan(StepKind.DECODE, prefix, prefix + chunk, scored, prefix)))
    try:
        times = []
        for i in range(repeats + 2):  # two warm-up steps
            start = time.perf_counter()
            engine.runner.run(plans)
            if engine.device.type == "cuda":
                torch.cuda.synchronize(engine.device)
            if i >= 2:
                times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    finally:
        for request in requests:
            engine.kv.release(request.request_id)


def fill_kv_random(engine) -> None:
    for cache in (*engine.kv.k, *engine.kv.v):
        cache.normal_()


def profile(engine, batches: list[int], chunks: list[int], prefixes: list[int], repeats: int = 5,
            progress: bool = True, stop_ms: float | None = None) -> CostModel:
    """Sweeps the grid with a progress bar and returns the fitted cost model. With ``stop_ms``, the batch sizes
    above the first one past the smallest whose step took longer than that (at the same prefix) are skipped: the
    step is saturated there, linear in the tokens fed, and the fit extends it."""
    fill_kv_random(engine)
    chunks = [c for c in chunks if c <= engine.model.config.block_size]
    grid = [(b, c, p) for p in prefixes for b in sorted(batches) for c in chunks]
    points, saturated = {}, {}
    for b, c, p in tqdm(grid, desc="profiling T(b, c)", disable=not progress):
        if b > saturated.get(p, b):
            continue
        ms = measure_step(engine, b, c, p, repeats)
        if ms is not None:
            points[(b, c, p)] = ms
            if stop_ms is not None and ms > stop_ms and b > min(batches):
                saturated.setdefault(p, b)
    return CostModel(points, profile_meta(engine))


def quick_batches(max_running: int) -> list[int]:
    """The first-start sweep's batch sizes: 1, 4, 16, ... up to the engine's ``max_running``, which is included,
    so the fit sees the batches where the step saturates instead of extrapolating to them."""
    return sorted({*(4**i for i in range(16) if 4**i < max_running), max_running})


def load_cost_model(config: EngineConfig, engine) -> CostModel:
    """The cached profile for this model + device + dtype; profiled with a quick sweep on first start."""
    path = profile_path(engine)
    if path.is_file():
        model = CostModel.load(path)
        measured_with, now = model.meta.get("step_code", "unknown"), step_code()
        if measured_with != now:
            log.warning("the step profile %s was measured with other kernels or runner code (step_code %s, now %s): "
                        "the elastic choice may misprice chunk sizes; `optimus profile` re-measures it",
                        path, measured_with, now)
        return model
    log.warning("no step profile at %s: profiling a quick sweep now (`optimus profile` measures the full grid)",
                path)
    kv, block = engine.kv, engine.model.config.block_size
    fits = kv.num_pages * kv.page_size // config.max_running - block - kv.page_size
    prefix = max(min(QUICK_PREFIX, fits // kv.page_size * kv.page_size), 0)
    model = profile(engine, quick_batches(config.max_running), QUICK_CHUNKS, [prefix], repeats=3,
                    stop_ms=QUICK_STOP_MS)
    model.save(path)
    return model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_engine_arguments(parser, mode=False)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16, 24, 32])
    parser.add_argument("--prefixes", type=int, nargs="+", default=[512])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: the profile cache)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG heat map / curves")
    parser.add_argument("--install", type=Path, nargs="+", metavar="JSON",
                        help="copy saved profiles into the profile cache (named by their model + device + dtype) "
                             "and exit, e.g. the committed H100 profiles before a scale run")
    parser.add_argument("--here", action="store_true",
                        help="with --install: name them by this machine's device instead of their own, so an engine "
                             "here uses a profile of another card (their meta keeps 'profiled_on')")


def install(paths: list[Path], cache_dir: Path = PROFILE_DIR, device: str | None = None) -> list[Path]:
    """Copies saved profiles into ``cache_dir`` under the names the engine looks for (``device``: as profiles of
    that device, the one they were made on kept as ``profiled_on``); returns the new paths."""
    installed = []
    for path in paths:
        model = CostModel.load(path)
        if device is not None and device != model.meta.get("device"):
            model.meta = {**model.meta, "device": device, "profiled_on": model.meta.get("device", "unknown")}
        installed.append(model.save(cache_dir / cache_name(model.meta)))
    return installed


def run(args: argparse.Namespace) -> int:
    from .engine import Engine

    if args.install:
        here = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for path in install(args.install, device=device_name(here) if args.here else None):
            print(f"installed {path}")
        return 0

    engine = Engine(engine_config_from_args(args, mode="bd", max_running=max(args.batches)), start=False)
    model = profile(engine, args.batches, args.chunks, args.prefixes, args.repeats)
    path = model.save(args.out or profile_path(engine))
    print(f"profile written to {path}")
    if args.plot:
        print(f"plot written to {plot(model, args.plot)}")
    for (b, c, p), ms in sorted(model.points.items()):
        print(f"b={b:4d} c={c:3d} prefix={p:5d}  {ms:8.2f} ms")
    return 0
