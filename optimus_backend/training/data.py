"""Problems from reasoning-gym generators with exact scorers, and the tokenized training set.

Training problem i of a task uses seed TRAIN_SEED + i, held-out problem i uses HELD_OUT_SEED + i: the two
seed ranges never meet, and training problems whose question equals a held-out one are dropped as well.
Answers are the final answer only, so a ~10M model can learn them.

    python -m optimus_backend.training.data --out data/optimus-tiny
"""

from __future__ import annotations

import argparse
import json
import lzma
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Difficulty settings of each task (reasoning-gym config fields); gsm_symbolic has only its default.
TASKS: dict[str, dict] = {
    "chain_sum": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
    "basic_arithmetic": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
    "gsm_symbolic": {},
}
MIX = {"chain_sum": 0.45, "basic_arithmetic": 0.35, "gsm_symbolic": 0.20}  # share of training problems
TRAIN_SEED = 0
HELD_OUT_SEED = 1_000_000_000
HELD_OUT_SIZE = 2_000  # held-out problems per task (the eval draws from these)
TRAIN_COUNT = 3_000_000
TOKENIZER_SAMPLE = 200_000  # problems the BPE is trained on
TRAIN_FILE = "train.npz.xz"  # tokens, prompt_len, length, task (index into TASKS)


@dataclass(frozen=True)
class Problem:
    task: str
    seed: int
    question: str
    answer: str
    entry: dict  # reasoning-gym's item, for its scorer


@lru_cache(maxsize=None)
def _dataset(task: str, base_seed: int, size: int):
    import reasoning_gym

    return reasoning_gym.create_dataset(task, seed=base_seed, size=size, **TASKS[task])


def _problems(task: str, base_seed: int, count: int) -> list[Problem]:
    ds = _dataset(task, base_seed, count)
    out = []
    for i in range(count):
        item = ds[i]
        out.append(Problem(task, base_seed + i, item["question"], item["answer"], item))
    return out


def held_out(task: str, count: int = HELD_OUT_SIZE) -> list[Problem]:
    """The first ``count`` held-out problems of a task (never trained on)."""
    if count > HELD_OUT_SIZE:
        raise ValueError(f"count: at most {HELD_OUT_SIZE} held-out problems per task, got {count}")
    return _problems(task, HELD_OUT_SEED, count)


def training(task: str, count: int) -> list[Problem]:
    """``count`` training problems of a task, minus any whose question is also held out."""
    if TRAIN_SEED + count > HELD_OUT_SEED:
        raise ValueError("count: training seeds would reach the held-out range")
    unseen = {p.question for p in held_out(task)}
    return [p for p in _problems(task, TRAIN_SEED, count) if p.question not in unseen]


def score(problem: Problem, text: str) -> float:
    """reasoning-gym's score of an answer text (it gives partial credit)."""
    return float(_dataset(problem.task, TRAIN_SEED, 1).score_answer(text.strip(), problem.entry))


def exact(problem: Problem, text: str) -> bool:
    """Exact match: reasoning-gym scores the answer 1.0."""
    return score(problem, text) == 1.0


def encode_problems(tokenizer, problems: list[Problem]) -> dict[str, np.ndarray]:
    """Flat uint16 tokens of chat prompt + answer + EOS per problem, with prompt and total lengths."""
    eos = tokenizer.token_id("<|eos|>")
    prompts = tokenizer.fast.encode_batch([tokenizer.apply_chat_template(p.question) for p in problems],
                                          add_special_tokens=False)
    answers = tokenizer.fast.encode_batch([p.answer for p in problems], add_special_tokens=False)
    seqs = [pr.ids + an.ids + [eos] for pr, an in zip(prompts, answers)]
    return {
        "tokens": np.fromiter((t for s in seqs for t in s), dtype=np.uint16),
        "prompt_len": np.array([len(pr.ids) for pr in prompts], dtype=np.int32),
        "length": np.array([len(s) for s in seqs], dtype=np.int32),
    }


def build(out: Path, count: int = TRAIN_COUNT) -> dict:
    """Writes the tokenizer files, TRAIN_FILE and meta.json into ``out``; returns the meta."""
    from ..tokenizer import Tokenizer
    from .tokenizer import save_tokenizer, train_tokenizer

    out = Path(out)
    per_task = {task: training(task, round(count * share)) for task, share in MIX.items()}
    sample = [text for task, probs in per_task.items()
              for p in probs[: round(TOKENIZER_SAMPLE * MIX[task])] for text in (p.question, p.answer)]
    save_tokenizer(train_tokenizer(sample), out)
    tokenizer = Tokenizer(out)
    parts = []
    for index, probs in enumerate(per_task.values()):
        encoded = encode_problems(tokenizer, probs)
        encoded["task"] = np.full(len(probs), index, dtype=np.uint8)
        parts.append(encoded)
    arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    with lzma.open(out / TRAIN_FILE, "wb", preset=6) as f:
        np.savez(f, **arrays)
    meta = {
        "tasks": {task: {"settings": TASKS[task], "problems": len(per_task[task]),
                         "tokens": int(sum(p["length"].sum() for p, t in zip(parts, per_task) if t == task))}
                  for task in per_task},
        "train_seeds": [TRAIN_SEED, TRAIN_SEED + max(round(count * s) for s in MIX.values())],
        "held_out_seeds": [HELD_OUT_SEED, HELD_OUT_SEED + HELD_OUT_SIZE],
        "vocab_size": tokenizer.vocab_size,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the tokenizer and the tokenized training set.")
    parser.add_argument("--out", type=Path, required=True, help="output directory (git-ignored)")
    parser.add_argument("--count", type=int, default=TRAIN_COUNT, help="training problems over all tasks")
    args = parser.parse_args()
    print(json.dumps(build(args.out, args.count), indent=2))


if __name__ == "__main__":
    main()
