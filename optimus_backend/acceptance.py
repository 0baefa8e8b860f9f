"""Acceptance statistics: how many tokens a request commits per step at chunk size c.

JSON format (recorded from real runs or synthetic)::

    {"block_size": 32, "source": "...",
     "committed_per_step": {"8": {"0": 12, "1": 140, "2": 96, ...},   # histogram: count per committed k
                            "16": [3, 1, 4, 2, ...]}}                  # or raw per-request-step samples

A chunk size with no data is a mixture of its recorded neighbours (its mean interpolates linearly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cost_model import write_json


@dataclass
class AcceptanceStats:
    """Per-c distribution of committed tokens per request per step (``probs[c][k]`` = P(k committed))."""

    block_size: int
    probs: dict[int, np.ndarray]
    source: str = ""

    def __post_init__(self):
        self.probs = {int(c): np.asarray(p, float) / np.sum(p) for c, p in sorted(self.probs.items())}
        self._recorded = np.array(sorted(self.probs))

    def distribution(self, c: int) -> np.ndarray:
        """P(k committed) at chunk c; unrecorded c mixes its two recorded neighbours."""
        if c in self.probs:
            return self.probs[c]
        hi = int(np.searchsorted(self._recorded, c))
        if hi == 0 or hi == len(self._recorded):
            return self.probs[int(self._recorded[min(hi, len(self._recorded) - 1)])]
        lo_c, hi_c = int(self._recorded[hi - 1]), int(self._recorded[hi])
        w = (c - lo_c) / (hi_c - lo_c)
        lo_p, hi_p = self.probs[lo_c], self.probs[hi_c]
        size = max(len(lo_p), len(hi_p))
        return (1 - w) * np.pad(lo_p, (0, size - len(lo_p))) + w * np.pad(hi_p, (0, size - len(hi_p)))

    def mean(self, c: int) -> float:
        p = self.distribution(c)
        return float(np.arange(len(p)) @ p)

    def sample(self, c: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws of committed tokens at chunk c."""
        p = self.distribution(c)
        return rng.choice(len(p), size=n, p=p)

    def to_json(self) -> dict:
        histograms = {str(c): {str(k): round(float(v), 6) for k, v in enumerate(p) if v > 0}
                      for c, p in self.probs.items()}
        return {"block_size": self.block_size, "source": self.source, "committed_per_step": histograms}

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    @staticmethod
    def from_json(data: dict) -> "AcceptanceStats":
        probs = {}
        for c, values in data["committed_per_step"].items():
            if isinstance(values, dict):
                hist = np.zeros(max(int(k) for k in values) + 1)
                for k, weight in values.items():
                    hist[int(k)] = weight
            else:
                hist = np.bincount(np.asarray(values, int))
            probs[int(c)] = hist
        return AcceptanceStats(int(data["block_size"]), probs, data.get("source", ""))

    @staticmethod
    def load(path: str | Path) -> "AcceptanceStats":
        return AcceptanceStats.from_json(json.loads(Path(path).read_text()))


def window_step(committed: np.ndarray, cached: int, c: int, block_size: int, p: float, q: float,
                rng: np.random.Generator) -> tuple[int, int]:
    """One chunked step of the synthetic decoder; returns (tokens committed, new cached length).

    The window is up to c positions from ``cached``, holding no MASK past the first block that has MASKs
    (in-block). The i-th visible MASK (from the left) commits with probability p*q**i, at least the first one
    commits; the leading run committed before this step is cached by it.
    """
    start = cached
    lead = 0
    while committed[start + lead]:
        lead += 1
    first_mask = start + lead
    end = min(start + c, (first_mask // block_size + 1) * block_size)
    visible = [i for i in range(start, end) if not committed[i]]
    commits = [pos for j, pos in enumerate(visible) if rng.random() < p * q**j] or visible[:1]
    committed[commits] = True
    return len(commits), cached + lead


def synthetic(block_size: int = 32, p: float = 0.9, q: float = 0.82, steps: int = 3000,
              seed: int = 0) -> AcceptanceStats:
    """Histograms from a synthetic confidence model: commits favour MASKs next to the committed prefix.

    With the defaults a whole visible block commits about 4 tokens per step, as DESIGN.md reports for BD-32; a
    window of c positions commits fewer because its leading committed slots take room and far MASKs rarely pass.
    """
    rng = np.random.default_rng(seed)
    probs = {}
    for c in range(1, block_size + 1):
        committed = np.zeros(steps * max(c, 1) + 2 * block_size, bool)
        cached, counts = 0, []
        for _ in range(steps):
            k, cached = window_step(committed, cached, c, block_size, p, q, rng)
            counts.append(k)
        probs[c] = np.bincount(counts)
    source = f"synthetic: in-block window model, commit prob p*q^i for the i-th visible MASK, p={p}, q={q}"
    return AcceptanceStats(block_size, probs, source)
