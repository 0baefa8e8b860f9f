"""The simulator's benchmark: steady-rate sweep and changing load per policy, written as CSV, PNG and markdown."""

from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .acceptance import AcceptanceStats
from .cost_model import CostModel, plot
from .plots import pyplot, save_png
from .simulator import LoadSchedule, SimConfig, capacity_rps, simulate, summarize

PLOTTED = ("elastic", "ar", "bd", "chunk:4", "chunk:8", "chunk:12", "chunk:16", "chunk:32")


def _one(job: tuple) -> tuple[dict, list]:
    policy, cost, acceptance, schedule, cfg, seed, start, slo = job
    result = simulate(policy, cost, acceptance, schedule, cfg, seed)
    trace = result.steps if policy == "elastic" and seed == 0 else []
    return summarize(result, start, schedule.duration, slo), trace


def _mean_rows(rows: list[dict]) -> dict:
    return {k: (float(np.mean([r[k] for r in rows])) if isinstance(v, float) else v) for k, v in rows[0].items()}


def run_jobs(jobs: list[tuple], seeds: int) -> tuple[list[dict], list[list[dict]], list]:
    """Runs (policy, ..., seed 0) jobs for every seed in parallel; rows averaged over seeds, the rows of each seed,
    elastic's trace."""
    expanded = [job[:5] + (seed,) + job[6:] for job in jobs for seed in range(seeds)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        results = list(pool.map(_one, expanded, chunksize=4))
    per_seed = [[row for row, _ in results[i * seeds:(i + 1) * seeds]] for i in range(len(jobs))]
    return [_mean_rows(rows) for rows in per_seed], per_seed, next((trace for _, trace in results if trace), [])


def compare(rows: list[dict], key: str) -> list[dict]:
    """Per group ``key``: elastic against the best fixed chunk on throughput and on P90 TPOT."""
    out = []
    for value in dict.fromkeys(r[key] for r in rows):
        group = [r for r in rows if r[key] == value]
        elastic = next(r for r in group if r["policy"] == "elastic")
        fixed = [r for r in group if r["policy"].startswith("chunk:")]
        by_thr = max(fixed, key=lambda r: r["throughput_tok_s"])
        by_tpot = min(fixed, key=lambda r: r["tpot_p90_ms"])
        out.append({key: value, "elastic_tok_s": elastic["throughput_tok_s"], "best_fixed": by_thr["policy"],
                    "best_fixed_tok_s": by_thr["throughput_tok_s"],
                    "throughput_ratio": elastic["throughput_tok_s"] / by_thr["throughput_tok_s"],
                    "elastic_tpot_p90_ms": elastic["tpot_p90_ms"], "best_tpot_fixed": by_tpot["policy"],
                    "best_fixed_tpot_p90_ms": by_tpot["tpot_p90_ms"],
                    "tpot_ratio": elastic["tpot_p90_ms"] / by_tpot["tpot_p90_ms"],
                    "elastic_chunk": elastic["mean_chunk"], "elastic_batch": elastic["mean_batch"]})
    return out


def write_csv(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return path


def plot_steady(rows: list[dict], title: str, path: Path) -> Path:
    """Throughput, P90 TPOT and elastic's chosen c / batch against the arrival rate."""
    plt = pyplot()
    fig, (thr, tpot, chunk) = plt.subplots(1, 3, figsize=(16, 4.5))
    for policy in PLOTTED:
        points = sorted((r["rate_rps"], r["throughput_tok_s"], r["tpot_p90_ms"]) for r in rows if r["policy"] == policy)
        if points:
            rate, tok, p90 = zip(*points)
            style = {"lw": 2.5, "color": "k"} if policy == "elastic" else {"lw": 1, "marker": "."}
            thr.plot(rate, tok, label=policy, **style)
            tpot.plot(rate, p90, label=policy, **style)
    thr.set(xlabel="arrival rate (req/s)", ylabel="committed tokens/s", title=title)
    tpot.set(xlabel="arrival rate (req/s)", ylabel="P90 TPOT (ms)", yscale="log", title="P90 TPOT")
    thr.legend(fontsize=7)
    elastic = sorted((r["rate_rps"], r["mean_chunk"], r["mean_batch"]) for r in rows if r["policy"] == "elastic")
    rate, c, b = zip(*elastic)
    chunk.plot(rate, c, "k-o", label="elastic mean c")
    chunk.set(xlabel="arrival rate (req/s)", ylabel="chunk c (batch-weighted mean)", title="elastic: chosen c vs load")
    twin = chunk.twinx()
    twin.plot(rate, b, "C1--", label="mean batch")
    twin.set_ylabel("mean running batch", color="C1")
    fig.tight_layout()
    return save_png(fig, path)


def plot_changing(trace: list, schedule: LoadSchedule, title: str, path: Path) -> Path:
    """Arrival rate (or concurrent users), elastic's running batch and chosen chunk over time."""
    plt = pyplot()
    steps = np.array(trace, float).reshape(-1, 4)
    fig, (load, chunk) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    t = np.linspace(0, schedule.duration, 400)
    load.plot(t, schedule.rate(t), "C0")
    load.set(ylabel="concurrent users" if schedule.users else "arrival rate (req/s)", title=title)
    twin = load.twinx()
    twin.plot(steps[:, 0], steps[:, 1], "C1", lw=0.8, label="running batch")
    twin.set_ylabel("running batch", color="C1")
    chunk.plot(steps[:, 0], steps[:, 2], "k.", ms=1.5, label="elastic c per step")
    chunk.set(xlabel="time (s)", ylabel="chunk c", xlim=(0, schedule.duration))
    fig.tight_layout()
    return save_png(fig, path)


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    def cell(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]


def report(cost: CostModel, acceptance: AcceptanceStats, cfg: SimConfig, policies: list[str], fractions: list[float],
           duration: float, changing: dict[str, str], slo_ms: float, seeds: int, out_dir: Path) -> list[str]:
    """Runs the steady sweep (skipped without ``fractions``) and each changing load ({label: schedule spec}) for one
    cost model; returns markdown summary lines."""
    name = str(cost.meta.get("model", "model"))
    capacity = capacity_rps(cost, acceptance, cfg)
    lines = [f"### {name}: capacity ~{capacity:.1f} req/s at batch {cfg.max_batch}"]
    plot(cost, out_dir / f"simulated_{name}_cost.png")
    if fractions:
        jobs = [(p, cost, acceptance, LoadSchedule.steady(f * capacity, duration), cfg, 0, cfg.warmup_s, slo_ms)
                for f in fractions for p in policies]
        rows, _, _ = run_jobs(jobs, seeds)
        for row, job in zip(rows, jobs):
            row["rate_rps"], row["load"] = job[3].knots[0][1], job[3].knots[0][1] / capacity
        rows = [{"model": name, "load": r.pop("load"), "rate_rps": r.pop("rate_rps"), **r} for r in rows]
        write_csv(rows, out_dir / f"simulated_{name}_steady.csv")
        plot_steady(rows, f"{name} ({cost.meta.get('device', '')}), batch <= {cfg.max_batch}",
                    out_dir / f"simulated_{name}_steady.png")
        steady = compare(rows, "load")
        write_csv(steady, out_dir / f"simulated_{name}_elastic_vs_fixed.csv")
        lines += _table(steady, ["load", "elastic_tok_s", "best_fixed", "throughput_ratio", "elastic_tpot_p90_ms",
                                 "best_tpot_fixed", "best_fixed_tpot_p90_ms", "tpot_ratio", "elastic_chunk"])
    for label, spec in changing.items():
        schedule = LoadSchedule.parse(spec, capacity)
        jobs = [(p, cost, acceptance, schedule, cfg, 0, 0.0, slo_ms) for p in policies]
        rows, per_seed, trace = run_jobs(jobs, seeds)
        rows = [{"model": name, "load": label, **r} for r in rows]
        write_csv(rows, out_dir / f"simulated_{name}_{label}.csv")
        plot_changing(trace, schedule, f"{name}: {label} load {spec}" + ("" if schedule.users else " (x capacity)"),
                      out_dir / f"simulated_{name}_{label}.png")
        versus = versus_fixed(rows, per_seed)
        write_csv(versus, out_dir / f"simulated_{name}_{label}_vs_fixed.csv")
        unit = "closed loop, concurrent users" if schedule.users else "fractions of capacity"
        lines += ["", f"{label} load `{spec}` ({unit}, {seeds} seeds): elastic against every fixed chunk"]
        lines += _table(versus, ["metric", "elastic", "best_fixed", "best_fixed_value", "ratio", "ratio_se",
                                 "fixed_beaten"])
    return lines


CHANGING_METRICS = {"throughput_tok_s": max, "tpot_p50_ms": min, "tpot_p90_ms": min, "ttft_p90_ms": min,
                    "e2e_p50_s": min, "e2e_p90_s": min}


def versus_fixed(rows: list[dict], per_seed: list[list[dict]]) -> list[dict]:
    """Per metric: elastic's value (mean over seeds), the best fixed chunk's, their ratio with the standard error of
    the per-seed ratio (the same seed gives both the same arrivals), and how many fixed chunks elastic does better
    than."""
    index = {r["policy"]: i for i, r in enumerate(rows)}
    elastic = rows[index["elastic"]]
    fixed = [r for r in rows if r["policy"].startswith("chunk:")]
    out = []
    for metric, better in CHANGING_METRICS.items():
        best = better(fixed, key=lambda r: r[metric])
        sign = 1 if better is max else -1
        beaten = sum(sign * (elastic[metric] - r[metric]) > 0 for r in fixed)
        ratios = [e[metric] / f[metric] for e, f in zip(per_seed[index["elastic"]], per_seed[index[best["policy"]]])]
        se = float(np.std(ratios, ddof=1) / np.sqrt(len(ratios))) if len(ratios) > 1 else float("nan")
        out.append({"metric": metric, "elastic": elastic[metric], "best_fixed": best["policy"],
                    "best_fixed_value": best[metric], "ratio": elastic[metric] / best[metric], "ratio_se": se,
                    "fixed_beaten": f"{beaten}/{len(fixed)}"})
    return out
