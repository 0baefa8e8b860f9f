"""Per-step latency T(b, c, prefix) in ms: measured points, a smooth fit, and a JSON cache.

The smooth part is ``T = a + alpha*b*c + beta*b + gamma*c + delta*b*prefix`` (fixed cost, fed tokens, per-request
overhead, window width, attention reads of the cached prefix), fit by least squares on relative error with
non-negative coefficients. On top of it sits the fit's residual at the measured points, interpolated linearly on the
measured (prefix, b, c) grid and clamped at its edges: measured points come back exactly, points between them are
interpolated, and points outside the grid follow the fit's slope. The measured times are first made nondecreasing
in c and in b (``nondecreasing``): a step never gets cheaper with more tokens or more requests, so a cell that does
is measurement noise (a kernel's first use, a busy host), and left alone it would make its neighbour c look
cheaper than it is.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Callable

import numpy as np

from .plots import pyplot, save_png

TERMS = ("a", "alpha", "beta", "gamma", "delta")  # 1, b*c, b, c, b*prefix
REFERENCE_PREFIX = 512  # the prefix length of the reference sat_*_P512.json profiles


def _features(b: np.ndarray, c: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(b), b * c, b, c, b * prefix], axis=-1)


def nonnegative_lstsq(x: np.ndarray, y: np.ndarray, columns: list[int]) -> np.ndarray:
    """Least squares with non-negative coefficients over the given columns (others 0), by trying every subset.

    Exact for the handful of terms a cost model has: the best non-negative solution is the unconstrained
    solution on some subset of columns.
    """
    best, best_err = np.zeros(x.shape[1]), float(np.sum(y**2))
    for size in range(1, len(columns) + 1):
        for subset in itertools.combinations(columns, size):
            sol, *_ = np.linalg.lstsq(x[:, subset], y, rcond=None)
            if np.any(sol < 0):
                continue
            err = float(np.sum((x[:, subset] @ sol - y) ** 2))
            if err < best_err - 1e-12:
                best, best_err = np.zeros(x.shape[1]), err
                best[list(subset)] = sol
    return best


def isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares nondecreasing fit of ``values`` (pool adjacent violators)."""
    if np.all(values[1:] >= values[:-1]):
        return values
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values.tolist(), np.maximum(weights, 1e-9).tolist()):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight, count = blocks.pop()
            last = blocks[-1]
            total = last[1] + weight
            last[0], last[1], last[2] = (last[0] * last[1] + mean * weight) / total, total, last[2] + count
    return np.array([mean for mean, _, count in blocks for _ in range(count)])


def nondecreasing(points: dict[tuple[int, int, int], float]) -> dict[tuple[int, int, int], float]:
    """Measured (b, c, prefix) -> ms made nondecreasing in c within each (b, prefix), then in b within each
    (c, prefix), by least squares (pool adjacent violators)."""
    out = dict(points)
    for along in (1, 0):  # key index of c, then of b
        lines: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for key in out:
            lines.setdefault((key[2], key[1 - along]), []).append(key)
        for keys in lines.values():
            keys.sort(key=lambda key: key[along])
            values = isotonic(np.array([out[key] for key in keys]), np.ones(len(keys)))
            out.update(zip(keys, values.tolist()))
    return out


def _bracket(axis: np.ndarray, value: float) -> tuple[int, int, float]:
    """Indices of the grid values around ``value`` and the weight of the upper one (clamped at the edges)."""
    if value <= axis[0]:
        return 0, 0, 0.0
    if value >= axis[-1]:
        last = len(axis) - 1
        return last, last, 0.0
    hi = int(np.searchsorted(axis, value))
    lo = hi - 1
    return lo, hi, float((value - axis[lo]) / (axis[hi] - axis[lo]))


class CostModel:
    """T(b, c, prefix) in ms for one model + device + dtype (``meta``), from measured points."""

    def __init__(self, points: dict[tuple[int, int, int], float], meta: dict | None = None):
        if not points:
            raise ValueError("points: a cost model needs at least one measured point")
        self.points = {(int(b), int(c), int(p)): float(ms) for (b, c, p), ms in points.items()}  # as measured
        self.meta = dict(meta or {})
        monotone = nondecreasing(self.points)
        keys = np.array(list(monotone), dtype=float)
        ms = np.array(list(monotone.values()))
        self.prefixes, self.batches, self.chunks = (np.unique(keys[:, i]) for i in (2, 0, 1))
        # With one measured prefix the b*prefix term is indistinguishable from the b term: leave it out.
        columns = [0, 1, 2, 3] + ([4] if len(self.prefixes) > 1 else [])
        x = _features(keys[:, 0], keys[:, 1], keys[:, 2])
        coef = nonnegative_lstsq(x / ms[:, None], np.ones_like(ms), columns)
        self.coef = dict(zip(TERMS, coef.tolist()))
        self._residual = np.zeros((len(self.prefixes), len(self.batches), len(self.chunks)))
        for (b, c, p), value in monotone.items():
            index = tuple(np.searchsorted(axis, v) for axis, v in ((self.prefixes, p), (self.batches, b),
                                                                      (self.chunks, c)))
            self._residual[index] = value - self.fit(b, c, p)

    @property
    def reference_prefix(self) -> int:
        """The prefix used when a caller gives none: the middle measured prefix."""
        return int(self.prefixes[len(self.prefixes) // 2])

    def fit(self, b: float, c: float, prefix: float | None = None) -> float:
        """The smooth model alone."""
        p = self.reference_prefix if prefix is None else prefix
        k = self.coef
        return k["a"] + k["alpha"] * b * c + k["beta"] * b + k["gamma"] * c + k["delta"] * b * p

    def predict(self, b: float, c: float, prefix: float | None = None) -> float:
        """T(b, c, prefix) in ms: exact at measured points, fit plus interpolated residual elsewhere."""
        p = self.reference_prefix if prefix is None else prefix
        corners = [_bracket(self.prefixes, p), _bracket(self.batches, b), _bracket(self.chunks, c)]
        residual = 0.0
        for pick in itertools.product((0, 1), repeat=3):
            weight, index = 1.0, []
            for (lo, hi, w), upper in zip(corners, pick):
                weight *= w if upper else 1.0 - w
                index.append(hi if upper else lo)
            if weight > 0.0:
                residual += weight * self._residual[tuple(index)]
        return max(self.fit(b, c, p) + residual, 1e-3)

    def chunk_curve(self, b: float, prefix: float | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """T(b, c, prefix) as a function of many (fractional) c at once, for a fixed b and prefix: exact, since T is
        linear in c between measured chunk sizes and follows the fit's slope outside them."""
        grid = self.chunks
        at_grid = np.array([self.predict(b, c, prefix) for c in grid])
        slope = self.coef["alpha"] * b + self.coef["gamma"]

        def curve(chunks: np.ndarray) -> np.ndarray:
            chunks = np.asarray(chunks, float)
            inside = np.interp(chunks, grid, at_grid)
            below = at_grid[0] + slope * (chunks - grid[0])
            above = at_grid[-1] + slope * (chunks - grid[-1])
            return np.maximum(np.where(chunks < grid[0], below, np.where(chunks > grid[-1], above, inside)), 1e-3)

        return curve

    def table(self, b: float, chunks: list[int], prefix: float | None = None) -> np.ndarray:
        """T(b, c, prefix) for every c in ``chunks``."""
        return np.array([self.predict(b, c, prefix) for c in chunks])

    def token_ms(self) -> float:
        """Marginal cost of one more fed token (the fit's alpha), used to price prefill."""
        return self.coef["alpha"]

    def to_json(self) -> dict:
        return {
            "meta": self.meta,
            "points": [[b, c, p, ms] for (b, c, p), ms in sorted(self.points.items())],
            "fit": self.coef,
        }

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    @staticmethod
    def load(path: str | Path, expect_meta: dict | None = None) -> "CostModel":
        """Loads a saved profile; ``expect_meta`` entries must match its meta (else ValueError)."""
        data = json.loads(Path(path).read_text())
        meta = data.get("meta", {})
        for key, value in (expect_meta or {}).items():
            if meta.get(key) != value:
                raise ValueError(f"{path}: profile is for {key}={meta.get(key)!r}, wanted {value!r}")
        return CostModel({(b, c, p): ms for b, c, p, ms in data["points"]}, meta)

    @staticmethod
    def from_reference(path: str | Path, prefix: int = REFERENCE_PREFIX, meta: dict | None = None) -> "CostModel":
        """Reads a {"b x c": ms} reference profile measured at one prefix length."""
        data = json.loads(Path(path).read_text())
        points = {}
        for key, ms in data.items():
            b, c = (int(v) for v in key.lower().split("x"))
            points[(b, c, prefix)] = ms
        return CostModel(points, {"source": Path(path).name, **(meta or {})})


def write_json(path: str | Path, data: dict) -> Path:
    """Writes data as indented JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def cache_name(meta: dict) -> str:
    """File name of a profile keyed by model + device + dtype, e.g. ``qwen3-8b__NVIDIA_H100__bfloat16.json``."""
    parts = [str(meta.get(key, "unknown")) for key in ("model", "device", "dtype")]
    return "__".join(re.sub(r"[^A-Za-z0-9.\-]+", "_", part) for part in parts) + ".json"


def plot(model: CostModel, path: str | Path, prefix: float | None = None) -> Path:
    """PNG: a heat map of T over (b, c) and T-vs-c curves per b (markers: measured, lines: model)."""
    plt = pyplot()
    p = model.reference_prefix if prefix is None else prefix
    batches, chunks = [int(v) for v in model.batches], list(range(1, int(model.chunks[-1]) + 1))
    grid = np.array([model.table(b, chunks, p) for b in batches])
    fig, (heat, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    image = heat.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
    heat.set_yticks(range(len(batches)), [str(b) for b in batches])
    ticks = [c for c in chunks if c in set(int(v) for v in model.chunks)]
    heat.set_xticks([c - 1 for c in ticks], [str(c) for c in ticks])
    heat.set(xlabel="chunk c", ylabel="batch b", title=f"T(b, c) ms, prefix {p:g}")
    fig.colorbar(image, ax=heat)
    for row, b in zip(grid, batches):
        (line,) = curves.plot(chunks, row, label=f"b={b}")
        measured = [(c, ms) for (bb, c, pp), ms in model.points.items() if bb == b and pp == p]
        if measured:
            curves.plot(*zip(*sorted(measured)), "o", color=line.get_color(), ms=3)
    curves.set(xlabel="chunk c", ylabel="ms per step", yscale="log", title=str(model.meta.get("model", "")))
    curves.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_png(fig, path)
