"""Soak test: Locust at a constant Poisson rate against a real tritonserver for a long time, then checks that no
request failed and that resident memory (tritonserver + its Python-backend stubs) and KV pages return to their
baseline once the load stops.

    python -m loadtest.soak --rate 2.4 --duration 600 --out docs/benchmarks/soak

Writes ``samples.csv`` (RSS, KV pages, running batch every few seconds), Locust's CSV files (``locust_*.csv``)
and ``soak.json`` (the verdict and its numbers).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from optimus_backend.config import DEFAULT_CHECKPOINT, PROJECT_ROOT
from optimus_backend.triton_server import TritonServer

from . import report
from .targets import scrape_gauges
from .workload import eval_prompts

SAMPLE_PERIOD_S = 1.0
SETTLE_S = 30.0  # after the load: time for in-flight work to finish and memory to settle
RSS_TOLERANCE = 0.05  # "back to baseline": at most this much above it


def rss_bytes(pids: list[int]) -> int:
    """Resident set size of the given processes (VmRSS from /proc)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def snapshot(server: TritonServer, start: float, phase: str) -> dict:
    pids = [server.process.pid, *server.stub_pids]
    return {"t_s": round(time.monotonic() - start, 1), "phase": phase, "rss_mb": rss_bytes(pids) / 2**20,
            **scrape_gauges(server.metrics_url)}


def warm_up(server: TritonServer, prompts: list[str], params: dict) -> None:
    from client import grpc_stream

    for prompt in prompts[:8]:
        gen = grpc_stream.stream_generate(prompt, params, server.grpc_url, timeout_s=120)
        if gen.error:
            raise RuntimeError(f"warm-up request failed: {gen.error}")


def locust_failures(stats_csv: Path) -> tuple[int, int]:
    """(requests, failures) of the E2E events (one per request) in Locust's stats CSV."""
    rows = [r for r in report.read_csv(stats_csv) if r["Name"] == "E2E"]
    return sum(int(r["Request Count"]) for r in rows), sum(int(r["Failure Count"]) for r in rows)


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    params = {"max_tokens": args.max_tokens}
    server_params = {"checkpoint": str(args.checkpoint.resolve()), "mode": args.mode, "device": "cpu"}
    with TritonServer(server_params, instance_kind="KIND_CPU", log_path=args.out / "triton.log") as server:
        warm_up(server, eval_prompts(4), params)
        time.sleep(SETTLE_S)
        start = time.monotonic()
        samples = [snapshot(server, start, "baseline")]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(SAMPLE_PERIOD_S):
                samples.append(snapshot(server, start, "load"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        command = [sys.executable, "-m", "locust", "-f", str(PROJECT_ROOT / "loadtest" / "locustfile.py"),
                   "--headless", "--host", server.http_url, "--grpc-url", server.grpc_url,
                   "--checkpoint", str(args.checkpoint), "--schedule", f"{args.duration:g}@{args.rate:g}",
                   "--max-tokens", str(args.max_tokens), "--csv", str(args.out / "locust"), "--only-summary",
                   "GrpcStreamUser", "HttpStreamUser"]
        locust = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
        (args.out / "locust.log").write_text(locust.stdout + locust.stderr)
        stop.set()
        sampler.join()
        time.sleep(SETTLE_S)
        samples.append(snapshot(server, start, "after"))
    report.write_csv(samples, list(samples[-1]), args.out / "samples.csv")
    requests, failures = locust_failures(args.out / "locust_stats.csv")
    base, after = samples[0], samples[-1]
    peak = max(s["rss_mb"] for s in samples)
    verdict = {
        "rate_rps": args.rate, "duration_s": args.duration, "mode": args.mode, "checkpoint": args.checkpoint.name,
        "requests": requests, "failed": failures, "locust_exit_code": locust.returncode,
        "rss_mb": {"baseline": base["rss_mb"], "peak": peak, "after": after["rss_mb"]},
        "kv_pages_used": {"baseline": base.get("kv_pages_used"), "peak": max(s.get("kv_pages_used", 0) for s in samples),
                          "after": after.get("kv_pages_used")},
        "rss_back_to_baseline": after["rss_mb"] <= base["rss_mb"] * (1 + RSS_TOLERANCE),
        "kv_back_to_baseline": after.get("kv_pages_used") == base.get("kv_pages_used"),
    }
    verdict["passed"] = (failures == 0 and requests > 0 and locust.returncode == 0 and verdict["rss_back_to_baseline"]
                         and verdict["kv_back_to_baseline"])
    (args.out / "soak.json").write_text(json.dumps(verdict, indent=1) + "\n")
    print(json.dumps(verdict, indent=1))
    return 0 if verdict["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the server is stopped by PID
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, required=True, help="Poisson arrival rate (req/s)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--mode", default="elastic")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "soak")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
