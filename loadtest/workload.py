"""What the load tests send: held-out eval questions (the engine applies the chat template), or random token ids.

Every benchmark draws from the same held-out problems (never trained on), interleaved across tasks, so all modes
and both protocols see the same request mix.
"""

from __future__ import annotations

import numpy as np

PROMPTS_PER_TASK = 64


def eval_prompts(per_task: int = PROMPTS_PER_TASK) -> list[str]:
    """Held-out questions of every eval task, interleaved by task (the engine applies the chat template)."""
    from optimus_backend.training import data

    by_task = [data.held_out(task, per_task) for task in data.TASKS]
    return [problem.question for group in zip(*by_task) for problem in group]


def token_prompts(vocab_size: int, length: int, count: int, seed: int = 0) -> list[list[int]]:
    """Random prompts of ``length`` token ids for tokenizer-less random-weight shapes (ids 1..vocab-2, so never
    the EOS 0 or the MASK vocab-1 of those shapes)."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, vocab_size - 1, size=(count, length)).tolist()
