"""`optimus-client`: send a prompt to the Optimus Triton model, print the text live, then TTFT/TPOT/tokens/s."""

from __future__ import annotations

import argparse
import sys

from . import grpc_stream, http


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="optimus-client", description=__doc__)
    p.add_argument("prompt", help="the prompt text ('-' reads it from stdin)")
    p.add_argument("--protocol", choices=["grpc", "http", "http-stream"], default="grpc",
                   help="grpc: gRPC streaming (default); http: /generate (one response); http-stream: /generate_stream")
    p.add_argument("--url", help=f"server address (default {grpc_stream.DEFAULT_URL} for grpc, "
                                 f"{http.DEFAULT_URL} for http)")
    p.add_argument("--model", default="optimus")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--threshold", type=float, help="confidence threshold tau for committing masked tokens")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server")
    return p


def sampling_parameters(args: argparse.Namespace) -> dict:
    params = {"max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p,
              "seed": args.seed, "threshold": args.threshold}
    params = {k: v for k, v in params.items() if v is not None}
    if args.stop:
        params["stop"] = args.stop
    return params


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    params = sampling_parameters(args)

    def live(text: str) -> None:
        print(text, end="", flush=True)

    if args.protocol == "grpc":
        gen = grpc_stream.stream_generate(prompt, params, args.url or grpc_stream.DEFAULT_URL, live, args.model,
                                          args.timeout)
    elif args.protocol == "http-stream":
        gen = http.generate_stream(prompt, params, args.url or http.DEFAULT_URL, live, args.model, args.timeout)
    else:
        gen = http.generate(prompt, params, args.url or http.DEFAULT_URL, args.model, args.timeout)
        live(gen.text)
    print()
    if gen.error:
        print(f"error: {gen.error}", file=sys.stderr)
        return 1
    print(gen.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
