"""Load simulator and acceptance statistics (CPU, seconds)."""

import csv
import dataclasses

import numpy as np
import pytest

from optimus_backend.acceptance import AcceptanceStats, synthetic
from optimus_backend.cost_model import CostModel
from optimus_backend.sim_report import report
from optimus_backend.simulator import LoadSchedule, SimConfig, capacity_rps, simulate, summarize

B = 32
COLUMNS = ["policy", "throughput_tok_s", "ttft_p50_ms", "ttft_p90_ms", "tpot_p50_ms", "tpot_p90_ms", "tpot_p99_ms"]


@pytest.fixture(scope="module")
def cost() -> CostModel:
    return CostModel({(b, c, 512): 5.0 + 0.01 * b * c + 0.05 * b for b in (1, 8, 64) for c in (1, 8, 32)},
                     {"model": "toy"})


def always(k: int) -> AcceptanceStats:
    """Every request commits exactly k tokens per step at every c."""
    return AcceptanceStats(B, {c: np.eye(k + 1)[k] for c in (1, B)})


def one_request(policy: str, cost: CostModel, acceptance: AcceptanceStats, output_len: int) -> int:
    cfg = SimConfig(max_batch=4, output_len=(output_len, output_len), warmup_s=0.0, time_noise=0.0)
    result = simulate(policy, cost, acceptance, LoadSchedule.steady(0.0, 10.0), cfg, arrivals=[0.0])
    assert [r.done for r in result.requests] == [output_len]
    return len(result.steps)


def test_steps_per_policy(cost):
    """A request's first step only prefills (as in the engine), then it decodes."""
    acceptance = always(B)
    assert one_request("chunk:32", cost, acceptance, 64) == 1 + 2
    assert one_request("bd", cost, acceptance, 64) == 1 + 3  # block, clean pass, block (no clean pass at the end)
    assert one_request("ar", cost, acceptance, 64) == 1 + 64


def test_schedule_parse_and_arrivals():
    schedule = LoadSchedule.parse("10@1,10@3,10~1", scale=2.0)
    assert schedule.duration == pytest.approx(30.0)
    assert schedule.rate(5.0) == pytest.approx(2.0) and schedule.rate(15.0) == pytest.approx(6.0)
    assert schedule.rate(25.0) == pytest.approx(4.0)
    counts = [len(schedule.arrivals(np.random.default_rng(s))) for s in range(20)]
    assert np.mean(counts) == pytest.approx(2 * 10 + 6 * 10 + 4 * 10, rel=0.1)


def test_acceptance_json_round_trip_and_interpolation(tmp_path):
    data = {"block_size": B, "committed_per_step": {"4": [1, 1, 2, 2], "8": {"2": 1, "4": 1}}}
    stats = AcceptanceStats.from_json(data)
    assert stats.mean(4) == pytest.approx(1.5) and stats.mean(8) == pytest.approx(3.0)
    assert stats.mean(6) == pytest.approx(2.25) and stats.mean(32) == pytest.approx(3.0)
    loaded = AcceptanceStats.load(stats.save(tmp_path / "a.json"))
    assert all(loaded.mean(c) == pytest.approx(stats.mean(c)) for c in range(1, B + 1))
    draws = stats.sample(8, 1000, np.random.default_rng(0))
    assert set(draws) == {2, 4}


def test_synthetic_acceptance_is_plausible():
    stats = synthetic(steps=1000)
    means = [stats.mean(c) for c in range(1, B + 1)]
    assert means[0] == pytest.approx(0.5, abs=0.05)  # c = 1 alternates committing and caching
    assert 3.5 < means[-1] < 4.5  # DESIGN: ~4 of 32 committed per step at BD-32
    assert all(b >= a - 0.1 for a, b in zip(means, means[1:]))


def test_summary_counts_the_window(cost):
    cfg = SimConfig(max_batch=16, warmup_s=2.0)
    acceptance = synthetic(steps=300)
    schedule = LoadSchedule.steady(0.3 * capacity_rps(cost, acceptance, cfg), 10.0)
    row = summarize(simulate("elastic", cost, acceptance, schedule, cfg), 2.0, 10.0, 50.0)
    assert row["finished"] == row["requests"] > 0
    assert row["throughput_tok_s"] > 0 and row["tpot_p50_ms"] <= row["tpot_p90_ms"] <= row["tpot_p99_ms"]


def test_report_has_every_policy_and_column(cost, tmp_path):
    policies = ["elastic", "ar", "bd", "chunk:4", "chunk:32"]
    cfg = SimConfig(max_batch=16, warmup_s=1.0)
    lines = report(cost, synthetic(steps=300), cfg, policies, [0.2, 1.2], 6.0, {"burst": "3@0.2,3@1.2"}, 50.0, 1,
                   tmp_path)
    assert any("elastic_tok_s" in line for line in lines) and any("fixed_beaten" in line for line in lines)
    for kind in ("steady", "burst"):
        rows = list(csv.DictReader((tmp_path / f"simulated_toy_{kind}.csv").open()))
        assert {r["policy"] for r in rows} == set(policies)
        assert set(COLUMNS) <= set(rows[0])
        assert (tmp_path / f"simulated_toy_{kind}.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(csv.DictReader((tmp_path / "simulated_toy_steady.csv").open()))) == 2 * len(policies)


def test_changing_load_only_report_has_paired_ratios(cost, tmp_path):
    cfg = SimConfig(max_batch=16, warmup_s=1.0)
    lines = report(cost, synthetic(steps=300), cfg, ["elastic", "chunk:4", "chunk:32"], [], 6.0,
                   {"wave": "3@0.2,3~1.0"}, 50.0, 2, tmp_path)
    assert not (tmp_path / "simulated_toy_steady.csv").exists() and any("ratio_se" in line for line in lines)
    rows = list(csv.DictReader((tmp_path / "simulated_toy_wave_vs_fixed.csv").open()))
    assert {r["metric"] for r in rows} >= {"throughput_tok_s", "tpot_p90_ms"}
    assert all(float(r["ratio"]) > 0 and float(r["ratio_se"]) >= 0 for r in rows)


def test_true_cost_prices_the_steps_while_the_controller_sees_the_profile(cost):
    """With ``true_cost`` the steps (and the capacity that scales the rates) take its time, whatever profile the
    controller is given."""
    slower = CostModel({key: 2.0 * ms for key, ms in cost.points.items()}, {"model": "toy"})
    acceptance = always(4)
    base = SimConfig(max_batch=4, output_len=(64, 64), warmup_s=0.0, time_noise=0.0)
    times = {}
    for truth in (None, slower):
        cfg = dataclasses.replace(base, true_cost=truth)
        result = simulate("chunk:8", cost, acceptance, LoadSchedule.steady(0.0, 10.0), cfg, arrivals=[0.0])
        times[truth is None] = [t for t, *_ in result.steps]
    assert len(times[True]) == len(times[False]) == 1 + 16  # the prefill, then 64 tokens at 4 a step
    assert np.allclose(times[False], 2.0 * np.array(times[True]))
    assert capacity_rps(cost, acceptance, dataclasses.replace(base, true_cost=slower)) == pytest.approx(
        capacity_rps(cost, acceptance, base) / 2.0)


def test_a_first_token_waits_for_its_prefill_step(cost):
    """The engine prefills a request in its first step and decodes its first window in the next: the simulated
    first token comes at the end of the second step, and the first step decodes nothing."""
    cfg = SimConfig(max_batch=4, output_len=(64, 64), warmup_s=0.0, time_noise=0.0)
    result = simulate("chunk:8", cost, always(4), LoadSchedule.steady(0.0, 10.0), cfg, arrivals=[0.0])
    (first_end, first_batch, _, first_committed), (second_end, *_) = result.steps[:2]
    assert first_batch == 0 and first_committed == 0
    assert result.requests[0].first_token == pytest.approx(second_end) and second_end > first_end > 0


def test_users_schedule_counts_users_not_rates():
    schedule = LoadSchedule.parse("users:5@2,5~6", scale=10.0)  # user counts are never scaled
    assert schedule.users and schedule.duration == pytest.approx(10.0)
    assert schedule.users_at(2.0) == 2 and schedule.users_at(7.5) == 4 and schedule.users_at(10.0) == 0
    with pytest.raises(ValueError, match="closed loop"):
        schedule.arrivals(np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one user"):
        LoadSchedule.parse("users:5@2,5@0")


def test_a_closed_loop_keeps_every_user_with_one_request_in_flight(cost):
    """Each user sends its next request when its previous one ends: at every step boundary before the schedule
    ends there are at least as many requests in the system as users, and a new request is sent only where users
    would otherwise be idle (after the users drop, the requests in flight finish first)."""
    cfg = SimConfig(max_batch=16, output_len=(8, 40), warmup_s=0.0)
    schedule = LoadSchedule.parse("users:2@3,2@9,2@1")
    result = simulate("chunk:8", cost, always(4), schedule, cfg)
    boundaries = [t for t, *_ in result.steps if t < schedule.duration]
    assert len(boundaries) > 50
    for t in boundaries:
        in_system = sum(r.arrival <= t and (r.finish is None or r.finish > t) for r in result.requests)
        sent = sum(r.arrival == t for r in result.requests)
        assert in_system >= schedule.users_at(t)
        assert sent == 0 or in_system == schedule.users_at(t)
    assert all(r.finish is not None for r in result.requests)  # the drain serves the last users' requests
    assert len(result.requests) > 9 + 3  # users that finished sent more


def test_elastic_beats_every_fixed_chunk_when_the_users_change(cost):
    """A closed loop from 1 to 64 users and back to 2: a fixed chunk suits one of the loads, elastic each."""
    cfg = SimConfig(max_batch=64, output_len=(32, 96), warmup_s=0.0)
    schedule = LoadSchedule.parse("users:4@1,4@64,4@2")
    acceptance = synthetic(steps=300)

    def throughput(policy: str) -> float:
        return summarize(simulate(policy, cost, acceptance, schedule, cfg), 0.0, schedule.duration,
                         50.0)["throughput_tok_s"]

    elastic = throughput("elastic")
    fixed = {c: throughput(f"chunk:{c}") for c in (1, 2, 4, 8, 12, 16, 24, 32)}
    assert all(elastic > 1.01 * tok_s for tok_s in fixed.values()), (elastic, fixed)
