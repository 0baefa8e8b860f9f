"""`optimus eval`: exact-match accuracy per task on held-out problems for each decoding mode.

Every mode decodes the same held-out problems through the engine (the AR twin for "ar", the block-diffusion
checkpoint otherwise). Exact match means reasoning-gym scores the answer 1.0. Tokens per forward is the
generated tokens (EOS included) over the forwards a request took after its prefill, summed over requests.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tqdm import tqdm

from .config import DEFAULT_AR_CHECKPOINT, DecodingMode, SamplingParams
from .engine_args import add_engine_arguments, engine_config_from_args
from .training import data

MODES = "ar,bd,chunk:4,chunk:8,chunk:16,elastic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_engine_arguments(parser, mode=False)
    parser.add_argument("--ar-checkpoint", type=Path, default=DEFAULT_AR_CHECKPOINT, help="the AR twin (mode ar)")
    parser.add_argument("--modes", default=MODES, help="comma-separated decoding modes")
    parser.add_argument("--tasks", default=",".join(data.TASKS), help="comma-separated reasoning-gym tasks")
    parser.add_argument("--num", type=int, default=500, help=f"held-out problems per task (<= {data.HELD_OUT_SIZE})")
    parser.add_argument("--max-tokens", type=int, default=32, help="generation limit per problem")
    parser.add_argument("--threshold", type=float, default=0.9, help="commit confidence threshold")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def evaluate_mode(engine, problems: list[data.Problem], params: SamplingParams, bar: tqdm) -> dict:
    """Submits every problem at once (the engine batches them) and scores the answers."""
    tok = engine.tokenizer
    handles = [engine.submit(tok.encode(tok.apply_chat_template(p.question)), params) for p in problems]
    correct = tokens = forwards = 0
    for problem, handle in zip(problems, handles):
        text, _ = handle.result()
        correct += data.exact(problem, text)
        request = handle.request
        tokens += request.output_len + (request.finish_reason == "stop")
        forwards += request.steps - (request.prefill_end() > 0)
        bar.update()
    return {"n": len(problems), "correct": correct, "accuracy": correct / len(problems), "tokens": tokens,
            "forwards": forwards, "tokens_per_forward": tokens / max(forwards, 1)}


def table(results: list[dict], tasks: list[str]) -> str:
    """Accuracy (%) and tokens per forward, one row per mode, one column pair per task."""
    header = f"{'mode':<10}" + "".join(f"{task:>18} {'tok/fwd':>8}" for task in tasks)
    lines = [header, "-" * len(header)]
    for mode in dict.fromkeys(r["mode"] for r in results):
        cells = {r["task"]: r for r in results if r["mode"] == mode}
        lines.append(f"{mode:<10}" + "".join(
            f"{100 * cells[t]['accuracy']:>17.1f}% {cells[t]['tokens_per_forward']:>8.2f}" for t in tasks))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .engine import Engine

    modes = [str(DecodingMode.parse(m)) for m in args.modes.split(",")]
    tasks = args.tasks.split(",")
    problems = {task: data.held_out(task, args.num) for task in tasks}
    params = SamplingParams(max_tokens=args.max_tokens, threshold=args.threshold).validate()
    results = []
    with tqdm(total=len(modes) * len(tasks) * args.num, desc="eval", unit="problem") as bar:
        for mode in modes:
            checkpoint = args.ar_checkpoint if mode == "ar" else args.checkpoint
            engine = Engine(engine_config_from_args(args, checkpoint=checkpoint, mode=mode))
            try:
                for task in tasks:
                    bar.set_postfix_str(f"{mode} {task}")
                    start = time.time()
                    result = evaluate_mode(engine, problems[task], params, bar)
                    results.append({"mode": mode, "task": task, **result, "seconds": round(time.time() - start, 1),
                                    "checkpoint": str(checkpoint)})
            finally:
                engine.shutdown()
    print(table(results, tasks))
    if args.json is not None:
        args.json.write_text(json.dumps({"threshold": args.threshold, "max_tokens": args.max_tokens,
                                         "results": results}, indent=2) + "\n")
    return 0
