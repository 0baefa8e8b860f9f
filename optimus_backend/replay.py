"""The replay decoding rule: commit decisions drawn from acceptance statistics recorded with a real model.

Latency does not depend on weight values, acceptance does. Random-weight models of a large shape decode with this
rule (``decoding_rule="replay:<stats.json>"``) so that each step commits as many slots as the recorded model would:
k is drawn from the recorded distribution of committed slots given m visible (scored) MASK slots, clamped to
[1, m], and the k leftmost scored slots are committed (trained block-diffusion models commit mostly next to the
committed prefix; the recorder reports how often that held).

Stats file: ``loadtest/record.py`` writes it; the key read here is ``committed_per_visible`` ({m: {k: count}}),
in the histogram format of ``acceptance.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .acceptance import AcceptanceStats
from .config import ConfigError

SEED = 0


def load_visible_stats(path: str | Path) -> AcceptanceStats:
    """The per-m distribution of committed slots (m = visible MASK slots) from a recorded stats file."""
    try:
        data = json.loads(Path(path).read_text())
        return AcceptanceStats.from_json({"block_size": data["block_size"], "source": data.get("source", ""),
                                          "committed_per_step": data["committed_per_visible"]})
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"decoding_rule: cannot read replay statistics {str(path)!r} ({exc})") from None


class ReplayRule:
    """Commits the k leftmost scored slots, k ~ recorded P(k | m visible), whatever the confidences."""

    def __init__(self, path: str):
        self.stats = load_visible_stats(path)
        self.rng = np.random.default_rng(SEED)

    def select(self, confidence: list[float], threshold: float) -> list[int]:
        m = len(confidence)
        if m == 0:
            return []
        k = int(self.stats.sample(m, 1, self.rng)[0])
        return list(range(min(max(k, 1), m)))
