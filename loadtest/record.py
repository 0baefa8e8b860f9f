"""Record acceptance statistics of a real model, for replay on random-weight shapes (optimus_backend/replay.py).

Every decoding step of every request is recorded as (m visible MASK slots scored, k committed) while the model
decodes held-out eval problems in each fixed-chunk mode. Output JSON, in acceptance.py's histogram format:
``committed_per_step`` ({c: {k: count}} per decode step, steps that scored nothing included; bd counts as c = B)
for the simulator, and
``committed_per_visible`` ({m: {k: count}}) and ``commit_positions_per_visible`` ({m: [commits at slot i]}) for
the replay rule, plus how often the committed slots were exactly the leftmost k. Only content counts: slots past
the request's EOS (which a trained model fills with confident padding, many at a time) are left out, so m and k
are the visible and committed MASKs at or before the EOS.

    python -m loadtest.record --checkpoint models/optimus-tiny --out docs/benchmarks/acceptance-optimus-tiny.json
    python -m loadtest.record --synthetic --out docs/benchmarks/acceptance-synthetic.json   # no model needed

``--synthetic`` writes the same file from acceptance.py's synthetic confidence model instead (the i-th visible MASK
commits with probability p*q**i, at least one), for runs made before a trained model exists; its source says so.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from optimus_backend.config import DEFAULT_CHECKPOINT, DecodingMode, EngineConfig, SamplingParams

from .workload import eval_prompts

MODES = "bd,chunk:1,chunk:2,chunk:4,chunk:8,chunk:16"
SYNTHETIC_P, SYNTHETIC_Q = 0.9, 0.82  # acceptance.synthetic's model: ~4-5 commits per BD-32 step
SYNTHETIC_DRAWS = 4000
MIN_SAMPLES = 20  # an m with fewer recorded steps is left out (replay uses the largest kept m), unless all are


class RecordingRule:
    """Wraps the engine's decoding rule and records (m scored, committed slot indices) per request-step."""

    def __init__(self, inner):
        self.inner = inner
        self.samples: list[tuple[int, list[int]]] = []

    def select(self, confidence: list[float], threshold: float) -> list[int]:
        chosen = self.inner.select(confidence, threshold)
        if confidence:
            self.samples.append((len(confidence), sorted(chosen)))
        return chosen


def content_samples(calls: list[tuple[int, list[int]]], max_tokens: int, content_end: int) -> list[tuple]:
    """One request's rule calls restricted to its content (the output up to and including EOS).

    Call j scored the m first still-masked generated positions (everything left of a window is committed, and
    a window scores the masks of the first unfinished block in order). Replaying the calls over the positions
    gives, per call, (m' content positions scored, indices among them committed, positions committed)."""
    masked = list(range(max_tokens))
    out = []
    for m, chosen in calls:
        scored = masked[:m]
        committed = {scored[i] for i in chosen}
        content = [p for p in scored if p < content_end]
        if content:
            out.append((len(content), [i for i, p in enumerate(content) if p in committed], committed))
        masked = [p for p in masked if p not in committed]
    return out


def record_mode(config: EngineConfig, prompts: list[str], params: SamplingParams) -> tuple[int, list]:
    """(block size, content samples) of one mode; requests run one at a time so that the rule's calls belong
    to one request (BD commits don't depend on the batch)."""
    from optimus_backend.engine import Engine

    engine = Engine(config)
    try:
        recorder = RecordingRule(engine.runner.rule)
        engine.runner.rule = recorder  # the runner calls its rule once per request-step: observe it there
        samples = []
        for prompt in prompts:
            recorder.samples = []
            handle = engine.submit(prompt, params)
            _, final = handle.result()
            end = final.num_output_tokens + 1 if final.finish_reason == "stop" else params.max_tokens
            request_samples = content_samples(recorder.samples, params.max_tokens, end)
            request = handle.request
            seen = set().union(*(committed for *_, committed in request_samples)) if request_samples else set()
            assert seen <= {p - request.prompt_len for p in request.commit_steps}, "calls do not replay onto commits"
            samples += [(m, chosen) for m, chosen, _ in request_samples]
            # decode steps that scored nothing (a window of cached slots only, BD's clean pass): m = 0, k = 0
            samples += [(0, [])] * (request.steps - (request.prefill_end() > 0) - len(recorder.samples))
        return engine.model.config.block_size, samples
    finally:
        engine.shutdown()


def histogram(counts: Counter) -> dict[str, int]:
    return {str(k): counts[k] for k in sorted(counts)}


def record(checkpoint: Path, modes: list[str], prompts: list[str], params: SamplingParams, device: str) -> dict:
    per_chunk: dict[int, Counter] = defaultdict(Counter)
    per_visible: dict[int, Counter] = defaultdict(Counter)
    positions: dict[int, np.ndarray] = {}
    leftmost = total = 0
    block_size = 0
    means = {}
    for mode in modes:
        config = EngineConfig(checkpoint=checkpoint, mode=mode, device=device)
        block_size, samples = record_mode(config, prompts, params)
        parsed = DecodingMode.parse(mode)
        c = block_size if parsed.kind == "bd" else min(parsed.chunk, block_size)
        for m, chosen in samples:
            per_chunk[c][len(chosen)] += 1
            if m == 0:
                continue
            per_visible[m][len(chosen)] += 1
            positions.setdefault(m, np.zeros(m, int))[chosen] += 1
            leftmost += chosen == list(range(len(chosen)))
            total += 1
        means[mode] = sum(len(chosen) for _, chosen in samples) / max(len(samples), 1)  # per decode step
    kept = [m for m in sorted(per_visible) if sum(per_visible[m].values()) >= MIN_SAMPLES] or sorted(per_visible)
    return {
        "block_size": block_size,
        "source": f"recorded: {checkpoint.name}, {len(prompts)} held-out prompts, modes {','.join(modes)}, "
                  f"threshold {params.threshold}, max_tokens {params.max_tokens}",
        "committed_per_step": {str(c): histogram(per_chunk[c]) for c in sorted(per_chunk)},
        "committed_per_visible": {str(m): histogram(per_visible[m]) for m in kept},
        "commit_positions_per_visible": {str(m): positions[m].tolist() for m in kept},
        "sparse_m_left_out": {str(m): sum(per_visible[m].values()) for m in sorted(per_visible) if m not in kept},
        "mean_committed_per_step": means,
        "leftmost_fraction": leftmost / max(total, 1),
        "request_steps": total,
    }


def synthetic_stats(block_size: int = 32, seed: int = 0) -> dict:
    """The recorder's JSON from acceptance.py's synthetic model (per c from its window simulation, per m by
    drawing the m visible MASKs' commits directly)."""
    from optimus_backend.acceptance import synthetic

    per_chunk = synthetic(block_size, SYNTHETIC_P, SYNTHETIC_Q).to_json()["committed_per_step"]
    rng = np.random.default_rng(seed)
    per_visible, positions = {}, {}
    for m in range(1, block_size + 1):
        commits = rng.random((SYNTHETIC_DRAWS, m)) < SYNTHETIC_P * SYNTHETIC_Q ** np.arange(m)
        commits[~commits.any(axis=1), 0] = True  # at least one: the most confident, i.e. the first
        per_visible[str(m)] = histogram(Counter(commits.sum(axis=1).tolist()))
        positions[str(m)] = commits.sum(axis=0).tolist()
    return {"block_size": block_size,
            "source": f"synthetic (no trained model): commit prob p*q^i for the i-th visible MASK, "
                      f"p={SYNTHETIC_P}, q={SYNTHETIC_Q}",
            "committed_per_step": per_chunk, "committed_per_visible": per_visible,
            "commit_positions_per_visible": positions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--modes", default=MODES, help="fixed-chunk modes to record (bd counts as c = B)")
    parser.add_argument("--prompts-per-task", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--synthetic", action="store_true", help="the synthetic model instead of a checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        args.out.write_text(json.dumps(synthetic_stats(), indent=1) + "\n")
        print(f"synthetic acceptance statistics -> {args.out}")
        return 0
    prompts = eval_prompts(args.prompts_per_task)
    params = SamplingParams(max_tokens=args.max_tokens, threshold=args.threshold)
    stats = record(args.checkpoint, args.modes.split(","), prompts, params, args.device)
    args.out.write_text(json.dumps(stats, indent=1) + "\n")
    print(f"{stats['request_steps']} request-steps, mean committed per step {stats['mean_committed_per_step']}, "
          f"leftmost {stats['leftmost_fraction']:.1%} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
