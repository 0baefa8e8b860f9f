"""Kernel benchmark: GPU correctness against the references, then timings against PyTorch peers.

    python3 -m kernels.bench --out kernels_h100.json   # on a CUDA machine
    python3 -m kernels.bench --markdown docs/benchmarks/kernels_h100.json   # the tables for docs/KERNELS.md

Chunk attention (Qwen3-8B heads: 32 q / 8 kv, head dim 128, 16-token pages, bf16) is timed against
torch SDPA on dense KV (no mask, and with a materialized mask), gather-from-pages + SDPA, and compiled
FlexAttention; bytes/s count K/V read plus q read and out written, against a device-to-device copy and a read.
`--smoke` runs the same flow on tiny shapes on the CPU (kernels under TRITON_INTERPRET=1).
The attention sweep lives in kernels/bench_attention.py, timing in kernels/bench_timing.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

if "--smoke" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import triton  # noqa: E402

from kernels import KV_LAYOUTS  # noqa: E402
from kernels.bench_attention import QWEN3_8B_HEADS, bench_attention, paged_batch, tune_chunk_attention  # noqa: E402
from kernels.bench_timing import Timer, memory_bandwidths  # noqa: E402
from kernels.chunk_attention import _chunk_attention_kernel, chunk_attention, store_kv  # noqa: E402
from kernels.chunk_attention_ref import chunk_attention_reference, store_kv_reference  # noqa: E402
from kernels.confidence import lm_head_confidence, max_softmax  # noqa: E402
from kernels.confidence_ref import lm_head_confidence_reference, max_softmax_reference  # noqa: E402

def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def check_correctness(device: torch.device, heads: tuple[int, int, int], layout: str) -> dict:
    """Max relative error of each kernel against its reference on the device, bf16, KV pages in ``layout``."""
    q_heads, kv_heads, head_dim = heads
    results = {}
    cases = {
        "mixed_b5_page16_block4": ((3, 1, 17, 32, 0), (100, 0, 517, 33, 64), head_dim, 16, 4, None),
        "split_b2_c8_P3000": ((8, 8), (3000, 1234), head_dim, 16, 32, None),
        "forced_split_block1": ((1, 4, 2), (700, 0, 129), head_dim, 16, 1, 128),
        "head_dim64_page7": ((5, 9), (70, 301), 64, 7, 8, None),
    }
    if device.type == "cuda":  # too slow for the interpreter
        cases["b32_c32_P2048"] = ((32,) * 32, (2048,) * 32, head_dim, 16, 32, None)
        cases["b2_c1_P8192"] = ((1, 1), (8192, 8000), head_dim, 16, 32, None)
    for name, (windows, prefixes, dim, page_size, block_size, split_len) in cases.items():
        batch = paged_batch(windows, prefixes, q_heads, kv_heads, dim, page_size, torch.bfloat16, device, layout)
        out = chunk_attention(**batch, block_size=block_size, scale=dim**-0.5, split_len=split_len)
        ref = chunk_attention_reference(**batch, block_size=block_size, scale=dim**-0.5)
        results[f"chunk_attention/{name}"] = rel_error(out, ref)
    batch = paged_batch((5, 3), (40, 7), q_heads, kv_heads, head_dim, 16, torch.bfloat16, device, layout)
    slots = torch.tensor([3, 4, -1, 17, 15, 16, -1, 0], device=device)
    caches = [batch["k_cache"].clone(), batch["v_cache"].clone()]
    store_kv(batch["k"], batch["v"], batch["k_cache"], batch["v_cache"], slots)
    store_kv_reference(batch["k"], batch["v"], *caches, slots)
    results["store_kv/exact"] = float(not (torch.equal(batch["k_cache"], caches[0]) and torch.equal(batch["v_cache"], caches[1])))
    for rows, vocab in ((64, 151936), (300, 8192)):
        logits = torch.randn(rows, vocab, device=device, dtype=torch.bfloat16) * 4
        (conf, token), (ref_conf, ref_token) = max_softmax(logits), max_softmax_reference(logits)
        results[f"max_softmax/R{rows}_V{vocab}"] = rel_error(conf, ref_conf)
        results[f"max_softmax/R{rows}_V{vocab}_argmax_mismatch"] = float((token != ref_token).sum())
    hidden = torch.randn(32, 512, device=device, dtype=torch.bfloat16)
    weight = torch.randn(20000, 512, device=device, dtype=torch.bfloat16) * 0.05
    (conf, token), (ref_conf, ref_token) = lm_head_confidence(hidden, weight), lm_head_confidence_reference(hidden, weight)
    results["lm_head_confidence/R32_V20000"] = rel_error(conf, ref_conf)
    results["lm_head_confidence/argmax_mismatch"] = float((token != ref_token).sum())
    for name, value in results.items():
        print(f"check {name:48s} {value:.2e}", flush=True)
    return results


def bench_confidence(args, device, time_ms, hidden_size: int) -> list[dict]:
    rows = []
    for vocab in args.vocabs:
        weight = torch.randn(vocab, hidden_size, device=device, dtype=torch.bfloat16) * 0.02
        for rows_count in args.rows:
            logits = torch.randn(rows_count, vocab, device=device, dtype=torch.bfloat16) * 4
            hidden = torch.randn(rows_count, hidden_size, device=device, dtype=torch.bfloat16)
            row = dict(R=rows_count, V=vocab, D=hidden_size, logits_bytes=logits.numel() * 2)
            row["max_softmax_ms"] = time_ms(lambda: max_softmax(logits))
            row["torch_softmax_max_ms"] = time_ms(lambda: max_softmax_reference(logits))
            row["max_softmax_TBps"] = row["logits_bytes"] / row["max_softmax_ms"] * 1e-9
            row["matmul_ms"] = time_ms(lambda: hidden @ weight.t())
            row["lm_head_confidence_ms"] = time_ms(lambda: lm_head_confidence(hidden, weight))
            row["torch_lm_head_softmax_max_ms"] = time_ms(lambda: lm_head_confidence_reference(hidden, weight))
            row["timing"] = time_ms.last_method
            rows.append(row)
            print(
                f"conf R={rows_count:5d} V={vocab:6d}  max_softmax {row['max_softmax_ms']:.4f} ms "
                f"({row['max_softmax_TBps']:.2f} TB/s) torch {row['torch_softmax_max_ms']:.4f} ms | lm_head: "
                f"matmul {row['matmul_ms']:.3f} ours {row['lm_head_confidence_ms']:.3f} torch {row['torch_lm_head_softmax_max_ms']:.3f} ms",
                flush=True,
            )
    return rows


def markdown(report: dict, flex_fallback: dict | None = None) -> str:
    """The tables of docs/KERNELS.md from a benchmark JSON; Flex times missing there are taken from
    `flex_fallback` (another run's JSON) and marked with a dagger."""
    fallback = {(r["b"], r["c"], r["P"]): r for r in (flex_fallback or {}).get("attention", [])}

    def cell(row, key, digits=3):
        return f"{row[key]:.{digits}f}" if row.get(key) is not None else "—"

    def flex_cell(row):
        if "flex_ms" in row:
            return cell(row, "flex_ms", 4)
        other = fallback.get((row["b"], row["c"], row["P"]), {})
        if "flex_ms" in other:
            return f"{other['flex_ms']:.4f}†"
        return "fail" if "flex_error" in row and "not run" not in row["flex_error"] else "—"

    lines = [
        "| b | c | P | ours ms | TB/s | % of copy | % of read | SDPA ms | SDPA+mask ms | gather+SDPA ms | Flex ms | best peer / ours |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["attention"]:
        if "ours_ms" not in row:
            continue
        lines.append(
            f"| {row['b']} | {row['c']} | {row['P']} | {cell(row, 'ours_ms', 4)} | {cell(row, 'ours_TBps', 2)} "
            f"| {100 * row['ours_frac_copy']:.0f}% | {row['ours_TBps'] * 1e14 / report['read_bandwidth_Bps']:.0f}% "
            f"| {cell(row, 'sdpa_ms', 4)} | {cell(row, 'sdpa_mask_ms', 4)} "
            f"| {cell(row, 'gather_sdpa_ms', 4)} | {flex_cell(row)} | {cell(row, 'speedup_vs_best_peer', 2)} |"
        )
    lines += [
        "",
        "| R | V | max_softmax ms | TB/s | torch softmax+max ms | LM-head matmul ms | lm_head_confidence ms | torch matmul+softmax+max ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["confidence"]:
        lines.append(
            f"| {row['R']} | {row['V']} | {cell(row, 'max_softmax_ms', 4)} | {cell(row, 'max_softmax_TBps', 2)} "
            f"| {cell(row, 'torch_softmax_max_ms', 4)} | {cell(row, 'matmul_ms')} | {cell(row, 'lm_head_confidence_ms')} "
            f"| {cell(row, 'torch_lm_head_softmax_max_ms')} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="kernels_bench.json")
    parser.add_argument("--markdown", metavar="JSON", help="print the docs tables of a benchmark JSON and exit")
    parser.add_argument("--flex-fallback", metavar="JSON", help="with --markdown: Flex times of another run")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU through the Triton interpreter")
    parser.add_argument("--budget-s", type=float, default=200.0, help="attention shapes past this wall time are skipped")
    parser.add_argument("--flex-until-s", type=float, default=300.0, help="FlexAttention shapes past this wall time are skipped")
    parser.add_argument("--flex-windows", type=int, nargs="*", default=[1, 4, 8, 16])
    parser.add_argument("--no-flex", dest="flex", action="store_false")
    parser.add_argument("--max-kv-gb", type=float, default=40.0)
    parser.add_argument("--layout", choices=KV_LAYOUTS, default=KV_LAYOUTS[0], help="memory order of the KV pages")
    parser.add_argument("--page-order", choices=("shuffled", "sequential"), default="shuffled",
                        help="page tables of the attention shapes: shuffled pages, or each request's pages in a row")
    parser.add_argument("--batches", type=int, nargs="*", help="attention batch sizes (default: the issue's grid)")
    parser.add_argument("--windows", type=int, nargs="*", help="attention window sizes c")
    parser.add_argument("--prefixes", type=int, nargs="*", help="attention prefix lengths P")
    args = parser.parse_args()
    full = not args.smoke
    args.batches = args.batches or ([1, 4, 16, 64, 128, 256] if full else [1, 3])
    args.windows = args.windows or ([1, 4, 8, 16, 32] if full else [1, 4])
    args.prefixes = args.prefixes or ([512, 2048, 8192] if full else [16, 40])
    args.rows = [128, 1024, 4096] if full else [4]
    args.vocabs = [151936, 8192] if full else [3000]
    args.tune_batch = 64 if full else 2
    return args


def main() -> None:
    args = parse_args()
    if args.markdown:
        with open(args.markdown) as file:
            report = json.load(file)
        fallback = None
        if args.flex_fallback:
            with open(args.flex_fallback) as file:
                fallback = json.load(file)
        print(markdown(report, fallback))
        return
    started = time.time()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    heads, hidden_size = (QWEN3_8B_HEADS, 4096) if not args.smoke else ((4, 2, 16), 64)
    time_ms = Timer(device)
    torch.manual_seed(0)
    report = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (interpreter smoke run)",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        torch=torch.__version__,
        triton=triton.__version__,
        heads=dict(q=heads[0], kv=heads[1], head_dim=heads[2]),
        page_size=16,
        kv_layout=args.layout,
        page_order=args.page_order,
        dtype="bfloat16",
        timing="ms, median of CUDA-graph replays of one call, L2 flushed before each (do_bench where capture failed)",
    )

    def save():
        with open(args.out, "w") as file:
            json.dump(report, file, indent=1)

    tune_chunk_attention(args, device, heads)  # also warms the GPU up before the bandwidths are measured
    print(f"autotuned in {time.time() - started:.0f} s", flush=True)
    report.update(memory_bandwidths(device, time_ms))
    print(
        f"device {report['device']}  copy {report['copy_bandwidth_Bps'] * 1e-12:.2f} TB/s (read + write), "
        f"read {report['read_bandwidth_Bps'] * 1e-12:.2f} TB/s",
        flush=True,
    )
    report["max_rel_error"] = check_correctness(device, heads, args.layout)
    save()
    report["confidence"] = bench_confidence(args, device, time_ms, hidden_size)
    save()

    def save_attention(rows):
        report["attention"] = rows
        save()

    report["attention"] = bench_attention(
        args, device, time_ms, report["copy_bandwidth_Bps"], heads, started, save_attention
    )
    tuned = getattr(_chunk_attention_kernel, "cache", {})
    report["chunk_attention_configs"] = {str(key): str(config) for key, config in tuned.items()}
    report["wall_s"] = time.time() - started
    save()
    timed = [row for row in report["attention"] if "ours_ms" in row]
    wins = sum(1 for row in timed if (row["speedup_vs_best_peer"] or 0) > 1)
    print(f"chunk attention faster than every peer at {wins}/{len(timed)} shapes; wall {report['wall_s']:.0f} s")
    for key, config in report["chunk_attention_configs"].items():
        print(f"config {key}: {config}")


if __name__ == "__main__":
    main()
