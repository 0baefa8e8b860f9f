"""`optimus <command>`: each subcommand lives in its own module exposing add_arguments(parser) and run(args)."""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, help); modules are imported only when their command runs
COMMANDS = {
    "serve": ("optimus_backend.serve", "serve the model through a local Triton Inference Server"),
    "generate": ("optimus_backend.generate", "stream one completion from the in-process engine"),
    "profile": ("optimus_backend.profiler", "measure the engine step T(b, c) and cache the cost model"),
    "simulate": ("optimus_backend.simulator", "replay the cost model under load: elastic vs fixed chunks"),
    "eval": ("optimus_backend.evaluate", "exact-match accuracy per task and decoding mode"),
    "bench": ("loadtest.bench", "rate sweeps through Triton (or --offline: the in-process engine)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="optimus")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    name = argv[0] if argv and argv[0] in COMMANDS else None
    if name is None:
        parser.parse_args(argv)  # prints usage / the error
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    command = argparse.ArgumentParser(prog=f"optimus {name}", description=COMMANDS[name][1])
    module.add_arguments(command)
    return module.run(command.parse_args(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
