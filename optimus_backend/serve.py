"""`optimus serve`: run a real tritonserver with our model repository on localhost and supervise it."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

from .config import ConfigError, EngineConfig

from .triton_server import MODEL_NAME, TritonServer, config_from_parameters, pytriton_install, system_install


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--host", default=os.environ.get("OPTIMUS_HOST", "127.0.0.1"),
                        help="address to bind (default $OPTIMUS_HOST or 127.0.0.1; 0.0.0.0 inside a container)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--shape", help="a named random-weight shape instead of a checkpoint (e.g. qwen3-8b)")
    parser.add_argument("--mode", help="ar | bd | chunk:N | elastic (default: elastic)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--max-running", type=int, help="max requests in the running batch")
    parser.add_argument("--kv-budget-mb", type=int, help="KV-cache budget in MiB")
    parser.add_argument("--max-tokens-limit", type=int, help="largest max_tokens a request may ask for")
    parser.add_argument("--tpot-slo-ms", type=float, help="per-token latency SLO for the elastic controller")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="any other EngineConfig field, e.g. --set page_size=32 (repeatable)")
    parser.add_argument("--exit-timeout-secs", type=int, default=5)
    parser.add_argument("--tritonserver", type=Path, default=os.environ.get("OPTIMUS_TRITONSERVER") or None,
                        help="use this tritonserver binary (default $OPTIMUS_TRITONSERVER, e.g. "
                             "/opt/tritonserver/bin/tritonserver) instead of the nvidia-pytriton wheel's")
    parser.add_argument("--log-verbose", type=int, default=0)


def parameters_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The CLI's server-side settings as config parameters (only those given)."""
    given = {"checkpoint": args.checkpoint, "shape": args.shape, "mode": args.mode, "device": args.device,
             "dtype": args.dtype, "max_running": args.max_running, "max_tokens_limit": args.max_tokens_limit,
             "tpot_slo_ms": args.tpot_slo_ms,
             "kv_budget_bytes": args.kv_budget_mb * 2**20 if args.kv_budget_mb else None}
    params = {k: str(Path(v).resolve()) if isinstance(v, Path) else str(v) for k, v in given.items() if v is not None}
    if args.shape and not args.checkpoint:
        params["checkpoint"] = "none"
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    return params


def _client_hint(server: TritonServer) -> str:
    return (f"  optimus-client --url {server.grpc_url} 'What is 12 + 30?'\n"
            f"  curl -s -X POST {server.http_url}/v2/models/{MODEL_NAME}/generate "
            f"-d '{{\"text_input\": \"What is 12 + 30?\", \"parameters\": {{\"max_tokens\": 32}}}}'")


def run(args: argparse.Namespace) -> int:
    params = parameters_from_args(args)
    unknown = set(params) - {f.name for f in dataclasses.fields(EngineConfig)}
    if unknown:
        print(f"optimus serve: unknown setting(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        config = config_from_parameters(params)  # fail here, naming the field, rather than inside Triton
    except ConfigError as exc:
        print(f"optimus serve: {exc}", file=sys.stderr)
        return 2
    if config.checkpoint is not None and not (config.checkpoint / "config.json").exists():
        print(f"optimus serve: checkpoint: no checkpoint at {config.checkpoint} (give --checkpoint DIR)",
              file=sys.stderr)
        return 2
    install = system_install(args.tritonserver) if args.tritonserver else pytriton_install()
    # device "auto": KIND_AUTO, one engine per GPU; an explicit device: one engine that places itself
    kind = None if config.device == "auto" else "KIND_CPU" if config.device == "cpu" else "KIND_MODEL"
    server = TritonServer(params, args.http_port, args.grpc_port, args.metrics_port, args.host,
                          args.exit_timeout_secs, install, kind, log_verbose=args.log_verbose)
    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):  # while loading: start() stops the server and re-raises
        signal.signal(sig, interrupt)
    started = time.monotonic()
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"optimus serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("optimus serve: interrupted while loading", file=sys.stderr)
        return 130
    stop_signals: list[int] = []  # a handler must take no lock: it runs in the main thread, maybe inside one
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop_signals.append(signum))
    print(f"\nOptimus is serving (mode {config.mode}, checkpoint {config.checkpoint or config.shape}), "
          f"ready in {time.monotonic() - started:.1f} s:\n"
          f"  HTTP     {server.http_url}/v2/models/{MODEL_NAME}/generate[_stream]\n"
          f"  gRPC     {server.grpc_url}\n"
          f"  metrics  {server.metrics_url}\n"
          f"Try:\n{_client_hint(server)}\nCtrl-C stops the server.\n", flush=True)
    while not stop_signals and server.process.poll() is None:
        time.sleep(0.2)
    died = server.process.poll()
    code = server.stop()
    if died is not None:
        print(f"optimus serve: tritonserver exited with code {died}", file=sys.stderr)
        return died or 1
    print(f"optimus serve: stopped (tritonserver exit code {code})", file=sys.stderr)
    return 0
