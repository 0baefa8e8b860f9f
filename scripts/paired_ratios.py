"""Paired repeats: elastic's throughput over each fixed mode's, per rate and offline batch, across run folders
(each a ``loadtest.scale`` output with ``sweep.csv`` and ``offline.csv``, all modes of a run in one process).

Prints, per point, the mean ratio, its standard error and every run's ratio, for elastic over each other mode
and over the best of them in that run.

    python3 scripts/paired_ratios.py docs/benchmarks/h200-1845-verify/gpu*/*/
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path


def throughputs(run: Path) -> dict[tuple[str, str], float]:
    """{(mode, point): tokens/s} of one run; points are "<rate> req/s" and "offline b=<batch>"."""
    out = {}
    with open(run / "sweep.csv") as f:
        for row in csv.DictReader(f):
            out[row["mode"], f"{float(row['rate_rps']):g} req/s"] = float(row["throughput_tok_s"])
    if (run / "offline.csv").exists():
        with open(run / "offline.csv") as f:
            for row in csv.DictReader(f):
                out[row["mode"], f"offline b={row['batch']}"] = float(row["tokens_per_s"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    ratios: dict[tuple[str, str], list[float]] = {}
    for run in args.runs:
        measured = throughputs(run)
        for point in sorted({p for _, p in measured}):
            if ("elastic", point) not in measured:
                continue
            fixed = {m: v for (m, p), v in measured.items() if p == point and m != "elastic"}
            for mode, value in [*fixed.items(), ("best fixed", max(fixed.values(), default=0.0))]:
                if value > 0:
                    ratios.setdefault((point, mode), []).append(measured["elastic", point] / value)
    for (point, mode), values in sorted(ratios.items()):
        error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
        runs = " ".join(f"{v:.3f}" for v in values)
        print(f"{point:>14}  elastic / {mode:<10} {statistics.mean(values):.3f} ± {error:.3f}  (n={len(values)}: {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
