"""On a CUDA device: the engine with Triton kernels commits what it commits with the PyTorch references."""

from __future__ import annotations

import pytest
import torch

from optimus_backend.config import EngineConfig, SamplingParams
from optimus_backend.engine import Engine

from test_engine import PROMPTS, run_to_end

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("mode", ["bd", "chunk:3", "chunk:8"])
def test_kernels_commit_what_the_references_commit(tiny_checkpoint, mode):
    params = SamplingParams(max_tokens=40, ignore_eos=True, threshold=0.3)
    results = []
    for use_kernels in (True, False):
        engine = Engine(EngineConfig(checkpoint=tiny_checkpoint, mode=mode, device="cuda", dtype="float32",
                                     use_kernels=use_kernels, kv_budget_bytes=64 * 2**20), start=False)
        handles = [engine.submit(p, params) for p in PROMPTS]
        run_to_end(engine, handles)
        results.append([h.request.commit_steps | {-1: h.request.generated()} for h in handles])
    assert results[0] == results[1]
