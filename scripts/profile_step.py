"""Where one engine step's time goes on a GPU: wall time, the GPU's busy time and kernel launches per step.

    python3 scripts/profile_step.py [shape] [--no-kernels]

Wall minus GPU time is what the host adds (packing, the LM head's row gather, the commit loop).
"""

from __future__ import annotations

import sys

from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from optimus_backend.config import EngineConfig
from optimus_backend.engine import Engine
from optimus_backend.profiler import fill_kv_random, measure_step

POINTS = [(1, 1), (128, 1), (32, 8), (16, 32)]
PREFIX = 512
PROFILED_REPEATS = 3  # measure_step adds two warm-up steps

shape = next((a for a in sys.argv[1:] if not a.startswith("--")), "qwen3-8b")
config = EngineConfig(shape=shape, mode="bd", device="cuda", max_running=256, use_kernels="--no-kernels" not in sys.argv)
engine = Engine(config, start=False)
fill_kv_random(engine)
print(f"{shape}, prefix {PREFIX}, kernels {'on' if config.use_kernels else 'off'}")
print(f"{'b':>4} {'c':>3} {'step ms':>8} {'GPU ms':>8} {'kernels/step':>12}")
for b, c in POINTS:
    step_ms = measure_step(engine, b, c, PREFIX, 10)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        measure_step(engine, b, c, PREFIX, PROFILED_REPEATS)
    steps = PROFILED_REPEATS + 2
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    gpu_ms = sum(e.device_time for e in kernels) / 1e3 / steps
    print(f"{b:4d} {c:3d} {step_ms:8.2f} {gpu_ms:8.2f} {len(kernels) / steps:12.0f}")
