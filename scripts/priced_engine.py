"""The CPU diagnostics' engine: the shipped tiny model (its AR twin for mode "ar") replaying acceptance, with the controller fed step times
priced by a GPU profile instead of the CPU's (its measured / profiled factors learn the profile, not this CPU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from optimus_backend.config import DEFAULT_AR_CHECKPOINT, DEFAULT_CHECKPOINT, EngineConfig
from optimus_backend.controller import StepRecord
from optimus_backend.cost_model import CostModel
from optimus_backend.cuda_graphs import Buckets
from optimus_backend.engine import Engine


def step_price(cost: CostModel, record: StepRecord, tilt: float = 0.0, buckets: Buckets | None = None) -> float:
    """The profile's ms for a step: T at the decode tokens it really fed (rounded up to their CUDA graph bucket's
    with ``buckets``, as a GPU runs them) plus the per-token prefill cost, the decode part times (c / 8) ** ``tilt``
    (a truth whose cost grows with c faster than the profile's when ``tilt`` > 0)."""
    batch = max(record.batch, 1)
    decode_tokens = max(record.fed_tokens - record.prefill_tokens, 1)
    if buckets is not None:
        decode_tokens = int(buckets.padded(batch, np.array([record.fed_tokens]))[0]) - record.prefill_tokens
    decode = cost.predict(batch, decode_tokens / batch) * (max(record.chunk, 1) / 8) ** tilt
    return decode + cost.token_ms() * record.prefill_tokens


def priced_engine(mode: str, profile: Path, replay: str, start: bool = True, tilt: float = 0.0,
                  graph_padding: bool = False, noise: float = 0.0) -> tuple[Engine, CostModel, Buckets | None]:
    """An engine whose controller observes every step at its profile price (``tilt``: see ``step_price``); with
    ``graph_padding`` the steps are priced, and the controller prices its choices, at the GPU's CUDA graph buckets;
    ``noise``: the observed time is the price times a lognormal factor of that sigma (a GPU's step-to-step spread),
    from a fixed seed."""
    checkpoint = DEFAULT_AR_CHECKPOINT if mode == "ar" else DEFAULT_CHECKPOINT
    config = EngineConfig(checkpoint=checkpoint, mode=mode, device="cpu", max_running=128,
                          decoding_rule=f"replay:{replay}", profile_path=profile, kv_cpu_bytes=2**31)
    engine = Engine(config, start=start)
    cost = CostModel.load(profile)
    buckets = Buckets.for_limits(config.max_running, config.graph_max_tokens) if graph_padding else None
    if buckets is not None:
        engine.scheduler.padded_tokens = buckets.padded
    observe, rng = engine.controller.observe, np.random.default_rng(0)
    engine.controller.observe = lambda record: observe(dataclasses.replace(
        record, measured_ms=step_price(cost, record, tilt, buckets) * float(rng.lognormal(0.0, noise))))
    return engine, cost, buckets
