"""On a CUDA device: CUDA-graph replays and Triton kernels against the eager PyTorch path."""

from __future__ import annotations

import pytest
import torch

from kernels import get_kernels
from kernels.chunk_attention_ref import chunk_attention_reference
from kernels.rope_ref import rope_cos_sin
from optimus_backend.config import EngineConfig, SamplingParams
from optimus_backend.engine import Engine
from optimus_backend.profiler import fill_kv_random
from optimus_backend.request import Request, StepKind, StepPlan

from attention_batch import make_batch
from test_engine import PROMPTS, run_to_end

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def mixed_batch(engine: Engine) -> list[tuple[Request, StepPlan]]:
    """Requests with different prefixes and window lengths (prefix 0 and window 1 included)."""
    cfg = engine.model.config
    batch = []
    for i, (prefix, window, cached) in enumerate([(0, 5, 0), (37, 1, 37), (70, 8, 64), (16, 3, 16), (130, 8, 128)]):
        request = Request.for_model(f"r{i}", torch.randint(3, cfg.vocab_size, (prefix + window,)).tolist(),
                                    SamplingParams(max_tokens=8), cfg)
        engine.kv.admit(request.request_id, request.total_len)
        request.cached_len = cached
        start = cached
        batch.append((request, StepPlan(StepKind.DECODE, start, start + window, (), start)))
    return batch


def hidden_states(engine: Engine, batch, graphs: bool) -> torch.Tensor:
    runner = engine.runner
    step = runner.pack(batch)
    if graphs:
        return runner.graphs(step, runner.graphs.bucket(step)).float()
    attend = runner.attention(step, engine.model.config.block_size)
    return engine.model(step.input_ids[None], step.positions[None].long(), attend)[0].float()


def test_graph_replay_matches_the_eager_forward(tiny_checkpoint):
    engine = Engine(EngineConfig(checkpoint=tiny_checkpoint, mode="chunk:8", device="cuda", dtype="bfloat16",
                                 kv_budget_bytes=64 * 2**20), start=False)
    fill_kv_random(engine)
    batch = mixed_batch(engine)
    kv_before = [k.clone() for k in engine.kv.k]
    for _ in range(2):  # the first call captures, the second replays
        replayed = hidden_states(engine, batch, graphs=True)
    for k, before in zip(engine.kv.k, kv_before):
        k.copy_(before)
    eager = hidden_states(engine, batch, graphs=False)
    assert torch.isfinite(replayed).all()
    assert float((replayed - eager).norm() / eager.norm()) < 1e-2


@pytest.mark.parametrize("mode", ["bd", "chunk:3", "chunk:8"])
def test_kernels_commit_what_the_references_commit(tiny_checkpoint, mode):
    """fp32 end to end: the Triton path (kernels + graphs) decodes exactly like the PyTorch references."""
    params = SamplingParams(max_tokens=40, ignore_eos=True, threshold=0.3)
    results = []
    for use_kernels in (True, False):
        engine = Engine(EngineConfig(checkpoint=tiny_checkpoint, mode=mode, device="cuda", dtype="float32",
                                     use_kernels=use_kernels, kv_budget_bytes=64 * 2**20), start=False)
        handles = [engine.submit(p, params) for p in PROMPTS]
        run_to_end(engine, handles)
        results.append([h.request.generated() for h in handles])
    assert results[0] == results[1]


@pytest.mark.parametrize("max_window", [None, 1, 16, 32])
def test_chunk_attention_matches_reference_on_cuda(max_window, poisoned):
    """Compiled chunk attention on Qwen3-8B heads, mixed windows and prefixes of 0-2000 tokens, through a page table
    far wider than any prefix (a CUDA graph's plan comes from the model's context, so each request splits its own
    prefix): right for any q tile, windows longer than it included."""
    windows, prefixes = (1, 12, 32, 3, 17, 8), (0, 700, 2000, 129, 64, 1500)
    batch, _ = make_batch(windows, prefixes, 32, 8, 128, 16, torch.bfloat16, seed=11)
    batch["page_table"] = torch.cat([batch["page_table"], batch["page_table"].new_zeros(len(windows), 500)], dim=1)
    batch = {name: tensor.cuda() for name, tensor in batch.items()}
    out = get_kernels("cuda").chunk_attention(**batch, block_size=32, scale=0.09, max_window=max_window)
    ref = chunk_attention_reference(**batch, block_size=32, scale=0.09)
    assert torch.isfinite(out).all()
    assert float((out.double() - ref.double()).norm() / ref.double().norm()) < 1e-2


def test_fused_elementwise_kernels_match_references_on_cuda(poisoned):
    """Compiled (not interpreted) fused kernels on fresh random bf16 inputs, outputs checked against the references;
    the residual sum must equal PyTorch's bf16 add exactly."""
    fast, ref = get_kernels("cuda"), get_kernels("cpu")
    dtype, device, tokens, hq, hkv, head_dim = torch.bfloat16, "cuda", 37, 32, 8, 128

    def rel(got, expected):
        return float((got.float() - expected.float()).norm() / expected.float().norm())

    qkv = torch.randn(tokens, hq + 2 * hkv, head_dim, dtype=dtype, device=device)
    q, k = qkv[:, :hq], qkv[:, hq:hq + hkv]
    cos, sin = rope_cos_sin(torch.randint(0, 4096, (tokens,), device=device), head_dim, 1e6, dtype)
    weights = torch.randn(head_dim, dtype=dtype, device=device), torch.randn(head_dim, dtype=dtype, device=device)
    for got, expected in zip(fast.qk_norm_rope(q, k, cos, sin, *weights, 1e-6),
                             ref.qk_norm_rope(q, k, cos, sin, *weights, 1e-6)):
        assert rel(got, expected) < 1e-2
    x, residual = (torch.randn(tokens, 4096, dtype=dtype, device=device) for _ in range(2))
    weight = torch.randn(4096, dtype=dtype, device=device)
    normed, summed = fast.add_rms_norm(x, residual, weight, 1e-6)
    assert torch.equal(summed, x + residual)
    assert rel(normed, ref.add_rms_norm(x, residual, weight, 1e-6)[0]) < 1e-2
    assert rel(fast.rms_norm(x, weight, 1e-6), ref.rms_norm(x, weight, 1e-6)) < 1e-2
    gate_up = torch.randn(tokens, 2 * 12288, dtype=dtype, device=device)
    assert rel(fast.silu_mul(gate_up), ref.silu_mul(gate_up)) < 1e-2
