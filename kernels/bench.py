"""Kernel benchmark: GPU correctness against the references, then timings against PyTorch peers.

    python3 -m kernels.bench --out kernels_h100.json   # on a CUDA machine
    python3 -m kernels.bench --markdown docs/benchmarks/kernels_h100.json   # the tables for docs/KERNELS.md

Chunk attention (Qwen3-8B heads: 32 q / 8 kv, head dim 128, 16-token pages, bf16) is timed against
torch SDPA on dense KV (no mask, and with a materialized mask), gather-from-pages + SDPA, and compiled
FlexAttention; bytes/s count K/V read plus q read and out written, against a device-to-device copy.
`--smoke` runs the same flow on tiny shapes on the CPU (kernels under TRITON_INTERPRET=1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from typing import Callable

if "--smoke" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402

from kernels.chunk_attention import _chunk_attention_kernel, chunk_attention, plan_launch, store_kv  # noqa: E402
from kernels.chunk_attention_ref import chunk_attention_reference, store_kv_reference  # noqa: E402
from kernels.confidence import lm_head_confidence, max_softmax  # noqa: E402
from kernels.confidence_ref import lm_head_confidence_reference, max_softmax_reference  # noqa: E402

GIB = 2**30


class Timer:
    """Median milliseconds of a call. On CUDA: replays of a CUDA graph of the call with L2 flushed
    before each (host launch overhead excluded, as in the engine's captured steps), falling back to
    do_bench where capture fails; `last_method` says which. Elsewhere: wall clock."""

    def __init__(self, device: torch.device):
        self.device = device
        self.flush = torch.empty(256 * 2**20, dtype=torch.int8, device=device) if device.type == "cuda" else None
        self.last_method = "wall"

    def __call__(self, fn: Callable[[], object]) -> float:
        fn()  # compile and autotune outside any timing
        if self.device.type != "cuda":
            return self._wall_ms(fn)
        try:
            return self._graph_ms(fn)
        except Exception:  # noqa: BLE001 - not capturable: time eager launches instead
            torch.cuda.synchronize()
            self.last_method = "do_bench"
            return triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median")

    def _graph_ms(self, fn) -> float:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        repeats = max(5, min(100, int(20 / max(start.elapsed_time(end), 1e-3))))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            self.flush.zero_()
            start.record()
            graph.replay()
            end.record()
        torch.cuda.synchronize()
        del graph
        self.last_method = "cuda_graph"
        return statistics.median(start.elapsed_time(end) for start, end in events)

    def _wall_ms(self, fn) -> float:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - started) * 1e3)
        return statistics.median(runs)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def paged_batch(windows, prefixes, q_heads, kv_heads, head_dim, page_size, dtype, device):
    """Random windows over random prefixes stored in shuffled 'page_size'-token pages."""
    pages_per_request = max(1, max(-(-p // page_size) for p in prefixes))
    num_pages = len(windows) * pages_per_request
    tokens = sum(windows)
    cu_seqlens = torch.tensor([0, *windows], device=device).cumsum(0).int()
    return dict(
        q=torch.randn(tokens, q_heads, head_dim, device=device, dtype=dtype),
        k=torch.randn(tokens, kv_heads, head_dim, device=device, dtype=dtype),
        v=torch.randn(tokens, kv_heads, head_dim, device=device, dtype=dtype),
        positions=torch.cat([torch.arange(p, p + w, device=device) for w, p in zip(windows, prefixes)]).int(),
        cu_seqlens=cu_seqlens,
        k_cache=torch.randn(num_pages, page_size, kv_heads, head_dim, device=device, dtype=dtype),
        v_cache=torch.randn(num_pages, page_size, kv_heads, head_dim, device=device, dtype=dtype),
        page_table=torch.randperm(num_pages, device=device).int().view(len(windows), pages_per_request),
        prefix_lens=torch.tensor(prefixes, device=device, dtype=torch.int32),
    )


def check_correctness(device: torch.device, heads: tuple[int, int, int]) -> dict:
    """Max relative error of each kernel against its reference on the device, bf16."""
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
        batch = paged_batch(windows, prefixes, q_heads, kv_heads, dim, page_size, torch.bfloat16, device)
        out = chunk_attention(**batch, block_size=block_size, scale=dim**-0.5, split_len=split_len)
        ref = chunk_attention_reference(**batch, block_size=block_size, scale=dim**-0.5)
        results[f"chunk_attention/{name}"] = rel_error(out, ref)
    batch = paged_batch((5, 3), (40, 7), q_heads, kv_heads, head_dim, 16, torch.bfloat16, device)
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


def memory_bandwidths(device: torch.device, time_ms: Timer) -> dict:
    """Device-to-device copy (bytes read + written per second) and a pure read (a sum), 1 GiB."""
    size = GIB if device.type == "cuda" else 2**24
    source = torch.randn(size // 2, device=device, dtype=torch.bfloat16)
    dest = torch.empty_like(source)
    return dict(
        copy_bandwidth_Bps=2 * size / (time_ms(lambda: dest.copy_(source)) * 1e-3),
        read_bandwidth_Bps=size / (time_ms(lambda: source.sum(dtype=torch.float32)) * 1e-3),
    )


def sdpa_peers(batch: dict, b: int, c: int, prefix: int, block_size: int, scale: float) -> dict:
    """torch SDPA on the same shapes: dense KV (no mask; materialized mask) and gather-from-pages."""
    q_heads, head_dim = batch["q"].shape[1:]
    kv_heads = batch["k"].shape[1]
    query = batch["q"].view(b, c, q_heads, head_dim).transpose(1, 2)
    dense_k = torch.randn(b, kv_heads, prefix + c, head_dim, device=query.device, dtype=query.dtype)
    dense_v = torch.randn_like(dense_k)
    key_blocks = torch.arange(prefix + c, device=query.device) // block_size
    query_blocks = torch.arange(prefix, prefix + c, device=query.device) // block_size
    mask = (key_blocks[None, :] <= query_blocks[:, None]).expand(b, 1, c, prefix + c).contiguous()

    def gathered(cache, window):
        paged = cache[batch["page_table"].long()].flatten(1, 2)[:, :prefix]
        return torch.cat([paged, window.view(b, c, kv_heads, head_dim)], dim=1).transpose(1, 2)

    def gather_sdpa():
        keys, values = gathered(batch["k_cache"], batch["k"]), gathered(batch["v_cache"], batch["v"])
        return F.scaled_dot_product_attention(query, keys, values, scale=scale, enable_gqa=True)

    return {
        "sdpa": lambda: F.scaled_dot_product_attention(query, dense_k, dense_v, scale=scale, enable_gqa=True),
        "sdpa_mask": lambda: F.scaled_dot_product_attention(
            query, dense_k, dense_v, attn_mask=mask, scale=scale, enable_gqa=True
        ),
        "gather_sdpa": gather_sdpa,
    }


def flex_peer(flex, batch: dict, b: int, c: int, prefix: int, block_size: int, scale: float):
    """Compiled FlexAttention over dense KV with a block-causal block mask."""
    from torch.nn.attention.flex_attention import create_block_mask

    q_heads, head_dim = batch["q"].shape[1:]
    query = batch["q"].view(b, c, q_heads, head_dim).transpose(1, 2)
    dense_k = torch.randn(b, batch["k"].shape[1], prefix + c, head_dim, device=query.device, dtype=query.dtype)
    dense_v = torch.randn_like(dense_k)

    def block_causal(batch_index, head, q_index, kv_index):
        return kv_index // block_size <= (q_index + prefix) // block_size

    block_mask = create_block_mask(block_causal, None, None, c, prefix + c, device=query.device)
    return lambda: flex(query, dense_k, dense_v, block_mask=block_mask, scale=scale, enable_gqa=True)


def timed_or_error(row: dict, name: str, time_ms: Timer, make: Callable[[], Callable]) -> None:
    """row[name_ms] = time of make()(), or row[name_error] when building or running it fails."""
    try:
        row[f"{name}_ms"] = time_ms(make())
        if time_ms.last_method == "do_bench":
            row[f"{name}_timing"] = "do_bench (CUDA graph capture failed)"
    except Exception as error:  # noqa: BLE001 - a peer's failure is a result to record
        row[f"{name}_error"] = f"{type(error).__name__}: {str(error)[:300]}"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def summarize(row: dict, copy_bps: float) -> None:
    total_bytes = row["kv_bytes"] + row["qo_bytes"]
    row["ours_TBps"] = total_bytes / row["ours_ms"] * 1e-9
    row["ours_frac_copy"] = total_bytes / (row["ours_ms"] * 1e-3) / copy_bps
    peer_ms = [row[k] for k in ("sdpa_ms", "sdpa_mask_ms", "gather_sdpa_ms", "flex_ms") if k in row]
    row["speedup_vs_best_peer"] = min(peer_ms) / row["ours_ms"] if peer_ms else None


def tune_chunk_attention(args, device: torch.device, heads: tuple[int, int, int]) -> None:
    """Autotune each q-tile shape (BLOCK_M) on a mid-size batch, before anything else fixes its config."""
    q_heads, kv_heads, head_dim = heads
    prefix = args.prefixes[len(args.prefixes) // 2]
    for window in args.windows:
        batch = paged_batch([window] * args.tune_batch, [prefix] * args.tune_batch, q_heads, kv_heads, head_dim, 16, torch.bfloat16, device)
        chunk_attention(**batch, block_size=32, scale=head_dim**-0.5)


def bench_attention(args, device, time_ms: Timer, copy_bps: float, heads, started: float, save: Callable) -> list[dict]:
    """Ours and the SDPA peers at every shape (largest KV first, until --budget-s), then compiled
    FlexAttention at the largest shapes with c in --flex-windows until --flex-until-s; `save(rows)`
    after each phase and each Flex shape keeps partial results."""
    q_heads, kv_heads, head_dim = heads
    block_size, page_size, scale = 32, 16, head_dim**-0.5
    shapes = [(b, c, p) for p in args.prefixes for b in args.batches for c in args.windows]
    shapes.sort(key=lambda shape: -shape[0] * (shape[1] + shape[2]))
    rows = []
    for b, c, prefix in shapes:
        kv_bytes = 2 * b * (prefix + c) * kv_heads * head_dim * 2
        row = dict(b=b, c=c, P=prefix, kv_bytes=kv_bytes, qo_bytes=2 * b * c * q_heads * head_dim * 2)
        rows.append(row)
        if kv_bytes > args.max_kv_gb * 1e9 or time.time() > started + args.budget_s:
            row["skipped"] = "kv over limit" if kv_bytes > args.max_kv_gb * 1e9 else "time budget"
            continue
        batch = paged_batch([c] * b, [prefix] * b, q_heads, kv_heads, head_dim, page_size, torch.bfloat16, device)
        timed_or_error(row, "ours", time_ms, lambda: lambda: chunk_attention(**batch, block_size=block_size, scale=scale))
        plan = plan_launch(b * c, b, q_heads // kv_heads, kv_heads, batch["page_table"].shape[1] * page_size, device)
        row["block_q"], row["splits"] = plan.block_q, plan.num_splits
        for name, fn in sdpa_peers(batch, b, c, prefix, block_size, scale).items():
            timed_or_error(row, name, time_ms, lambda: fn)
        if "ours_ms" in row:
            summarize(row, copy_bps)
            print(format_attention_row(row), flush=True)
        del batch
    save(rows)
    if args.flex:
        from torch.nn.attention.flex_attention import flex_attention

        for limit in ("recompile_limit", "accumulated_recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, limit):  # one compile per shape (dynamic=False), as the peers ran it
                setattr(torch._dynamo.config, limit, 4096)
        flex = torch.compile(flex_attention, dynamic=False)
        for row in rows:
            if "ours_ms" not in row or row["c"] not in args.flex_windows:
                continue
            if time.time() > started + args.flex_until_s:
                row["flex_error"] = "not run: time budget"
                continue
            b, c, prefix = row["b"], row["c"], row["P"]
            batch = paged_batch([c] * b, [prefix] * b, q_heads, kv_heads, head_dim, page_size, torch.bfloat16, device)
            timed_or_error(row, "flex", time_ms, lambda: flex_peer(flex, batch, b, c, prefix, block_size, scale))
            summarize(row, copy_bps)
            print(format_attention_row(row), flush=True)
            del batch
            save(rows)
    return sorted(rows, key=lambda row: (row["P"], row["b"], row["c"]))


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


def format_attention_row(row: dict) -> str:
    def ms(key):
        return f"{row[key]:8.3f}" if key in row else "     n/a"

    head = f"b={row['b']:4d} c={row['c']:3d} P={row['P']:5d}"
    if "skipped" in row:
        return f"{head}  skipped: {row['skipped']}"
    speedup = row["speedup_vs_best_peer"]
    return (
        f"{head} ours {ms('ours_ms')} ms {row['ours_TBps']:5.2f} TB/s {100 * row['ours_frac_copy']:4.0f}% | sdpa {ms('sdpa_ms')}"
        f" mask {ms('sdpa_mask_ms')} gather {ms('gather_sdpa_ms')} flex {ms('flex_ms')} | x{speedup or float('nan'):.2f}"
    )


def markdown(report: dict, flex_fallback: dict | None = None) -> str:
    """The tables of docs/KERNELS.md from a benchmark JSON; Flex times missing there are taken from
    `flex_fallback` (another run's JSON) and marked with a dagger."""
    fallback = {(r["b"], r["c"], r["P"]): r for r in (flex_fallback or {}).get("attention", [])}

    def cell(row, key, digits=3):
        return f"{row[key]:.{digits}f}" if row.get(key) is not None else "—"

    def flex_cell(row):
        if "flex_ms" in row:
            return cell(row, "flex_ms")
        other = fallback.get((row["b"], row["c"], row["P"]), {})
        if "flex_ms" in other:
            return f"{other['flex_ms']:.3f}†"
        return "fail" if "flex_error" in row and "not run" not in row["flex_error"] else "—"

    lines = [
        "| b | c | P | ours ms | TB/s | % of copy | SDPA ms | SDPA+mask ms | gather+SDPA ms | Flex ms | best peer / ours |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["attention"]:
        if "ours_ms" not in row:
            continue
        lines.append(
            f"| {row['b']} | {row['c']} | {row['P']} | {cell(row, 'ours_ms')} | {cell(row, 'ours_TBps', 2)} "
            f"| {100 * row['ours_frac_copy']:.0f}% | {cell(row, 'sdpa_ms')} | {cell(row, 'sdpa_mask_ms')} "
            f"| {cell(row, 'gather_sdpa_ms')} | {flex_cell(row)} | {cell(row, 'speedup_vs_best_peer', 2)} |"
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
    args = parser.parse_args()
    full = not args.smoke
    args.batches = [1, 4, 16, 64, 128, 256] if full else [1, 3]
    args.windows = [1, 4, 8, 16, 32] if full else [1, 4]
    args.prefixes = [512, 2048, 8192] if full else [16, 40]
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
    heads, hidden_size = ((32, 8, 128), 4096) if not args.smoke else ((4, 2, 16), 64)
    time_ms = Timer(device)
    torch.manual_seed(0)
    report = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (interpreter smoke run)",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        torch=torch.__version__,
        triton=triton.__version__,
        heads=dict(q=heads[0], kv=heads[1], head_dim=heads[2]),
        page_size=16,
        dtype="bfloat16",
        timing="ms, median of CUDA-graph replays of one call, L2 flushed before each (do_bench where capture failed)",
    )

    def save():
        with open(args.out, "w") as file:
            json.dump(report, file, indent=1)

    report.update(memory_bandwidths(device, time_ms))
    print(
        f"device {report['device']}  copy {report['copy_bandwidth_Bps'] * 1e-12:.2f} TB/s (read + write), "
        f"read {report['read_bandwidth_Bps'] * 1e-12:.2f} TB/s",
        flush=True,
    )
    tune_chunk_attention(args, device, heads)
    print(f"autotuned in {time.time() - started:.0f} s", flush=True)
    report["max_rel_error"] = check_correctness(device, heads)
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
