"""On a CUDA device: Triton kernels and CUDA graphs commit what the PyTorch references commit."""

from __future__ import annotations

import pytest
import torch

from optimus_backend.config import EngineConfig, SamplingParams
from optimus_backend.engine import Engine

from test_engine import PROMPTS, run_to_end

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def decode_all(checkpoint, mode: str, dtype: str, **config) -> list:
    params = SamplingParams(max_tokens=40, ignore_eos=True, threshold=0.3)
    engine = Engine(EngineConfig(checkpoint=checkpoint, mode=mode, device="cuda", dtype=dtype,
                                 kv_budget_bytes=64 * 2**20, **config), start=False)
    handles = [engine.submit(p, params) for p in PROMPTS]
    run_to_end(engine, handles)
    return [(h.request.commit_steps, h.request.generated()) for h in handles]


@pytest.mark.parametrize("mode", ["bd", "chunk:3", "chunk:8"])
def test_graphs_replay_what_eager_kernels_compute(tiny_checkpoint, mode):
    assert decode_all(tiny_checkpoint, mode, "bfloat16") == decode_all(tiny_checkpoint, mode, "bfloat16",
                                                                       cuda_graphs=False)


@pytest.mark.parametrize("mode", ["bd", "chunk:3", "chunk:8"])
def test_kernels_commit_what_the_references_commit(tiny_checkpoint, mode):
    assert decode_all(tiny_checkpoint, mode, "float32") == decode_all(tiny_checkpoint, mode, "float32",
                                                                      use_kernels=False)
