"""Scale runs on a GPU inside one time budget: for each random-weight shape, the rate sweep and offline
throughput of every mode on the in-process engine with commit decisions replayed from recorded acceptance
statistics, then the Hugging Face transformers AR peer on the same shape. Writes CSV only (the GPU image may lack
matplotlib): render plots and summaries afterwards with ``python -m loadtest.report DIR``.

    python -m loadtest.scale --replay docs/benchmarks/acceptance.json --out $OUT/scale --budget-s 300
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
import traceback
from pathlib import Path

from . import bench, report
from .driver import PointSpec
from .workload import token_prompts

SHAPES = "qwen3-8b,qwen3-1.7b"
HF_SHARE = 0.2  # of each shape's budget kept for the HF peer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--modes", default=bench.MODES)
    parser.add_argument("--replay", type=Path, required=True, help="recorded acceptance statistics")
    parser.add_argument("--rates", default="2,4,8,16,32,64,128")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--drain", type=float, default=15.0)
    parser.add_argument("--slo-ms", type=float, default=50.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--max-running", type=int, default=128)
    parser.add_argument("--hf-batches", default="32")
    parser.add_argument("--budget-s", type=float, default=300.0, help="wall-clock budget of the whole run")
    parser.add_argument("--out", type=Path, required=True)


def bench_args(args: argparse.Namespace, shape: str, out: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(["--shape", shape, "--path", "in-process", "--replay", str(args.replay), "--ignore-eos",
                              "--max-running", str(args.max_running), "--out", str(out)])


def run_shape(args: argparse.Namespace, shape: str, deadline: float, log) -> None:
    """Every mode's sweep and offline rows for one shape (CSV rewritten after each mode), then the HF peer."""
    out = args.out / shape
    out.mkdir(parents=True, exist_ok=True)
    bargs = bench_args(args, shape, out)
    from optimus_backend.checkpoint import SHAPES

    prompts = token_prompts(SHAPES[shape]["vocab_size"], args.prompt_len, 64)
    spec = PointSpec(prompts, {"max_tokens": args.max_tokens, "ignore_eos": True}, args.duration, args.drain,
                     args.slo_ms)
    rates = [float(r) for r in args.rates.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    modes = args.modes.split(",")
    engine_deadline = deadline - HF_SHARE * (deadline - time.monotonic())
    base = {"model": shape, "replayed": "yes", "card": bench.card(bench.mode_config(bargs, modes[0]))}
    sweep_rows, capacity, offline = [], [], []
    for i, mode in enumerate(modes):
        mode_deadline = time.monotonic() + (engine_deadline - time.monotonic()) / (len(modes) - i)
        config = bench.mode_config(bargs, mode)
        labels = {**base, "mode": mode, "checkpoint": config.shape}
        started = time.monotonic()
        try:
            rows, offline_rows = bench.bench_mode(bargs, config, prompts, spec, labels, rates, batches,
                                                  mode_deadline - 0.5 * (mode_deadline - started))
        except Exception:  # one broken mode must not lose the others' numbers
            log(f"{shape} {mode} failed:\n{traceback.format_exc()}")
            continue
        sweep_rows += rows
        offline += offline_rows
        capacity.append(bench.capacity_row(labels, rows, args.slo_ms))
        log(f"{shape} {mode}: {len(rows)} rate points in {time.monotonic() - started:.0f} s")
        report.write_csv(sweep_rows, report.SWEEP_COLUMNS, out / "sweep.csv")
        report.write_csv(capacity, report.CAPACITY_COLUMNS, out / "capacity.csv")
        report.write_csv(offline, report.OFFLINE_COLUMNS, out / "offline.csv")
    run_hf(args, shape, deadline, out, log)


def run_hf(args: argparse.Namespace, shape: str, deadline: float, out: Path, log) -> None:
    import gc

    import torch

    from .hf_peer import build_model, generate_throughput

    rows = []
    try:
        model = build_model(shape)
        for batch in (int(b) for b in args.hf_batches.split(",")):
            if time.monotonic() > deadline:
                log(f"{shape} hf b={batch}: skipped (budget)")
                break
            rows.append({"model": shape, **generate_throughput(model, batch, args.prompt_len, args.max_tokens)})
            log(f"{shape} hf: {rows[-1]}")
        del model
    except Exception:
        log(f"{shape} hf failed:\n{traceback.format_exc()}")
    gc.collect()
    torch.cuda.empty_cache()
    if rows:
        report.write_csv(rows, list(rows[0]), out / "hf.csv")


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
    shapes = args.shapes.split(",")
    for i, shape in enumerate(shapes):
        shape_deadline = time.monotonic() + (start + args.budget_s - time.monotonic()) / (len(shapes) - i)
        run_shape(args, shape, shape_deadline, log)
    log("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
