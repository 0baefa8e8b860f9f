"""The CPU diagnostics' engine: the shipped tiny model replaying acceptance, with the controller fed step times
priced by a GPU profile instead of the CPU's (its measured / profiled factors learn the profile, not this CPU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from optimus_backend.config import PROJECT_ROOT, EngineConfig
from optimus_backend.controller import StepRecord
from optimus_backend.cost_model import CostModel
from optimus_backend.engine import Engine


def step_price(cost: CostModel, record: StepRecord, tilt: float = 0.0) -> float:
    """The profile's ms for a step: T at the decode tokens it really fed plus the per-token prefill cost, the decode
    part times (c / 8) ** ``tilt`` (a truth whose cost grows with c faster than the profile's when ``tilt`` > 0)."""
    batch = max(record.batch, 1)
    decode_tokens = record.fed_tokens - record.prefill_tokens
    decode = cost.predict(batch, max(decode_tokens, 1) / batch) * (max(record.chunk, 1) / 8) ** tilt
    return decode + cost.token_ms() * record.prefill_tokens


def priced_engine(mode: str, profile: Path, replay: str, start: bool = True,
                  tilt: float = 0.0) -> tuple[Engine, CostModel]:
    """An engine whose controller observes every step at its profile price (``tilt``: see ``step_price``)."""
    config = EngineConfig(checkpoint=PROJECT_ROOT / "models/optimus-tiny", mode=mode, device="cpu", max_running=128,
                          decoding_rule=f"replay:{replay}", profile_path=profile, kv_cpu_bytes=2**31)
    engine = Engine(config, start=start)
    cost = CostModel.load(profile)
    observe = engine.controller.observe
    engine.controller.observe = lambda record: observe(
        dataclasses.replace(record, measured_ms=step_price(cost, record, tilt)))
    return engine, cost
