"""Scale runs on a GPU inside one time budget: for each random-weight shape, the rate sweep and offline
throughput of every mode on the in-process engine with commit decisions replayed from recorded acceptance
statistics; then the Hugging Face transformers AR peer on the same shapes.

Writes few flat files (the device tool returns at most 8): ``sweep.csv``, ``capacity.csv``, ``offline.csv``,
``hf.csv``, with ``--changing`` also ``changing.csv`` and ``timeline.csv`` (every shape, a ``model`` column each),
``meta.json`` and ``scale.log``, rewritten after every mode so
a run cut short keeps what it measured. No plots (the GPU image may lack matplotlib): split by model and render
with ``python -m loadtest.report DIR`` afterwards.

    python -m loadtest.scale --replay docs/benchmarks/acceptance-optimus-tiny.json --out $OUT --budget-s 440
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import time
import traceback
from pathlib import Path

from . import bench, report
from .driver import PointSpec
from .workload import token_prompts

SHAPES = "qwen3-8b,qwen3-1.7b"
HF_SHARE = 0.25  # of the budget kept for the HF peer
HF_STATIC_MIN_S = 90.0  # a static-cache (compiled) HF run needs about this much left; else the dynamic cache
HF_RESERVE_S = 25.0  # kept for each later shape's (dynamic-cache) peer


class Results:
    """Rows of every shape, rewritten to the flat CSV files after each mode."""

    def __init__(self, out: Path):
        self.out = out
        self.engine = bench.ModeResults([], [])  # every mode's rows of every shape
        self.capacity: list[dict] = []
        self.hf: list[dict] = []

    def save(self) -> None:
        bench.write_csvs(self.out, self.engine, self.capacity)
        if self.hf:
            report.write_csv(self.hf, list(self.hf[0]), self.out / "hf.csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--shares", default="3,2", help="relative engine time of each shape")
    parser.add_argument("--modes", default=bench.MODES, help='engine modes ("" runs only the HF peer)')
    parser.add_argument("--replay", type=Path, required=True, help="recorded acceptance statistics")
    parser.add_argument("--rates", default="8,16,32,64,128")
    parser.add_argument("--duration", type=float, default=2.5)
    parser.add_argument("--changing", default="", help="changing loads, as optimus bench's --changing")
    parser.add_argument("--drain", type=float, default=15.0)
    parser.add_argument("--slo-ms", type=float, default=50.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--max-running", type=int, default=128)
    parser.add_argument("--hf-batches", default="32", help='HF peer batch sizes ("" skips the peer)')
    parser.add_argument("--budget-s", type=float, default=440.0, help="wall-clock budget of the whole run")
    parser.add_argument("--out", type=Path, required=True)


def bench_args(shape: str, replay: Path, max_running: int, out: Path, changing: str = "") -> argparse.Namespace:
    """``optimus bench``'s arguments for the in-process engine of a random-weight shape replaying ``replay``."""
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(["--shape", shape, "--path", "in-process", "--replay", str(replay), "--ignore-eos",
                              "--max-running", str(max_running), "--changing", changing, "--out", str(out)])


def shape_spec(shape: str, prompt_len: int, max_tokens: int, duration_s: float, drain_s: float,
               slo_ms: float) -> PointSpec:
    """A rate point's workload on a random-weight shape: 64 random prompts of ``prompt_len`` tokens, each asking
    for ``max_tokens`` (EOS ignored)."""
    from optimus_backend.checkpoint import SHAPES as DIMS

    prompts = token_prompts(DIMS[shape]["vocab_size"], prompt_len, 64)
    return PointSpec(prompts, {"max_tokens": max_tokens, "ignore_eos": True}, duration_s, drain_s, slo_ms)


def run_shape(args: argparse.Namespace, shape: str, deadline: float, results: Results, log) -> None:
    """Every mode's sweep and offline rows for one shape, each mode with an equal share of the time left."""
    bargs = bench_args(shape, args.replay, args.max_running, args.out, args.changing)
    spec = shape_spec(shape, args.prompt_len, args.max_tokens, args.duration, args.drain, args.slo_ms)
    prompts = spec.prompts
    rates = [float(r) for r in args.rates.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    modes = args.modes.split(",")
    base = {"model": shape, "replayed": "yes", "card": bench.card(bench.mode_config(bargs, modes[0]))}
    for i, mode in enumerate(modes):
        started = time.monotonic()
        share = (deadline - started) / (len(modes) - i)
        config = bench.mode_config(bargs, mode)
        labels = {**base, "mode": mode, "checkpoint": config.shape}
        try:
            measured = bench.bench_mode(bargs, config, prompts, spec, labels, rates, batches, share)
        except Exception:  # one broken mode must not lose the others' numbers
            log(f"{shape} {mode} failed:\n{traceback.format_exc()}")
            continue
        rows, offline = measured.sweep, measured.offline
        results.engine.merge(measured)
        results.capacity.append(bench.capacity_row(labels, rows, args.slo_ms))
        results.save()
        for row in measured.changing:
            log(f"{shape} {mode} {row['load']}: {row['throughput_tok_s']:.0f} tok/s, P50/P90 TPOT "
                f"{row['tpot_p50_ms']:.1f}/{row['tpot_p90_ms']:.1f} ms, P90 TTFT {row['ttft_p90_ms']:.0f} ms, "
                f"mean c {row['mean_chunk']:.1f}")
        best = max(rows, key=lambda r: r["throughput_tok_s"])
        log(f"{shape} {mode}: {len(rows)} points in {time.monotonic() - started:.0f} s, capacity "
            f"{results.capacity[-1]['capacity_rps']:g} req/s, max {best['throughput_tok_s']:.0f} tok/s; offline "
            + ", ".join(f"b{r['batch']} {r['tokens_per_s']:.0f}" for r in offline))


def run_hf(args: argparse.Namespace, shape: str, deadline: float, results: Results, log) -> None:
    """The HF peer at each batch size: static cache (compiled) when the time allows, else the dynamic cache."""
    import torch

    from .hf_peer import build_model, generate_throughput

    try:
        model = build_model(shape)
        for batch in (int(b) for b in args.hf_batches.split(",")):
            left = deadline - time.monotonic()
            cache = "static" if left > HF_STATIC_MIN_S else "dynamic"
            if left < 15:
                log(f"{shape} hf b={batch}: skipped ({left:.0f} s left)")
                break
            row = {"model": shape, **generate_throughput(model, batch, args.prompt_len, args.max_tokens, cache)}
            results.hf.append(row)
            results.save()
            log(f"{shape} hf {cache} b={batch}: {row['tokens_per_s']:.0f} tok/s")
        del model
    except Exception:
        log(f"{shape} hf failed:\n{traceback.format_exc()}")
    gc.collect()
    torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    logfile = open(args.out / "scale.log", "a")

    def log(text: str) -> None:
        line = f"[{time.monotonic() - start:6.1f} s] {text}"
        print(line, flush=True)
        logfile.write(line + "\n")
        logfile.flush()

    import torch

    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
            "card": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    results = Results(args.out)
    shapes = args.shapes.split(",")
    shares = [float(w) for w in args.shares.split(",")][:len(shapes)]
    hf = bool(args.hf_batches.strip())
    engines_end = start + (1 - HF_SHARE if hf else 1) * args.budget_s
    for i, shape in enumerate(shapes if args.modes.strip() else []):  # --modes= runs the HF peer only
        part = shares[i] / sum(shares[i:])
        run_shape(args, shape, time.monotonic() + part * (engines_end - time.monotonic()), results, log)
    for i, shape in enumerate(shapes if hf else []):  # the first peer may use all but HF_RESERVE_S per later shape
        run_hf(args, shape, start + args.budget_s - HF_RESERVE_S * (len(shapes) - 1 - i), results, log)
    log("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
