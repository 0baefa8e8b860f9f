"""Command-line flags that build an EngineConfig (shared by generate, profile, eval, bench and serve)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import EngineConfig


def add_engine_arguments(parser: argparse.ArgumentParser, mode: bool = True) -> None:
    defaults = EngineConfig()
    parser.add_argument("--checkpoint", type=Path, default=defaults.checkpoint, help="checkpoint directory (HF layout)")
    parser.add_argument("--shape", default=None, help="random-weight model of a named shape, e.g. qwen3-8b")
    if mode:
        parser.add_argument("--mode", default=defaults.mode, help="ar | bd | chunk:N | elastic")
    parser.add_argument("--device", default=defaults.device, help="auto | cpu | cuda[:N]")
    parser.add_argument("--dtype", default=defaults.dtype, help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--max-running", type=int, default=defaults.max_running, help="largest running batch")
    parser.add_argument("--kv-budget-bytes", type=int, default=defaults.kv_budget_bytes, help="KV pool size")
    parser.add_argument("--tpot-slo-ms", type=float, default=defaults.tpot_slo_ms, help="per-token latency SLO")
    parser.add_argument("--no-prefix-reuse", action="store_true", help="ablation: no prefix-KV reuse")
    parser.add_argument("--out-block", action="store_true", help="windows may hold MASKs of the next block")
    parser.add_argument("--no-kernels", action="store_true", help="PyTorch references instead of Triton kernels")


def engine_config_from_args(args: argparse.Namespace, **overrides) -> EngineConfig:
    values = dict(checkpoint=args.checkpoint, shape=args.shape, device=args.device, dtype=args.dtype,
                  max_running=args.max_running, kv_budget_bytes=args.kv_budget_bytes, tpot_slo_ms=args.tpot_slo_ms,
                  prefix_kv_reuse=not args.no_prefix_reuse, out_block=args.out_block, use_kernels=not args.no_kernels)
    if hasattr(args, "mode"):
        values["mode"] = args.mode
    values.update(overrides)
    return EngineConfig(**values).validate()
