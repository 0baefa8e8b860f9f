"""The benchmark's outputs: CSV files, PNG plots and the headline table (Markdown).

Files in the output directory: ``sweep.csv`` (one row per mode and rate point), ``capacity.csv`` (SLO capacity
per mode), ``offline.csv`` (throughput vs batch size per mode), ``throughput_vs_rate.png``,
``tpot_p90_vs_rate.png``, ``chunk_vs_load.png``, ``slo_capacity.png``, ``offline_vs_batch.png`` and
``summary.md``; with changing loads also ``changing.csv`` (one row per mode and load), ``timeline.csv`` (the
engine's sampled state over each run), ``changing_<model>_<load>.png`` and, from the in-process engine,
``chunks.csv`` (per load and chunk size: the steps that ran it, what they cost against the profile and what they
committed). Loads that hold N users
(``users:30@16``) also get a headline table per concurrency, elastic over AR, BD and the best fixed chunk.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from loadtest.shapes import parse
from optimus_backend.plots import pyplot, save_png
from optimus_backend.simulator import USERS_PREFIX

LABELS = ["model", "mode", "checkpoint", "path", "replayed", "card"]  # model: the BD model (ar rows: its AR twin)
SUMMARY_COLUMNS = [  # metrics.summarize's row
    "achieved_rps", "requests", "completed", "failed", "unfinished", "output_tokens",
    "throughput_tok_s", "request_throughput_rps",
    "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms", "tpot_p99_ms",
    "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms", "mean_chunk", "mean_running", "max_kv_pages_used", "kv_pages_total",
    "host_ms_per_step", "schedule_ms_per_step", "step_over_predicted"]
SWEEP_COLUMNS = LABELS + ["rate_rps", *SUMMARY_COLUMNS, "slo_ok"]
CHANGING_COLUMNS = LABELS + ["load", "schedule", "duration_s", *SUMMARY_COLUMNS]
TIMELINE_COLUMNS = ["model", "mode", "load", "t_s", "offered_rps", "users", "running", "waiting", "chunk"]
CHUNK_COLUMNS = ["model", "mode", "load", "chunk", "steps", "step_share", "mean_batch", "committed_per_request",
                 "step_ms", "profiled_ms", "tok_s"]
CHANGING_METRICS = [  # (column, header, higher is better) of the changing-load tables
    ("throughput_tok_s", "tok/s", True), ("tpot_p50_ms", "P50 TPOT ms", False), ("tpot_p90_ms", "P90 TPOT ms", False),
    ("ttft_p90_ms", "P90 TTFT ms", False), ("e2e_p50_ms", "P50 e2e ms", False), ("e2e_p90_ms", "P90 e2e ms", False)]
CAPACITY_COLUMNS = LABELS + ["slo_ms", "capacity_rps", "capacity_interp_rps", "max_rate_tested",
                             "max_throughput_tok_s"]
OFFLINE_COLUMNS = LABELS + ["batch", "completed", "output_tokens", "seconds", "tokens_per_s", "mean_chunk", "steps",
                             "step_ms_mean", "forward_ms_mean", "in_step_share"]
PLOTS = ["throughput_vs_rate.png", "tpot_p90_vs_rate.png", "chunk_vs_load.png", "slo_capacity.png",
         "offline_vs_batch.png"]
BASELINES = {"ar": "AR", "bd": "BD"}


def write_csv(rows: list[dict], columns: list[str], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _by_mode(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(f"{row['model']} {row['mode']}", []).append(row)
    return out


def _line_plot(rows: list[dict], x: str, y: str, xlabel: str, ylabel: str, title: str, path: Path,
               hline: float | None = None, logx: bool = False) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, group in _by_mode(rows).items():
        points = sorted((float(r[x]), float(r[y])) for r in group)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    if hline is not None:
        ax.axhline(hline, color="red", linestyle="--", linewidth=1, label=f"SLO {hline:g} ms")
    if logx:
        ax.set_xscale("log", base=2)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def _capacity_plot(capacity: list[dict], title: str, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [f"{r['model']} {r['mode']}" for r in capacity]
    ax.bar(names, [float(r["capacity_rps"]) for r in capacity], color="tab:blue", label="measured grid")
    ax.scatter(names, [float(r["capacity_interp_rps"]) for r in capacity], color="black", zorder=3,
               label="interpolated")
    ax.set(ylabel="req/s with P90 TPOT <= SLO", title=title)
    ax.tick_params(axis="x", rotation=30, labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def write_plots(sweep: list[dict], capacity: list[dict], offline: list[dict], slo_ms: float, title: str,
                out: Path) -> list[Path]:
    """Every PNG of PLOTS (a plot with no data is still written, empty, so the set is always complete)."""
    return [
        _line_plot(sweep, "rate_rps", "throughput_tok_s", "offered load (req/s, Poisson)",
                   "output tokens/s", f"Throughput vs rate — {title}", out / PLOTS[0], logx=True),
        _line_plot(sweep, "rate_rps", "tpot_p90_ms", "offered load (req/s, Poisson)", "P90 TPOT (ms)",
                   f"P90 TPOT vs rate — {title}", out / PLOTS[1], hline=slo_ms, logx=True),
        _line_plot(sweep, "mean_running", "mean_chunk", "mean running batch (sampled)",
                   "mean chunk size c (sampled)", f"Chosen chunk size vs load — {title}", out / PLOTS[2]),
        _capacity_plot(capacity, f"SLO capacity (P90 TPOT <= {slo_ms:g} ms) — {title}", out / PLOTS[3]),
        _line_plot(offline, "batch", "tokens_per_s", "batch size (requests at once)", "output tokens/s",
                   f"Offline throughput vs batch — {title}", out / PLOTS[4], logx=True),
    ]


def changing_plots(timeline: list[dict], out: Path) -> list[Path]:
    """Per model and changing load: offered rate (or users), running requests and chunk size over time, one line
    per mode."""
    plt = pyplot()
    paths = []
    for model, load in dict.fromkeys((r["model"], r["load"]) for r in timeline):
        rows = [r for r in timeline if r["model"] == model and r["load"] == load]
        fig, axes = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True)
        first = [r for r in rows if r["mode"] == rows[0]["mode"]]
        offered = "users" if first[0].get("users") else "offered_rps"
        axes[0].plot([float(r["t_s"]) for r in first], [float(r[offered]) for r in first], color="black")
        axes[0].set(ylabel="concurrent users" if offered == "users" else "offered req/s",
                    title=f"Changing load {load} — {model}")
        for mode in dict.fromkeys(r["mode"] for r in rows):
            series = [r for r in rows if r["mode"] == mode]
            times = [float(r["t_s"]) for r in series]
            axes[1].plot(times, [float(r["running"]) for r in series], label=mode, linewidth=1)
            axes[2].step(times, [float(r["chunk"]) for r in series], where="post", label=mode, linewidth=1)
        axes[1].set(ylabel="running requests")
        axes[2].set(ylabel="chunk size c (latest step)", xlabel="seconds from the first arrival")
        axes[1].legend(fontsize=7, ncol=3)
        for ax in axes:
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"changing_{model}_{load}.png"
        save_png(fig, path)
        paths.append(path)
    return paths


def changing_tables(rows: list[dict]) -> list[str]:
    """Markdown per model and changing load: every mode's metrics, then elastic over the best fixed chunk for each
    metric (which chunk, and how many fixed chunks elastic beats on it)."""
    lines = []
    for model, load in dict.fromkeys((r["model"], r["load"]) for r in rows):
        group = {r["mode"]: r for r in rows if r["model"] == model and r["load"] == load}
        schedule = next(iter(group.values()))["schedule"]
        unit = ("closed loop of concurrent users; `s@n` holds, `s~n` ramps" if schedule.startswith(USERS_PREFIX)
                else "req/s; `s@rate` holds, `s~rate` ramps")
        lines += [f"#### {model}, load `{load}` = `{schedule}` ({unit})",
                  "| mode | " + " | ".join(header for _, header, _ in CHANGING_METRICS) + " | mean c | failed | unfinished |",
                  "|---" * (len(CHANGING_METRICS) + 4) + "|"]
        for mode, r in group.items():
            lines.append(f"| {mode} | " + " | ".join(f"{float(r[c]):.1f}" for c, _, _ in CHANGING_METRICS)
                         + f" | {float(r['mean_chunk']):.1f} | {r['failed']} | {r['unfinished']} |")
        fixed = {m: r for m, r in group.items() if m.startswith("chunk:")}
        if "elastic" in group and fixed:
            cells = []
            for column, header, higher in CHANGING_METRICS:
                value = {m: float(r[column]) for m, r in fixed.items()}
                best = (max if higher else min)(value, key=value.get)
                own = float(group["elastic"][column])
                beaten = sum(own > v if higher else own < v for v in value.values())
                ratio = f"{own / value[best]:.3f}" if value[best] else "—"
                cells.append(f"{header} {ratio} of {best}'s (beats {beaten}/{len(value)})")
            lines += ["", "elastic / best fixed chunk per metric: " + "; ".join(cells) + "."]
        lines.append("")
    return lines


def _ratio(a: float, b: float) -> str:
    return "—" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}x"


def _ratios_by_level(rows: list[dict], level: str, value: str) -> list[str]:
    """Markdown rows: at each load level, elastic over AR, over BD and over the best fixed chunk there; then each
    ratio's mean over the levels (the issue's "averaged over the sweep")."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows if r["mode"] == "elastic"):
        group = [r for r in rows if r["model"] == model]
        ratios: dict[str, list[float]] = {"ar": [], "bd": [], "best": []}
        for lvl in sorted({float(r[level]) for r in group}):
            at = {r["mode"]: float(r[value]) for r in group if float(r[level]) == lvl}
            if "elastic" not in at:
                continue
            fixed = {m: v for m, v in at.items() if m.startswith("chunk:")}
            best = max(fixed, key=fixed.get) if fixed else None
            for key, other in (("ar", at.get("ar")), ("bd", at.get("bd")), ("best", fixed.get(best))):
                if other:
                    ratios[key].append(at["elastic"] / other)
            lines.append(f"| {model} | {lvl:g} | {at['elastic']:.1f} | {_ratio(at['elastic'], at.get('ar', math.nan))} "
                         f"| {_ratio(at['elastic'], at.get('bd', math.nan))} "
                         f"| {_ratio(at['elastic'], fixed[best]) if best else '—'} ({best or '—'}) |")
        means = {key: f"{sum(v) / len(v):.2f}x" if v else "—" for key, v in ratios.items()}
        lines.append(f"| {model} | mean | — | {means['ar']} | {means['bd']} | {means['best']} |")
    return lines


def held_users(schedule: str) -> int | None:
    """The users of a closed loop that holds one count throughout (``users:30@16`` -> 16); None for any other load."""
    if not schedule.startswith(USERS_PREFIX):
        return None
    counts = {value for _, value in parse(schedule).knots}
    return int(counts.pop()) if len(counts) == 1 else None


def concurrency_headline(changing: list[dict]) -> str:
    """Ratios per concurrency from the changing loads that hold N users (a concurrency sweep), with their means;
    empty when there are none."""
    rows = [{**r, "users": users} for r in changing if (users := held_users(r["schedule"])) is not None]
    if not rows:
        return ""
    head = "| model | users | elastic tok/s | elastic/AR | elastic/BD | elastic/best fixed (which) |\n|---|---|---|---|---|---|"
    return "\n".join(["### Throughput ratios per concurrency (closed loops holding N users)", head,
                      *_ratios_by_level(rows, "users", "throughput_tok_s")]) + "\n"


def headline(sweep: list[dict], capacity: list[dict], offline: list[dict], slo_ms: float) -> str:
    """The headline tables in Markdown: ratios per load level (sweep and offline) and SLO capacity per mode."""
    head = "| model | {} | elastic tok/s | elastic/AR | elastic/BD | elastic/best fixed (which) |\n|---|---|---|---|---|---|"
    parts = ["### Throughput ratios per offered load (open-loop sweep)", head.format("req/s"),
             *_ratios_by_level(sweep, "rate_rps", "throughput_tok_s"), "",
             "### Throughput ratios per batch size (offline: b requests at once)", head.format("batch"),
             *_ratios_by_level(offline, "batch", "tokens_per_s"), "",
             f"### SLO capacity (highest rate with P90 TPOT <= {slo_ms:g} ms, no failed or unfinished request)",
             "| model | mode | path | replayed | capacity req/s (grid) | interpolated | max tok/s |",
             "|---|---|---|---|---|---|---|"]
    for r in capacity:
        parts.append(f"| {r['model']} | {r['mode']} | {r['path']} | {r['replayed']} | {float(r['capacity_rps']):g} "
                     f"| {float(r['capacity_interp_rps']):.3g} | {float(r['max_throughput_tok_s']):.1f} |")
    caps = {r["mode"]: float(r["capacity_interp_rps"]) for r in capacity}
    if "elastic" in caps:
        parts.append("")
        parts.append("SLO capacity ratios (interpolated): " + ", ".join(
            f"elastic/{m} {_ratio(caps['elastic'], caps[m])}" for m in caps if m != "elastic"))
    return "\n".join(parts) + "\n"


def render(out: Path, slo_ms: float, title: str, preamble: str) -> str:
    """Plots and summary.md from the CSV files in ``out``; returns the headline Markdown."""
    sweep, capacity = read_csv(out / "sweep.csv"), read_csv(out / "capacity.csv")
    offline = read_csv(out / "offline.csv")
    write_plots(sweep, capacity, offline, slo_ms, title, out)
    text = headline(sweep, capacity, offline, slo_ms)
    if (out / "changing.csv").exists():
        changing = read_csv(out / "changing.csv")
        changing_plots(read_csv(out / "timeline.csv"), out)
        text += "\n" + concurrency_headline(changing)
        text += "\n### Changing loads (every mode on the same arrivals)\n" + "\n".join(changing_tables(changing))
    (out / "summary.md").write_text(preamble + "\n" + text)
    return text


RESULT_FILES = ("sweep.csv", "capacity.csv", "offline.csv", "changing.csv", "timeline.csv", "chunks.csv")


def merge_results(sources: list[Path], out: Path) -> None:
    """Writes into ``out`` each result CSV with the rows of every source directory that has it (modes run on
    separate GPUs, rendered as one run)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        present = [source / name for source in sources if (source / name).exists()]
        if present:
            with open(present[0], newline="") as f:
                columns = next(csv.reader(f), [])
            write_csv([row for path in present for row in read_csv(path)], columns, out / name)


def main(argv: list[str] | None = None) -> int:
    """Re-renders a result directory (e.g. CSVs fetched from a GPU run): python -m loadtest.report DIR; with
    ``--merge A B``, DIR first gets the rows of the result directories A and B."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--slo-ms", type=float, default=50.0)
    parser.add_argument("--title", default="")
    parser.add_argument("--preamble", default="", help="Markdown put before the headline in summary.md")
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="result directories merged into OUT first")
    args = parser.parse_args(argv)
    if args.merge:
        merge_results(args.merge, args.out)
    print(render(args.out, args.slo_ms, args.title or args.out.name, args.preamble))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
