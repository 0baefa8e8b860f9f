"""The load-test suite: a ~20-second `optimus bench` sweep against real tritonservers (every mode, every column,
every plot), a headless Locust run of both users, and the pieces (arrival shapes, summaries, replay rule, the
in-process path, the acceptance recorder). No performance number is asserted.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from loadtest import bench, report
from loadtest.driver import PointSpec, interpolated_capacity, parse_loads, run_changing, run_point, slo_capacity
from loadtest.metrics import RequestRecord, chunk_rows, meets_slo, summarize
from loadtest.shapes import Arrivals, parse
from optimus_backend.cli import main as optimus
from optimus_backend.config import EngineConfig, SamplingParams
from optimus_backend.controller import StepRecord
from optimus_backend.decoding import make_rule
from optimus_backend.triton_server import TritonServer

ROOT = Path(__file__).resolve().parent.parent
MODES = ["ar", "bd", "chunk:4", "chunk:8", "chunk:16", "elastic"]
BATCHES = [1, 3]


def read(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.mark.timeout(240)
def test_bench_sweep_report_is_complete(tiny_checkpoint, tiny_ar_checkpoint, tmp_path):
    out = tmp_path / "bench"
    code = optimus(["bench", "--checkpoint", str(tiny_checkpoint), "--ar-checkpoint", str(tiny_ar_checkpoint),
                    "--device", "cpu", "--modes", ",".join(MODES), "--rates", "2,6", "--duration", "1.5",
                    "--drain", "30", "--max-tokens", "12", "--ignore-eos", "--prompts-per-task", "2",
                    "--changing", "step=1@2,1@6;users=users:1@2,1@4;u2=users:1.5@2",
                    "--batches", ",".join(map(str, BATCHES)), "--workers", "8", "--out", str(out)])
    assert code == 0
    columns, sweep = read(out / "sweep.csv")
    assert columns == report.SWEEP_COLUMNS
    assert [m for m in dict.fromkeys(r["mode"] for r in sweep)] == MODES
    for row in sweep:
        assert all(row[c] != "" for c in columns), row
        assert row["path"] == "triton-grpc" and row["replayed"] == "no" and row["failed"] == "0"
        assert all(math.isfinite(float(row[c])) for c in columns if c.endswith("_ms") or c == "mean_chunk")
    columns, capacity = read(out / "capacity.csv")
    assert columns == report.CAPACITY_COLUMNS and [r["mode"] for r in capacity] == MODES
    columns, offline = read(out / "offline.csv")
    assert columns == report.OFFLINE_COLUMNS
    assert [(r["mode"], int(r["batch"])) for r in offline] == [(m, b) for m in MODES for b in BATCHES]
    columns, changing = read(out / "changing.csv")
    assert columns == report.CHANGING_COLUMNS and [(r["mode"], r["load"]) for r in changing] == [
        (m, load) for m in MODES for load in ("step", "users", "u2")]
    assert all(row[c] != "" for row in changing for c in columns) and all(r["failed"] == "0" for r in changing)
    columns, timeline = read(out / "timeline.csv")
    assert columns == report.TIMELINE_COLUMNS and {r["mode"] for r in timeline} == set(MODES)
    for plot in [*report.PLOTS, *(f"changing_{tiny_checkpoint.name}_{load}.png" for load in ("step", "users", "u2"))]:
        assert (out / plot).stat().st_size > 1000, plot
    summary = (out / "summary.md").read_text()
    assert "SLO capacity" in summary and "elastic/AR" in summary and "| elastic |" in summary
    assert "load `step`" in summary and "elastic / best fixed chunk per metric" in summary
    assert "load `users` = `users:1@2,1@4` (closed loop" in summary
    assert "### Throughput ratios per concurrency" in summary and f"| {tiny_checkpoint.name} | 2 | " in summary


@pytest.mark.timeout(120)
@pytest.mark.parametrize("schedule", ["2@2,2~4", "users:2@2,2@4"])
def test_locust_headless_writes_csv(tiny_checkpoint, tmp_path, schedule):
    params = {"checkpoint": str(tiny_checkpoint), "mode": "bd", "device": "cpu"}
    with TritonServer(params, instance_kind="KIND_CPU", log_path=tmp_path / "triton.log") as server:
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
             "--host", server.http_url, "--grpc-url", server.grpc_url, "--checkpoint", str(tiny_checkpoint),
             "--prompts-per-task", "2", "--schedule", schedule, "--max-tokens", "8", "--ignore-eos",
             "--max-in-flight", "12", "--csv", str(tmp_path / "locust"), "--only-summary",
             "GrpcStreamUser", "HttpStreamUser"], cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, run.stderr[-3000:]
    _, stats = read(tmp_path / "locust_stats.csv")
    names = {(r["Type"], r["Name"]) for r in stats}
    for protocol in ("grpc", "http-sse"):
        assert {(protocol, "TTFT"), (protocol, "TPOT"), (protocol, "E2E")} <= names
    assert all(r["Failure Count"] == "0" for r in stats)


def test_schedules_constant_steps_and_ramps():
    steady = Arrivals(parse("100@2")).times
    assert len(steady) == pytest.approx(200, rel=0.25) and np.all(np.diff(steady) >= 0)
    stepped = Arrivals(parse("50@1,50@4")).times
    assert np.sum(stepped >= 50) > 2 * np.sum(stepped < 50)
    ramp = parse("100~4")
    assert ramp.rate(0.0) == 0.0 and ramp.rate(50.0) == pytest.approx(2.0) and ramp.duration == 100
    assert np.array_equal(Arrivals(parse("10@3")).times, Arrivals(parse("10@3")).times)  # seeded: same for all modes


class InstantTarget:
    """Finishes every request at once with 5 tokens; its engine state is 'running' = requests started so far."""

    label = "instant"

    def __init__(self):
        self.started = 0

    def start(self, prompt, params, record: RequestRecord) -> None:
        self.started += 1
        now = time.perf_counter()
        record.finish(now + 0.001, 5, now)

    def stats(self) -> dict:
        return {"running": self.started, "waiting": 0, "chunk": 4}


def test_changing_loads_follow_their_schedule_and_name_bad_items():
    spec = PointSpec(prompts=["p"], params={}, duration_s=1.0, drain_s=1.0, slo_ms=50.0)
    rows, timeline, chunks = run_changing(InstantTarget(), {"step": "0.6@5,0.6@40"}, spec)
    assert chunks == []  # a target without step records (the Triton path)
    assert [(r["load"], r["schedule"], r["duration_s"]) for r in rows] == [("step", "0.6@5,0.6@40", 1.2)]
    assert rows[0]["completed"] == rows[0]["requests"] > 10 and rows[0]["mean_chunk"] == 4
    times = [r["t_s"] for r in timeline]
    assert times == sorted(times) and len(times) >= 8
    assert {r["offered_rps"] for r in timeline if r["t_s"] < 0.55} == {5.0}
    assert {r["offered_rps"] for r in timeline if 0.65 < r["t_s"]} == {40.0}
    started = [r["running"] for r in timeline]
    assert started == sorted(started) and 10 < started[-1] <= rows[0]["requests"]
    assert parse_loads(" a=1@2 ; b=3~4") == {"a": "1@2", "b": "3~4"}
    for bad, named in (("1@2", "label=schedule"), ("a=1@x", "'a'"), ("a=", "label=schedule")):
        with pytest.raises(ValueError, match=named):
            parse_loads(bad)


class HoldingTarget:
    """Holds every request for ``hold_s`` (on a timer thread) before finishing it with 5 tokens; notes how many
    were in flight at each start."""

    label = "holding"

    def __init__(self, hold_s: float):
        self.hold_s, self.in_flight, self.starts = hold_s, 0, []
        self.lock = threading.Lock()

    def start(self, prompt, params, record: RequestRecord) -> None:
        with self.lock:
            self.in_flight += 1
            self.starts.append((time.perf_counter(), self.in_flight))
        threading.Timer(self.hold_s, self._finish, args=(record,)).start()

    def _finish(self, record: RequestRecord) -> None:
        with self.lock:
            self.in_flight -= 1
        now = time.perf_counter()
        record.finish(now, 5, now - self.hold_s / 2)

    def stats(self) -> dict:
        return {"running": self.in_flight, "waiting": 0, "chunk": 4}


def test_a_users_load_keeps_each_user_one_request_in_flight():
    spec = PointSpec(prompts=["p"], params={}, duration_s=1.0, drain_s=1.0, slo_ms=50.0)
    target = HoldingTarget(0.02)
    begin = time.perf_counter()
    rows, timeline, _ = run_changing(target, {"users": "users:0.6@2,0.6@6"}, spec)
    assert rows[0]["failed"] == 0 and rows[0]["completed"] == rows[0]["requests"] == len(target.starts)
    first = [n for t, n in target.starts if t - begin < 0.55]
    second = [n for t, n in target.starts if 0.7 < t - begin]
    assert max(first) == 2 and max(second) == 6  # never more in flight than users, and every user busy
    assert 0.5 * (0.6 / 0.02) * (2 + 6) < rows[0]["requests"] < (0.6 / 0.02) * (2 + 6) + 8  # users resend at once
    assert {r["users"] for r in timeline if r["t_s"] < 0.55} == {2.0}
    assert {r["users"] for r in timeline if 0.65 < r["t_s"] < 1.2} == {6.0}
    assert parse("users:2~8").users_at(1.5) == 6  # a users ramp starts from one user: 1 + 7 * 0.75


def _record(arrival: float, first: float, end: float, tokens: int) -> RequestRecord:
    record = RequestRecord(arrival=arrival, deadline=arrival + 100)
    record.finish(end, tokens, first)
    return record


def test_summary_capacity_and_slo():
    records = [_record(t, t + 0.1, t + 0.1 + 0.02 * 9, 10) for t in np.arange(0.0, 1.0, 0.1)]
    row = {"rate_rps": 10.0, **summarize(records, [{"chunk": 4, "running": 2, "kv_pages_used": 3}], 1.0)}
    assert row["completed"] == 10 and row["tpot_p90_ms"] == pytest.approx(20.0)
    assert row["ttft_p50_ms"] == pytest.approx(100.0) and row["mean_chunk"] == 4
    assert meets_slo(row, 50.0) and not meets_slo(row, 10.0)
    late = RequestRecord(arrival=0.0, deadline=1.0)
    late.give_up()
    assert not meets_slo(summarize(records + [late], [], 1.0), 50.0)
    rows = [{"rate_rps": 1.0, "tpot_p90_ms": 30.0, "slo_ok": True},
            {"rate_rps": 4.0, "tpot_p90_ms": 70.0, "slo_ok": False}]
    assert slo_capacity(rows) == 1.0 and interpolated_capacity(rows, 50.0) == pytest.approx(2.0)
    totals = [{"steps": 10, "total_step_ms": 100.0, "total_forward_ms": 80.0, "total_schedule_ms": 5.0},
              {"steps": 20, "total_step_ms": 200.0, "total_forward_ms": 150.0, "total_schedule_ms": 12.0}]
    timed = summarize(records, totals, 1.0)
    assert timed["host_ms_per_step"] == pytest.approx(3.0) and timed["schedule_ms_per_step"] == pytest.approx(0.7)
    assert math.isnan(row["schedule_ms_per_step"])  # a target without the engine's totals (the Triton path)


def test_headline_ratios_per_level_and_their_mean_over_the_sweep():
    """Each load level's elastic/AR, elastic/BD and elastic/best fixed chunk, then their means over the levels."""
    values = {1: {"elastic": 300.0, "ar": 100.0, "bd": 200.0, "chunk:8": 250.0, "chunk:16": 300.0},
              4: {"elastic": 800.0, "ar": 400.0, "bd": 1000.0, "chunk:8": 800.0, "chunk:16": 400.0}}
    rows = [{"model": "m", "mode": mode, "batch": batch, "tokens_per_s": value}
            for batch, modes in values.items() for mode, value in modes.items()]
    lines = report._ratios_by_level(rows, "batch", "tokens_per_s")
    assert lines[0] == "| m | 1 | 300.0 | 3.00x | 1.50x | 1.00x (chunk:16) |"
    assert lines[1] == "| m | 4 | 800.0 | 2.00x | 0.80x | 1.00x (chunk:8) |"
    assert lines[2] == "| m | mean | — | 2.50x | 1.15x | 1.00x |"


def test_concurrency_headline_takes_the_loads_that_hold_users():
    """Loads that hold N users make the concurrency table (elastic over AR, BD and the best fixed chunk per N, and
    the means); rate schedules and users loads that change their count are left to the changing-load tables."""
    assert report.held_users("users:30@16") == 16 and report.held_users("users:10@4,20@4") == 4
    assert report.held_users("users:10@4,10@8") is None and report.held_users("users:10~8") is None
    assert report.held_users("30@16") is None
    throughput = {("u1", "users:5@1"): {"elastic": 40.0, "ar": 10.0, "bd": 20.0, "chunk:8": 30.0},
                  ("u4", "users:5@4"): {"elastic": 90.0, "ar": 45.0, "bd": 30.0, "chunk:8": 100.0},
                  ("wave", "users:5@1,5@4"): {"elastic": 1.0, "ar": 1.0, "bd": 1.0, "chunk:8": 1.0},
                  ("burst", "5@2"): {"elastic": 1.0, "ar": 1.0, "bd": 1.0, "chunk:8": 1.0}}
    rows = [{"model": "m", "mode": mode, "load": load, "schedule": schedule, "throughput_tok_s": value}
            for (load, schedule), modes in throughput.items() for mode, value in modes.items()]
    lines = report.concurrency_headline(rows).splitlines()
    assert lines[0] == "### Throughput ratios per concurrency (closed loops holding N users)"
    assert lines[3:] == ["| m | 1 | 40.0 | 4.00x | 2.00x | 1.33x (chunk:8) |",
                         "| m | 4 | 90.0 | 2.00x | 3.00x | 0.90x (chunk:8) |",
                         "| m | mean | — | 3.00x | 2.50x | 1.12x |"]
    assert report.concurrency_headline([r for r in rows if r["load"] in ("wave", "burst")]) == ""


def test_replay_rule_follows_the_recorded_statistics(tmp_path):
    stats = {"block_size": 8, "committed_per_visible": {"1": {"1": 5}, "4": {"1": 1, "3": 3}},
             "commit_positions_per_visible": {"1": [5], "4": [4, 3, 3, 0]}}
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    rule = make_rule(f"replay:{path}")
    picks = [rule.select([0.0] * 4, 0.9) for _ in range(400)]
    assert all(p == sorted(set(p)) and 1 <= len(p) <= 4 for p in picks)
    assert np.mean([len(p) for p in picks]) == pytest.approx(2.5, abs=0.25)
    assert sum(3 in p for p in picks) < 0.1 * len(picks)  # slot 3 was never committed at m = 4
    assert all(1 <= len(rule.select([0.0] * m, 0.9)) <= m for m in (1, 2, 7, 12))  # unrecorded m: clamped


def test_recorder_and_in_process_path_with_replay(tiny_checkpoint, tmp_path):
    from loadtest.engine_target import EngineTarget
    from loadtest.offline import measure_batch
    from loadtest.record import main as record
    from optimus_backend.engine import Engine

    stats = tmp_path / "acceptance.json"
    assert record(["--checkpoint", str(tiny_checkpoint), "--modes", "chunk:4", "--prompts-per-task", "1",
                   "--max-tokens", "8", "--out", str(stats)]) == 0
    data = json.loads(stats.read_text())
    assert data["request_steps"] > 0 and "4" in data["committed_per_step"]
    engine = Engine(EngineConfig(checkpoint=tiny_checkpoint, mode="chunk:4", device="cpu",
                                 decoding_rule=f"replay:{stats}"))
    target = EngineTarget(engine)
    try:
        spec = PointSpec(["the quick brown fox", "to be or not"], {"max_tokens": 8, "ignore_eos": True}, 1.0, 20.0,
                         50.0)
        row = run_point(target, 5.0, spec)
        assert row["completed"] == row["requests"] > 0 and row["output_tokens"] == 8 * row["completed"]
        assert set(report.SWEEP_COLUMNS) - set(row) <= set(report.LABELS) | {"slo_ok"}
        offline = measure_batch(target, spec.prompts, spec.params, 3)
        assert set(report.OFFLINE_COLUMNS) - set(offline) <= set(report.LABELS)
        # chunk:4 with at most 4 commits a step: 8 tokens need >= 2 decode steps (+ prefill), every step timed
        assert offline["steps"] >= 3 and offline["forward_ms_mean"] <= offline["step_ms_mean"]
        assert 0 < offline["in_step_share"] <= 1.0
        rows, _, chunks = run_changing(target, {"u2": "users:1@2"}, spec)
        assert [c["chunk"] for c in chunks] == [4] and chunks[0]["step_share"] == 1.0
        assert 0 < chunks[0]["committed_per_request"] <= 4 and chunks[0]["tok_s"] > 0
        committed = chunks[0]["committed_per_request"] * chunks[0]["mean_batch"] * chunks[0]["steps"]
        assert committed == pytest.approx(rows[0]["output_tokens"])  # the engine's records against the client's count
        assert engine.generate(["stop here"], SamplingParams(max_tokens=6, ignore_eos=True))[0] is not None
    finally:
        target.close()
        engine.shutdown()


def test_chunk_rows_say_what_each_chunk_cost_and_gave():
    records = [StepRecord(0, 0, 8, 64, 0, 30.0, prefill_tokens=64),  # a prefill-only step: no decode row
               StepRecord(1, 2, 8, 16, 6, 10.0, 10.0, 8.0),
               StepRecord(2, 4, 8, 96, 10, 20.0, 20.0, 9.0, prefill_tokens=64),  # prefill rides along
               StepRecord(3, 4, 16, 64, 20, 12.0, 12.0, 10.0)]
    rows = {row["chunk"]: row for row in chunk_rows(records)}
    assert set(rows) == {8, 16}
    assert rows[8]["steps"] == 2 and rows[8]["step_share"] == pytest.approx(2 / 3) and rows[8]["mean_batch"] == 3
    assert rows[8]["committed_per_request"] == pytest.approx(16 / 6) and rows[8]["tok_s"] == pytest.approx(16 / 0.03)
    assert rows[8]["step_ms"] == 10.0 and rows[8]["profiled_ms"] == 8.0  # the step with prefill is left out
    assert rows[16]["tok_s"] == pytest.approx(20 / 0.012) and rows[16]["committed_per_request"] == 5


def test_warm_up_covers_the_largest_burst_of_the_run():
    loads = {"u1": "users:12@1", "u128": "users:12@128", "burst": "10@4,10@200"}
    assert bench.warm_up_batch([1], loads) == 128  # a rate's peak is not a burst of requests at once
    assert bench.warm_up_batch([1, 64], {"u16": "users:12@16"}) == 64
    assert bench.warm_up_batch([4], {}) == 4


def test_merge_results_joins_the_modes_of_separate_runs(tmp_path):
    first, second = tmp_path / "gpu0", tmp_path / "gpu1"
    for directory, mode in ((first, "elastic"), (second, "chunk:8")):
        directory.mkdir()
        report.write_csv([{"model": "m", "mode": mode, "load": "u4", "throughput_tok_s": 10.0}],
                         ["model", "mode", "load", "throughput_tok_s"], directory / "changing.csv")
    report.write_csv([{"model": "m", "mode": "elastic", "batch": 1}], ["model", "mode", "batch"],
                     first / "offline.csv")
    report.merge_results([first, second], tmp_path / "merged")
    assert [r["mode"] for r in report.read_csv(tmp_path / "merged" / "changing.csv")] == ["elastic", "chunk:8"]
    assert [r["mode"] for r in report.read_csv(tmp_path / "merged" / "offline.csv")] == ["elastic"]
    assert not (tmp_path / "merged" / "sweep.csv").exists()
