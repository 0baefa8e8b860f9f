"""Open-loop rate points and rate sweeps against a target (Triton or the in-process engine).

A rate point: Poisson arrivals at ``rate`` for ``duration_s`` (the same seeded arrivals for every mode), each
request started at its scheduled time whatever the server's state; then up to ``drain_s`` for the requests in
flight, after which they are cancelled and counted unfinished. The engine's state is sampled meanwhile.
A sweep runs increasing rates and stops after the first point that breaks the SLO. A changing load runs the same
way with a rate that steps or ramps over time (``shapes.parse``), and keeps the sampled state as a timeline; a
``users:`` load is a closed loop instead: as many requests in flight as the schedule's users, each user sending its
next request the moment its previous one ends (a faster mode serves more requests).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from optimus_backend.simulator import LoadSchedule

from .metrics import RequestRecord, chunk_rows, meets_slo, summarize
from .shapes import Arrivals, constant, parse

SAMPLE_PERIOD_S = 0.1
USERS_CHECK_S = 0.05  # a closed loop also checks its user count this often when no request ends
TIMELINE_STATE = ("running", "waiting", "chunk")  # engine stats kept in a changing load's timeline


@dataclass
class PointSpec:
    """What every rate point of a sweep shares."""

    prompts: list
    params: dict
    duration_s: float
    drain_s: float
    slo_ms: float
    seed: int = 0


def _sample(target, samples: list[dict], origin: float, stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_PERIOD_S):
        try:
            samples.append({"t_s": time.perf_counter() - origin, **target.stats()})
        except OSError:  # a scrape that timed out under load: skip it
            pass


def run_point(target, rate: float, spec: PointSpec) -> dict:
    """One open-loop rate point; returns its summary row."""
    row, _ = run_load(target, constant(rate, spec.duration_s), spec)
    return {"rate_rps": rate, **row}


def run_load(target, schedule: LoadSchedule, spec: PointSpec) -> tuple[dict, list[dict]]:
    """One run of ``schedule``, open loop (constant, steps or ramps) or, for a users schedule, closed loop: (its
    summary row, the engine's state sampled every SAMPLE_PERIOD_S: seconds from the start, offered rate or users,
    running and waiting requests, chunk size)."""
    samples: list[dict] = []
    stop = threading.Event()
    origin = time.perf_counter()
    sampler = threading.Thread(target=_sample, args=(target, samples, origin, stop), daemon=True)
    deadline = origin + schedule.duration + spec.drain_s
    sampler.start()
    send = _closed_loop if schedule.users else _open_loop
    records = send(target, schedule, spec, origin, deadline)
    for record in records:
        record.done.wait(max(0.0, deadline - time.perf_counter()) + 5.0)
        if not record.done.is_set():
            record.give_up()
    stop.set()
    sampler.join()
    offered = "users" if schedule.users else "offered_rps"
    timeline = [{"t_s": s["t_s"], offered: float(schedule.rate(min(s["t_s"], schedule.duration))),
                 **{key: s.get(key, 0) for key in TIMELINE_STATE}} for s in samples]
    return summarize(records, samples, schedule.duration), timeline


def _open_loop(target, schedule: LoadSchedule, spec: PointSpec, origin: float, deadline: float) -> list:
    """Starts each seeded Poisson arrival at its scheduled time, whatever the server's state."""
    records = []
    for index, at in enumerate(Arrivals(schedule, spec.seed).times):
        delay = origin + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        record = RequestRecord(arrival=origin + at, deadline=deadline)
        records.append(record)
        target.start(spec.prompts[index % len(spec.prompts)], spec.params, record)
    return records


def _closed_loop(target, schedule: LoadSchedule, spec: PointSpec, origin: float, deadline: float) -> list:
    """Until the schedule ends, tops the requests in flight up to the users of the moment whenever one ends."""
    records, in_flight = [], []
    ended = threading.Event()
    while (now := time.perf_counter()) < origin + schedule.duration:
        ended.clear()
        in_flight = [r for r in in_flight if not r.done.is_set()]
        for _ in range(schedule.users_at(now - origin) - len(in_flight)):
            record = RequestRecord(arrival=time.perf_counter(), deadline=deadline, on_done=ended.set)
            target.start(spec.prompts[len(records) % len(spec.prompts)], spec.params, record)
            records.append(record)
            in_flight.append(record)
        ended.wait(USERS_CHECK_S)
    return records


def run_changing(target, loads: dict[str, str], spec: PointSpec) -> tuple[list[dict], list[dict], list[dict]]:
    """Each changing load (label -> ``shapes.parse`` spec, absolute req/s or ``users:`` counts) once: (summary
    rows, timeline rows, per-chunk rows of the steps each load ran where the target keeps step records: the
    in-process engine)."""
    rows, timeline, chunks = [], [], []
    history = getattr(target, "step_history", None)
    for label, text in tqdm(loads.items(), desc="changing loads", unit="load"):
        schedule = parse(text)
        before = target.stats().get("steps", 0) - 1 if history else 0  # the last step before the load
        row, samples = run_load(target, schedule, spec)
        rows.append({"load": label, "schedule": text, "duration_s": schedule.duration, **row})
        timeline += [{"load": label, **sample} for sample in samples]
        chunks += [{"load": label, **chunk_row} for chunk_row in chunk_rows(history(before))] if history else []
    return rows, timeline, chunks


def parse_loads(text: str) -> dict[str, str]:
    """``"burst=10@4,10@40;ramp=30~60"`` -> {label: schedule spec}; raises ValueError naming the bad item."""
    loads = {}
    for item in (part.strip() for part in text.split(";") if part.strip()):
        label, _, schedule = item.partition("=")
        if not label or not schedule:
            raise ValueError(f"changing: expected label=schedule, got {item!r}")
        try:
            parse(schedule)
        except ValueError as error:
            raise ValueError(f"changing: bad schedule {schedule!r} for {label!r} ({error})") from None
        loads[label.strip()] = schedule.strip()
    return loads


def sweep(target, rates: list[float], spec: PointSpec, label: str, deadline: float | None = None) -> list[dict]:
    """Rate points in increasing order until (and including) the first that breaks the SLO; no point starts past
    ``deadline`` (time.monotonic) when one is given."""
    rows = []
    bar = tqdm(rates, desc=f"sweep {label}", unit="rate")
    for rate in bar:
        if deadline is not None and rows and time.monotonic() > deadline:
            break
        row = run_point(target, rate, spec)
        row["slo_ok"] = meets_slo(row, spec.slo_ms)
        rows.append(row)
        bar.set_postfix(rate=rate, p90_tpot_ms=round(row["tpot_p90_ms"], 1), tok_s=round(row["throughput_tok_s"]))
        if not row["slo_ok"]:
            break
    bar.close()
    return rows


def slo_capacity(rows: list[dict]) -> float:
    """The highest measured rate whose point kept the SLO (0 when none did)."""
    return max((r["rate_rps"] for r in rows if r["slo_ok"]), default=0.0)


def interpolated_capacity(rows: list[dict], slo_ms: float) -> float:
    """Where P90 TPOT crosses the SLO between the last passing and the first failing point (log-rate linear);
    the last passing rate when no point failed on TPOT."""
    ok = [r for r in rows if r["slo_ok"]]
    failed = [r for r in rows if not r["slo_ok"]]
    if not ok or not failed or not failed[0]["tpot_p90_ms"] == failed[0]["tpot_p90_ms"]:
        return slo_capacity(rows)
    lo, hi = ok[-1], failed[0]
    if hi["tpot_p90_ms"] <= lo["tpot_p90_ms"] or hi["tpot_p90_ms"] <= slo_ms:
        return lo["rate_rps"]
    w = (slo_ms - lo["tpot_p90_ms"]) / (hi["tpot_p90_ms"] - lo["tpot_p90_ms"])
    return float(np.exp(np.log(lo["rate_rps"]) + w * (np.log(hi["rate_rps"]) - np.log(lo["rate_rps"]))))
