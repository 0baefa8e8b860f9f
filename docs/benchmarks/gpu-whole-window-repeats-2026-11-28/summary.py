"""Elastic over the best of chunk:4, 8 and 16 per load, for every elastic run in this folder (a run is compared with
the fixed chunks measured on the same GPU in the same call), and the mean per tag. Run from this folder."""

import csv
import glob
from collections import defaultdict

LOADS = ("u1", "u4", "u16", "u64", "u128")
FIXED = ("chunk:4", "chunk:8", "chunk:16")


def main() -> None:
    by_tag = defaultdict(list)
    print("| run | " + " | ".join(LOADS) + " |")
    print("|---|" + "---|" * len(LOADS))
    for gpu in sorted(glob.glob("?-gpu?")):
        rows = [r for f in sorted(glob.glob(f"{gpu}/pass*/changing.csv")) for r in
                ({**r, "pass": f.split("/")[1]} for r in csv.DictReader(open(f)))]
        best = {load: max(float(r["throughput_tok_s"]) for r in rows if r["load"] == load and r["mode"] in FIXED)
                for load in LOADS}
        for run in sorted({r["pass"] for r in rows if r["mode"] == "elastic"}):
            ratios = [float(r["throughput_tok_s"]) / best[r["load"]] for load in LOADS for r in rows
                      if r["mode"] == "elastic" and r["pass"] == run and r["load"] == load]
            by_tag[gpu[0]].append(ratios)
            print(f"| {gpu} {run} | " + " | ".join(f"{x:.3f}" for x in ratios) + " |")
    for tag, runs in sorted(by_tag.items()):
        means = [sum(run[i] for run in runs) / len(runs) for i in range(len(LOADS))]
        print(f"| **{tag}, mean of {len(runs)}** | " + " | ".join(f"**{x:.3f}**" for x in means) + " |")


if __name__ == "__main__":
    main()
