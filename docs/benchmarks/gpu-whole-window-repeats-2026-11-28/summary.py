"""Elastic over the best of chunk:4, 8 and 16 per load, for every elastic run in a folder of these sweeps (a run is
compared with the fixed chunks measured on the same GPU in the same call), and the mean per tag, as a table and as
summary.png in that folder. Run from the repository root:
python docs/benchmarks/gpu-whole-window-repeats-2026-11-28/summary.py [FOLDER [TAG=LABEL ...]] (default: this folder)"""

import csv
import glob
import sys
from collections import defaultdict
from pathlib import Path

from optimus_backend.plots import pyplot, save_png

TREES = {"a": "a: 9613116 (committed decisions)", "b": "b: centred ranges, plain Python", "c": "c: b + histogram"}

LOADS = ("u1", "u4", "u16", "u64", "u128")
FIXED = ("chunk:4", "chunk:8", "chunk:16")


def main(here: Path, trees: dict[str, str]) -> None:
    by_tag = defaultdict(list)
    print("| run | " + " | ".join(LOADS) + " |")
    print("|---|" + "---|" * len(LOADS))
    for gpu in sorted(Path(p).name for p in glob.glob(str(here / "?-gpu?"))):
        rows = [r for f in sorted(glob.glob(str(here / gpu / "pass*/changing.csv"))) for r in
                ({**r, "pass": Path(f).parent.name} for r in csv.DictReader(open(f)))]
        best = {load: max(float(r["throughput_tok_s"]) for r in rows if r["load"] == load and r["mode"] in FIXED)
                for load in LOADS}
        for run in sorted({r["pass"] for r in rows if r["mode"] == "elastic"}):
            ratios = [float(r["throughput_tok_s"]) / best[r["load"]] for load in LOADS for r in rows
                      if r["mode"] == "elastic" and r["pass"] == run and r["load"] == load]
            by_tag[gpu[0]].append(ratios)
            print(f"| {gpu} {run} | " + " | ".join(f"{x:.3f}" for x in ratios) + " |")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    width = 0.8 / len(by_tag)
    for k, (tag, runs) in enumerate(sorted(by_tag.items())):
        means = [sum(run[i] for run in runs) / len(runs) for i in range(len(LOADS))]
        print(f"| **{tag}, mean of {len(runs)}** | " + " | ".join(f"**{x:.3f}**" for x in means) + " |")
        xs = [i + (k - (len(by_tag) - 1) / 2) * width for i in range(len(LOADS))]
        ax.bar(xs, means, width, label=f"{trees.get(tag, tag)}, mean of {len(runs)}")
        for run in runs:
            ax.plot(xs, run, "k.", markersize=4)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.axhline(0.98, color="red", linestyle="--", linewidth=0.8, label="best fixed - 2%")
    ax.set_xticks(range(len(LOADS)), ["1 user" if load == "u1" else load[1:] + " users" for load in LOADS])
    ax.set_ylim(0.8, 1.12)
    ax.set_ylabel("elastic / best of chunk:4, 8, 16")
    ax.set_title("8B concurrency sweep, two H200s per call, 2026-11-28 (dots: single runs)")
    ax.legend(fontsize=8, loc="lower left")
    save_png(fig, here / "summary.png")


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    labels = dict(arg.split("=", 1) for arg in sys.argv[2:]) if len(sys.argv) > 2 else TREES
    main(folder, labels)
