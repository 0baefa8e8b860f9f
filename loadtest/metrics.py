"""Per-request latency records and the summary row of one rate point (DESIGN.md §8).

Latencies count from the request's *scheduled* arrival (open loop: time a request waits for a free client counts,
so an overloaded run cannot hide its queue). TPOT = (e2e - TTFT) / (tokens - 1); throughput is committed output
tokens per second between the first arrival and the last completion.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass
class RequestRecord:
    """One request's timeline (perf_counter seconds) and outcome."""

    arrival: float  # scheduled arrival
    deadline: float  # unfinished past this moment
    first: float | None = None  # first streamed token
    end: float | None = None
    output_tokens: int = 0
    error: str | None = None
    unfinished: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    on_done: Callable[[], None] | None = None  # called once the request ends, however it ends

    def finish(self, end: float, output_tokens: int, first: float | None, error: str | None = None) -> None:
        self.end, self.output_tokens, self.error = end, output_tokens, error
        self.first = first if first is not None else end
        self._end()

    def give_up(self) -> None:
        """Past the deadline: counted as unfinished (not as a latency sample)."""
        self.unfinished = True
        self._end()

    def _end(self) -> None:
        self.done.set()
        if self.on_done is not None:
            self.on_done()

    @property
    def ok(self) -> bool:
        return self.end is not None and self.error is None and not self.unfinished

    @property
    def ttft(self) -> float:
        return self.first - self.arrival

    @property
    def e2e(self) -> float:
        return self.end - self.arrival

    @property
    def tpot(self) -> float | None:
        return (self.end - self.first) / (self.output_tokens - 1) if self.output_tokens > 1 else None


def _percentiles(name: str, values: list[float]) -> dict[str, float]:
    """{name_p50_ms: ..., ...}; NaN when there is no sample."""
    array = np.asarray(values, float) * 1e3
    return {f"{name}_p{q}_ms": float(np.percentile(array, q)) if len(array) else float("nan") for q in PERCENTILES}


def summarize(records: list[RequestRecord], samples: list[dict], duration_s: float) -> dict:
    """Counts, latency percentiles, throughput and the engine's sampled state for one rate point."""
    ok = [r for r in records if r.ok]
    span = (max(r.end for r in ok) - min(r.arrival for r in records)) if ok else float("nan")
    tokens = sum(r.output_tokens for r in ok)
    busy = [s for s in samples if s.get("running", 0) > 0]
    chunks = [s["chunk"] for s in samples if s.get("chunk", 0) > 0]  # the latest step's c (it outlives the step)
    row = {
        "requests": len(records),
        "completed": len(ok),
        "failed": sum(1 for r in records if r.error is not None),
        "unfinished": sum(1 for r in records if r.unfinished),
        "achieved_rps": len(records) / duration_s,
        "output_tokens": tokens,
        "throughput_tok_s": tokens / span if ok else 0.0,
        "request_throughput_rps": len(ok) / span if ok else 0.0,
        **_percentiles("ttft", [r.ttft for r in ok]),
        **_percentiles("tpot", [r.tpot for r in ok if r.tpot is not None]),
        **_percentiles("e2e", [r.e2e for r in ok]),
        "mean_chunk": float(np.mean(chunks)) if chunks else float("nan"),
        "mean_running": float(np.mean([s["running"] for s in busy])) if busy else 0.0,
        "max_kv_pages_used": max((s.get("kv_pages_used", 0) for s in samples), default=0),
        "kv_pages_total": max((s.get("kv_pages_total", 0) for s in samples), default=0),
        "host_ms_per_step": host_ms_per_step(samples),
        "schedule_ms_per_step": schedule_ms_per_step(samples),
        "step_over_predicted": step_over_predicted(samples),
    }
    return row


def chunk_rows(records: list) -> list[dict]:
    """Per chunk size, what the decode steps (engine ``StepRecord``s) that ran it cost and gave: its share of those
    steps, their mean batch, committed tokens per request and step, measured and profiled step ms over the steps
    without prefill (a step's prefill is paid whichever c runs), and committed tokens per second of its steps' time
    (the quantity the elastic controller maximizes)."""
    decode = [r for r in records if r.batch > 0]
    rows = []
    for chunk in sorted({r.chunk for r in decode}):
        ran = [r for r in decode if r.chunk == chunk]
        clean = [r for r in ran if not r.prefill_tokens]
        profiled = [r.profiled_ms for r in clean if r.profiled_ms]
        committed = sum(r.committed_tokens for r in ran)
        rows.append({
            "chunk": chunk, "steps": len(ran), "step_share": len(ran) / len(decode),
            "mean_batch": float(np.mean([r.batch for r in ran])),
            "committed_per_request": committed / sum(r.batch for r in ran),
            "step_ms": float(np.mean([r.measured_ms for r in clean])) if clean else float("nan"),
            "profiled_ms": float(np.mean(profiled)) if profiled else float("nan"),
            "tok_s": committed / (sum(r.measured_ms for r in ran) / 1e3),
        })
    return rows


def step_over_predicted(samples: list[dict]) -> float:
    """Median measured / predicted time of the sampled steps (how well the cost model knows this machine)."""
    ratios = [s["step_ms"] / s["predicted_ms"] for s in samples if s.get("predicted_ms") and s.get("step_ms")]
    return float(np.median(ratios)) if ratios else float("nan")


def step_totals(first: dict, last: dict) -> tuple[int, float, float, float] | None:
    """(steps, whole-step ms, forward ms, scheduling ms) the engine ran between two stats snapshots; None where the
    target's stats don't carry the engine's step totals (the Triton path) or no step ran."""
    if "total_step_ms" not in first or "total_step_ms" not in last or last["steps"] == first["steps"]:
        return None
    return (last["steps"] - first["steps"], last["total_step_ms"] - first["total_step_ms"],
            last["total_forward_ms"] - first["total_forward_ms"],
            last["total_schedule_ms"] - first["total_schedule_ms"])


def _sampled_totals(samples: list[dict]) -> tuple[int, float, float, float] | None:
    """``step_totals`` between the first and last sample that carry the engine's step totals."""
    timed = [s for s in samples if "total_step_ms" in s]
    return step_totals(timed[0], timed[-1]) if timed else None


def host_ms_per_step(samples: list[dict]) -> float:
    """Mean step time outside the runner's launch-to-collect span (scheduling, applying commits), the host time
    the GPU waits for, between the first and last sample that carry the engine's step totals; NaN where none do
    (the Triton path). Streaming the deltas overlaps the forward, inside that span."""
    totals = _sampled_totals(samples)
    if totals is None:
        return float("nan")
    steps, step_ms, forward_ms, _ = totals
    return (step_ms - forward_ms) / steps


def schedule_ms_per_step(samples: list[dict]) -> float:
    """Mean time per step spent choosing the chunk and planning the windows (part of ``host_ms_per_step``), over the
    same span; NaN where no sample carries the engine's totals."""
    totals = _sampled_totals(samples)
    if totals is None:
        return float("nan")
    steps, _, _, schedule_ms = totals
    return schedule_ms / steps


def meets_slo(row: dict, slo_ms: float) -> bool:
    """P90 TPOT within the SLO, and every request served (a failed or unfinished request breaks it)."""
    p90 = row["tpot_p90_ms"]
    return row["failed"] == 0 and row["unfinished"] == 0 and row["completed"] > 0 and p90 == p90 and p90 <= slo_ms
