"""Where one engine step's time goes on a GPU: wall time, the GPU's busy time, kernel launches per step, and the
runner's four phases timed apart.

    python3 scripts/profile_step.py [shape] [--no-kernels]

Wall minus GPU time is what the host adds. The phase columns time ``pack`` (host only: the GPU idles),
``forward`` (the graph replay, to its end), ``score`` (the LM head's confidences) and ``collect`` (the copy back
and the decoding rule's commit loop), each ended by a synchronize; then the host operators of the (128, 1)
step, by own CPU time.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from optimus_backend.config import EngineConfig
from optimus_backend.engine import Engine
from optimus_backend.profiler import fill_kv_random, measure_step

POINTS = [(1, 1), (128, 1), (32, 8), (16, 32)]
PREFIX = 512
PROFILED_REPEATS = 3  # measure_step adds two warm-up steps
PHASES = ("pack", "forward", "score", "collect")


def timed_phases(engine: Engine) -> dict[str, list[float]]:
    """Wraps the runner's phases so each ends with a synchronize and records its ms; returns the records."""
    times: dict[str, list[float]] = {name: [] for name in PHASES}
    for name in PHASES:
        method = getattr(engine.runner, name)

        def timed(*args, method=method, name=name):
            start = time.perf_counter()
            result = method(*args)
            torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) * 1e3)
            return result

        setattr(engine.runner, name, timed)
    return times


shape = next((a for a in sys.argv[1:] if not a.startswith("--")), "qwen3-8b")
config = EngineConfig(shape=shape, mode="bd", device="cuda", max_running=256, use_kernels="--no-kernels" not in sys.argv)
engine = Engine(config, start=False)
fill_kv_random(engine)
print(f"{shape}, prefix {PREFIX}, kernels {'on' if config.use_kernels else 'off'}")
print(f"{'b':>4} {'c':>3} {'step ms':>8} {'GPU ms':>8} {'kernels/step':>12} | phases, synchronized: "
      + " ".join(f"{name + ' ms':>10}" for name in PHASES))
for b, c in POINTS:
    step_ms = measure_step(engine, b, c, PREFIX, 10)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        measure_step(engine, b, c, PREFIX, PROFILED_REPEATS)
    steps = PROFILED_REPEATS + 2
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    gpu_ms = sum(e.device_time for e in kernels) / 1e3 / steps
    times = timed_phases(engine)
    measure_step(engine, b, c, PREFIX, 10)
    for name in PHASES:
        delattr(engine.runner, name)  # back to the class's methods
    phases = " ".join(f"{statistics.median(times[name][2:]):10.2f}" for name in PHASES)
    print(f"{b:4d} {c:3d} {step_ms:8.2f} {gpu_ms:8.2f} {len(kernels) / steps:12.0f} | {' ' * 22}{phases}")

with profile(activities=[ProfilerActivity.CPU]) as prof:
    measure_step(engine, 128, 1, PREFIX, PROFILED_REPEATS)
print(f"host operators of the (128, 1) step, {PROFILED_REPEATS + 2} steps:")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
