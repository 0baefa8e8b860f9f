"""The chunk attention of another version against this tree's, on the same GPU, at every shape of the kernel
bench (Qwen3-8B heads, bf16, 16-token pages in a shuffled table, block size 32): each shape's outputs compared and
both timed (CUDA graph replays, L2 flushed), one JSON row per shape.

    git show 9ae51f2:kernels/chunk_attention.py > /tmp/base_attention.py
    python3 scripts/attention_ab.py /tmp/base_attention.py --out attention_ab.json [--repeats 2] [--peers]

Both versions are first called on the same batch of 64 requests with 2048-token prefixes per window, so whichever
autotunes does it there (as kernels/bench.py does). ``--peers`` also times dense SDPA with and without a mask.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics

import torch

from kernels.bench_attention import BLOCK_SIZE, PAGE_SIZE, QWEN3_8B_HEADS, paged_batch, sdpa_peers
from kernels.bench_timing import Timer
from kernels.chunk_attention import chunk_attention

BATCHES, WINDOWS, PREFIXES = (1, 4, 16, 64, 128, 256), (1, 4, 8, 16, 32), (512, 2048, 8192)


def load_base(path: str):
    """The other version's ``chunk_attention``, from its module file."""
    spec = importlib.util.spec_from_file_location("base_chunk_attention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.chunk_attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the other version's kernels/chunk_attention.py")
    parser.add_argument("--out", default="attention_ab.json")
    parser.add_argument("--repeats", type=int, default=1, help="timings per version and shape; the least is kept")
    parser.add_argument("--peers", action="store_true", help="also time dense SDPA without and with a mask")
    args = parser.parse_args()
    device = torch.device("cuda")
    timer = Timer(device)
    base = load_base(args.base)
    q_heads, kv_heads, head_dim = QWEN3_8B_HEADS
    scale = head_dim**-0.5
    versions = {"base": base, "this": chunk_attention}
    for window in WINDOWS:
        batch = paged_batch([window] * 64, [2048] * 64, q_heads, kv_heads, head_dim, PAGE_SIZE, torch.bfloat16, device)
        for attend in versions.values():
            attend(**batch, block_size=BLOCK_SIZE, scale=scale)
    rows = []
    for prefix in PREFIXES:
        for b in BATCHES:
            for c in WINDOWS:
                batch = paged_batch([c] * b, [prefix] * b, q_heads, kv_heads, head_dim, PAGE_SIZE, torch.bfloat16,
                                    device)
                outs = {name: attend(**batch, block_size=BLOCK_SIZE, scale=scale).float()
                        for name, attend in versions.items()}
                row = dict(b=b, c=c, P=prefix, max_abs_diff=(outs["this"] - outs["base"]).abs().max().item())
                times: dict[str, list[float]] = {name: [] for name in versions}
                for _ in range(args.repeats):  # interleaved, so a drift of the GPU's clocks hits both alike
                    for name, attend in versions.items():
                        times[name].append(timer(lambda: attend(**batch, block_size=BLOCK_SIZE, scale=scale)))  # noqa: B023
                row.update({f"{name}_ms": min(ms) for name, ms in times.items()})
                if args.peers:
                    for name, run in sdpa_peers(batch, b, c, prefix, BLOCK_SIZE, scale).items():
                        if name != "gather_sdpa":
                            row[f"{name}_ms"] = timer(run)
                row["speedup"] = row["base_ms"] / row["this_ms"]
                rows.append(row)
                print(f"b={b:3d} c={c:2d} P={prefix:5d} base {row['base_ms']:.4f} this {row['this_ms']:.4f} ms"
                      f" x{row['speedup']:.3f} (max |diff| {row['max_abs_diff']:.1e})", flush=True)
                del batch, outs
    for c in WINDOWS:
        print(f"c={c:2d}: median speedup {statistics.median(r['speedup'] for r in rows if r['c'] == c):.3f}")
    print(f"all: median speedup {statistics.median(r['speedup'] for r in rows):.3f},"
          f" faster at {sum(r['speedup'] > 1 for r in rows)}/{len(rows)} shapes")
    with open(args.out, "w") as handle:
        json.dump(dict(device=torch.cuda.get_device_name(device), base=args.base, rows=rows), handle, indent=1)


if __name__ == "__main__":
    main()
