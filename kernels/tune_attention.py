"""Measures every candidate launch config of the chunk attention kernel at representative shapes and prints the
fastest per (head dim, BLOCK_M, split): the table `HOPPER_CONFIGS` in kernels/chunk_attention.py.

    python3 -m kernels.tune_attention --out tune_attention.json   # on a CUDA machine

Shapes are Qwen3-8B heads (32 q / 8 kv, head dim 128), bf16, 16-token pages in a shuffled table, block size 32;
each config is checked against the default launch's result, then timed (CUDA graph replays, L2 flushed). A
config's score for a key is the geometric mean over that key's shapes of its time over the fastest config's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time

import torch
import triton
from tqdm import tqdm

from kernels.bench_attention import BLOCK_SIZE, PAGE_SIZE, QWEN3_8B_HEADS, paged_batch
from kernels.bench_timing import Timer
from kernels.chunk_attention import LaunchConfig, chunk_attention, plan_launch

CANDIDATES = [LaunchConfig(*c) for c in ((32, 4, 3), (32, 4, 4), (64, 4, 3), (64, 4, 4), (64, 8, 3), (128, 4, 2),
                                         (128, 8, 2), (128, 4, 3), (32, 2, 4))]
WINDOWS = (1, 4, 8, 16, 32)  # c = 1 and 4 share BLOCK_M 16 with Qwen3's group of 4
UNSPLIT_SHAPES = ((64, 512), (128, 2048), (256, 8192), (64, 8192))  # (batch, prefix): enough programs alone
SPLIT_SHAPES = ((1, 512), (1, 8192), (4, 2048), (16, 2048))  # the prefix is split across programs


def measure(timer: Timer) -> list[dict]:
    """One row per (window, batch, prefix, config): its ms, or why it could not run."""
    q_heads, kv_heads, head_dim = QWEN3_8B_HEADS
    scale = head_dim**-0.5
    rows = []
    shapes = [(c, b, p) for c in WINDOWS for b, p in UNSPLIT_SHAPES + SPLIT_SHAPES]
    for c, b, prefix in tqdm(shapes, desc="shapes"):
        batch = paged_batch([c] * b, [prefix] * b, q_heads, kv_heads, head_dim, PAGE_SIZE, torch.bfloat16,
                            timer.device)
        plan = plan_launch(b * c, b, q_heads // kv_heads, kv_heads, batch["page_table"].shape[1] * PAGE_SIZE,
                           timer.device)
        key = dict(head_dim=head_dim, block_m=plan.block_m, split=plan.num_splits > 1, c=c, b=b, P=prefix)
        expected = chunk_attention(**batch, block_size=BLOCK_SIZE, scale=scale).float()
        for config in CANDIDATES:
            row = dict(key, config=[config.block_n, config.warps, config.stages])
            run = lambda: chunk_attention(**batch, block_size=BLOCK_SIZE, scale=scale, config=config)  # noqa: E731, B023
            try:
                error = (run().float() - expected).abs().max().item() / expected.abs().max().item()
                if error > 1e-2:
                    row["error"] = f"differs from the default launch by {error:.3g} (relative to its max)"
                else:
                    row["ms"] = timer(run)
            except Exception as failure:  # noqa: BLE001 - a config that does not fit is a result
                row["error"] = f"{type(failure).__name__}: {str(failure)[:200]}"
            rows.append(row)
        del batch, expected
    return rows


def best_configs(rows: list[dict]) -> dict[tuple[int, int, bool], tuple[list[int], float]]:
    """Per (head dim, BLOCK_M, split): the config with the least geometric-mean slowdown, and that slowdown."""
    fastest: dict[tuple, float] = {}
    for row in rows:
        if "ms" in row:
            shape = (row["c"], row["b"], row["P"])
            fastest[shape] = min(fastest.get(shape, math.inf), row["ms"])
    scores: dict[tuple, dict[tuple, list[float]]] = {}
    for row in rows:
        key = (row["head_dim"], row["block_m"], row["split"])
        ratio = row["ms"] / fastest[(row["c"], row["b"], row["P"])] if "ms" in row else math.inf
        scores.setdefault(key, {}).setdefault(tuple(row["config"]), []).append(ratio)
    best = {}
    for key, per_config in scores.items():
        geomeans = {cfg: math.exp(sum(map(math.log, r)) / len(r)) for cfg, r in per_config.items()}
        config = min(geomeans, key=geomeans.get)
        best[key] = (list(config), geomeans[config])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tune_attention.json")
    args = parser.parse_args()
    device = torch.device("cuda")
    started = time.time()
    rows = measure(Timer(device))
    best = best_configs(rows)
    print("HOPPER_CONFIGS = {  # (head dim, BLOCK_M, split): LaunchConfig(block_n, warps, stages); geomean slowdown")
    for (head_dim, block_m, split), (config, slowdown) in sorted(best.items()):
        print(f"    ({head_dim}, {block_m}, {split}): LaunchConfig{tuple(config)},  # {slowdown:.3f}")
    print("}")
    result = dict(device=torch.cuda.get_device_name(device), date=datetime.datetime.now(datetime.UTC).isoformat(),
                  torch=torch.__version__, triton=triton.__version__, rows=rows, wall_s=time.time() - started,
                  best=[dict(head_dim=k[0], block_m=k[1], split=k[2], config=c, slowdown=s) for k, (c, s) in best.items()])
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
