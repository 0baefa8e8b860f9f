"""The replay decoding rule: commit decisions drawn from acceptance statistics recorded with a real model.

Latency does not depend on weight values, acceptance does. Random-weight models of a large shape decode with this
rule (``decoding_rule="replay:<stats.json>"``) so that each step commits what the recorded model would: with m
visible (scored) MASK slots, k is drawn from the recorded P(k | m) (clamped to [1, m]), and the k slots are drawn
without replacement with weights proportional to how often the recorded model committed each slot index at that m
(trained models commit mostly next to the committed prefix, which decides how far the window slides). An m that
was never recorded uses the nearest recorded one below it (slots beyond it get a small weight).

Stats file: ``loadtest/record.py`` writes it; the keys read here are ``committed_per_visible`` ({m: {k: count}},
acceptance.py's histogram format) and ``commit_positions_per_visible`` ({m: [commits at slot i]}).
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from pathlib import Path

import numpy as np

from .acceptance import AcceptanceStats
from .config import ConfigError

SEED = 0
UNSEEN_SLOT_WEIGHT = 1e-3  # relative weight of a slot index the recorded model never committed at this m


class ReplayRule:
    """Commits k ~ recorded P(k | m) of the m scored slots, at recorded slot frequencies, whatever the confidences.

    It runs once per request per step inside the timed step, so it draws with plain Python from tables built
    once per m (a few microseconds; numpy's per-call overhead was ~50 us, milliseconds a step at large batch)."""

    def __init__(self, path: str):
        try:
            data = json.loads(Path(path).read_text())
            self.stats = AcceptanceStats.from_json({"block_size": data["block_size"],
                                                    "committed_per_step": data["committed_per_visible"]})
            positions = data["commit_positions_per_visible"]
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"decoding_rule: cannot read replay statistics {path!r} ({exc})") from None
        if not positions or not self.stats.probs:
            raise ConfigError(f"decoding_rule: replay statistics {path!r} hold no recorded step")
        self.positions = {int(m): np.asarray(counts, float) for m, counts in positions.items()}
        self.rng = random.Random(SEED)
        self._tables: dict[int, tuple[list[float], list[float]]] = {}

    def weights(self, m: int) -> np.ndarray:
        """Selection probabilities of the m slot indices."""
        known = [r for r in self.positions if r <= m] or [min(self.positions)]
        counts = self.positions[max(known)][:m]
        w = np.pad(counts / max(counts.max(), 1.0), (0, m - len(counts))) + UNSEEN_SLOT_WEIGHT
        return w / w.sum()

    def _table(self, m: int) -> tuple[list[float], list[float]]:
        """(cumulative P(k | m) over k = 0.., slot weights) for m scored slots."""
        if m not in self._tables:
            self._tables[m] = (list(itertools.accumulate(self.stats.distribution(m).tolist())),
                               self.weights(m).tolist())
        return self._tables[m]

    def select(self, confidence: list[float], threshold: float) -> list[int]:
        m = len(confidence)
        if m <= 1:
            return list(range(m))
        cumulative, weights = self._table(m)
        k = min(max(bisect.bisect_right(cumulative, self.rng.random() * cumulative[-1]), 1), m)
        left, total, chosen = list(weights), sum(weights), []
        for _ in range(k):  # successive weighted draws without replacement
            target, running, pick = self.rng.random() * total, 0.0, None
            for i, weight in enumerate(left):
                if weight > 0.0:
                    pick, running = i, running + weight
                    if running > target:
                        break
            chosen.append(pick)
            total -= left[pick]
            left[pick] = 0.0
        return sorted(chosen)
