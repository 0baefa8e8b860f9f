"""Where one engine step's time goes on a GPU: torch.profiler over a few steps of a random-weight shape."""

from __future__ import annotations

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from optimus_backend.config import EngineConfig
from optimus_backend.engine import Engine
from optimus_backend.profiler import measure_step

shape = sys.argv[1] if len(sys.argv) > 1 else "qwen3-8b"
engine = Engine(EngineConfig(shape=shape, mode="bd", device="cuda", max_running=256), start=False)
for b, c in [(1, 1), (128, 1), (16, 32)]:
    for use_kernels in (True,):
        print(f"b={b} c={c}: {measure_step(engine, b, c, 512, 5):.2f} ms (median of 5)")
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            measure_step(engine, b, c, 512, 2)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=8))
