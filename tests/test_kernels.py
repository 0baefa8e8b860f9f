"""Triton kernels under the CPU interpreter against their PyTorch references, and the references
against a dense masked SDPA. Outputs and workspaces are poisoned (NaN) so unwritten elements show."""

import importlib.util
import os
import sys
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from kernels import KV_LAYOUTS, get_kernels, page_pool
from kernels.chunk_attention_ref import chunk_attention_reference, store_kv_reference
from kernels.activation_ref import silu_mul_reference
from kernels.confidence_ref import lm_head_confidence_reference, max_softmax_reference
from kernels.rms_norm_ref import add_rms_norm_reference
from kernels.rope_ref import qk_norm_rope_reference, rope_cos_sin

from attention_batch import make_batch


if torch.cuda.is_available():  # an interpreted triton.language in the process breaks compiled kernels (gluon asserts)
    pytest.skip("interpreter tests run on CPU machines; tests/test_engine_cuda.py checks the compiled kernels",
                allow_module_level=True)


def interpreted_copy(name: str) -> ModuleType:
    """A private copy of a kernel module decorated for Triton's CPU interpreter, which reads
    TRITON_INTERPRET when a kernel is decorated; sys.modules and the environment stay as they were,
    so other tests (CUDA ones included) get the compiled kernels."""
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        copy_name = f"{name}_interpreted"
        spec = importlib.util.spec_from_file_location(copy_name, importlib.util.find_spec(name).origin)
        module = sys.modules[copy_name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


attention_kernels = interpreted_copy("kernels.chunk_attention")
confidence_kernels = interpreted_copy("kernels.confidence")
chunk_attention, store_kv = attention_kernels.chunk_attention, attention_kernels.store_kv
LaunchConfig = attention_kernels.LaunchConfig
lm_head_confidence, max_softmax = confidence_kernels.lm_head_confidence, confidence_kernels.max_softmax


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    """The wrappers read TRITON_INTERPRET at call time too (fp32 tiles under the interpreter)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 2e-3, torch.float32: 1e-4}


def relative_error(out, ref):
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def dense_attention(batch, dense, block_size, scale):
    """Block-causal SDPA per request over absolute positions 0..prefix+window, float64."""
    outs = []
    for request, (keys, values) in enumerate(zip(*dense)):
        start, end = batch["cu_seqlens"][request : request + 2].tolist()
        key_blocks = torch.arange(keys.shape[0]) // block_size
        query_blocks = batch["positions"][start:end].long() // block_size
        group = batch["q"].shape[1] // keys.shape[1]
        outs.append(
            F.scaled_dot_product_attention(
                batch["q"][start:end].double().transpose(0, 1),
                keys.double().repeat_interleave(group, dim=1).transpose(0, 1),
                values.double().repeat_interleave(group, dim=1).transpose(0, 1),
                attn_mask=key_blocks[None, :] <= query_blocks[:, None],
                scale=scale,
            ).transpose(0, 1)
        )
    return torch.cat(outs)


ATTENTION_CASES = {
    # name: windows, prefixes, q heads, kv heads, head dim, page size, block size, dtype, split_len
    "mixed_bf16": ((3, 1, 7), (5, 0, 40), 4, 2, 16, 4, 4, torch.bfloat16, None),
    "split_fp16": ((2, 0, 20, 1), (37, 3, 0, 64), 4, 1, 32, 16, 8, torch.float16, 16),
    "causal_fp16": ((1, 1, 1, 3), (0, 1, 17, 30), 2, 2, 16, 1, 1, torch.float16, 16),
    "odd_pages_fp32": ((4, 6), (9, 23), 6, 2, 64, 5, 3, torch.float32, None),
    "qwen_heads_bf16": ((2, 3), (20, 0), 8, 2, 128, 16, 32, torch.bfloat16, 16),
    "per_request_splits_bf16": ((2, 5, 1), (300, 0, 130), 4, 1, 32, 16, 8, torch.bfloat16, None),
    "pages_longer_than_a_tile_bf16": ((1, 4, 2), (150, 64, 0), 4, 2, 32, 64, 8, torch.bfloat16, None),
    "splits_inside_pages_fp16": ((3, 1), (45, 70), 4, 2, 16, 8, 4, torch.float16, 12),
}


@pytest.mark.parametrize("layout", KV_LAYOUTS)
@pytest.mark.parametrize("name", ATTENTION_CASES)
def test_chunk_attention_matches_reference(name, layout, poisoned):
    windows, prefixes, q_heads, kv_heads, head_dim, page_size, block_size, dtype, split_len = ATTENTION_CASES[name]
    batch, _ = make_batch(windows, prefixes, q_heads, kv_heads, head_dim, page_size, dtype, len(name), layout)
    assert batch["k_cache"].stride(2) == (page_size if layout == "head-major" else 1) * head_dim  # the layout holds
    scale = head_dim**-0.5
    out = chunk_attention(**batch, block_size=block_size, scale=scale, split_len=split_len)
    ref = chunk_attention_reference(**batch, block_size=block_size, scale=scale)
    assert torch.isfinite(out).all()
    assert relative_error(out, ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("max_window", [1, 7, 64])
def test_chunk_attention_is_right_for_any_q_tile(max_window, poisoned):
    """The q tile follows ``max_window`` (the engine passes the step's longest window): windows longer than the tile
    take several tiles, shorter ones leave rows empty; the result must not change."""
    windows, prefixes, q_heads, kv_heads, head_dim, page_size, block_size, dtype, split_len = ATTENTION_CASES["split_fp16"]
    windows = (7, 1, 20, 3)
    batch, _ = make_batch(windows, prefixes, q_heads, kv_heads, head_dim, page_size, dtype, max_window, "token-major")
    out = chunk_attention(**batch, block_size=block_size, scale=0.2, split_len=split_len, max_window=max_window)
    ref = chunk_attention_reference(**batch, block_size=block_size, scale=0.2, max_window=max_window)
    assert torch.isfinite(out).all()
    assert relative_error(out, ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("block_n", [16, 32])
def test_chunk_attention_with_a_forced_launch_config(block_n, poisoned):
    """A config passed in (what kernels/tune_attention.py times, and HOPPER_CONFIGS picks on Hopper) launches the
    kernel without the autotuner and must give the reference's result."""
    windows, prefixes, q_heads, kv_heads, head_dim, page_size, block_size, dtype, _ = ATTENTION_CASES["mixed_bf16"]
    batch, _ = make_batch(windows, prefixes, q_heads, kv_heads, head_dim, page_size, dtype, block_n, "token-major")
    out = chunk_attention(**batch, block_size=block_size, scale=0.3, config=LaunchConfig(block_n, 4, 1))
    ref = chunk_attention_reference(**batch, block_size=block_size, scale=0.3)
    assert relative_error(out, ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("name", ATTENTION_CASES)
def test_reference_matches_dense_sdpa(name, poisoned):
    windows, prefixes, q_heads, kv_heads, head_dim, page_size, block_size, dtype, _ = ATTENTION_CASES[name]
    batch, dense = make_batch(windows, prefixes, q_heads, kv_heads, head_dim, page_size, torch.float32, seed=7)
    ref = chunk_attention_reference(**batch, block_size=block_size, scale=0.3)
    assert relative_error(ref, dense_attention(batch, dense, block_size, scale=0.3)) < 1e-5


@pytest.mark.parametrize("layout", KV_LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_store_kv_writes_only_mapped_slots(dtype, layout):
    num_pages, page_size, kv_heads, head_dim = 5, 4, 3, 16
    k_cache = page_pool(num_pages, page_size, kv_heads, head_dim, layout, dtype=dtype).fill_(float("nan"))
    v_cache = page_pool(num_pages, page_size, kv_heads, head_dim, layout, dtype=dtype).fill_(float("nan"))
    slots = torch.tensor([5, -1, 6, 7, 8, 19, -1, 0], dtype=torch.int64)  # 7 -> 8 crosses a page
    k = torch.randn(slots.numel(), kv_heads, head_dim).to(dtype)
    v = torch.randn(slots.numel(), kv_heads, head_dim).to(dtype)
    expected_k, expected_v = k_cache.clone(), v_cache.clone()
    store_kv_reference(k, v, expected_k, expected_v, slots)
    store_kv(k, v, k_cache, v_cache, slots)
    assert torch.equal(k_cache.isnan(), expected_k.isnan()) and torch.equal(v_cache.isnan(), expected_v.isnan())
    assert torch.equal(k_cache.nan_to_num(), expected_k.nan_to_num())
    assert torch.equal(v_cache.nan_to_num(), expected_v.nan_to_num())
    assert k_cache.isnan().sum() == (num_pages * page_size - 6) * kv_heads * head_dim


def assert_confidence_matches(result, reference, logits, dtype):
    (confidence, token), (ref_confidence, ref_token) = result, reference
    assert confidence.dtype == torch.float32 and token.dtype == torch.int64
    assert relative_error(confidence, ref_confidence) < TOLERANCE[dtype]
    top2 = logits.float().topk(2, dim=-1).values
    separated = top2[:, 0] - top2[:, 1] > 0
    assert torch.equal(token[separated], ref_token[separated])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("num_chunks", [None, 3])
def test_max_softmax_matches_reference(dtype, num_chunks, poisoned):
    logits = (torch.randn(6, 5000) * 3).to(dtype)
    logits[2, 4321] = 40.0  # a confident row whose argmax sits in the last block
    logits[4, 100] = logits[4, 4200] = 40.0  # a tie across blocks and chunks: the first index wins
    result = max_softmax(logits, num_chunks=num_chunks)
    assert_confidence_matches(result, max_softmax_reference(logits), logits, dtype)
    assert result[1][4] == 100


@pytest.mark.parametrize("vocab", [151936, 5000, 4096])
def test_compile_variants_cover_every_row_count(vocab, monkeypatch):
    """The row counts the engine scores at start launch every compiled configuration max_softmax can use (the
    merge's power-of-two width, one chunk or several, Triton's integer specializations), for any row count."""
    monkeypatch.setattr(confidence_kernels, "multiprocessor_count", lambda device: 132)  # an H100/H200's count
    chunks = confidence_kernels.vocabulary_chunks

    def launch(rows: int) -> tuple:
        chunk_len, num_chunks = chunks(rows, vocab, torch.device("cpu"))
        return num_chunks == 1, num_chunks % 16 == 0, 1 << (num_chunks - 1).bit_length(), chunk_len % 16, chunk_len == 1

    variants = confidence_kernels.compile_variants(vocab, torch.device("cpu"))
    warmed = {launch(rows) for rows in variants}
    assert len(warmed) == len(variants)  # one row count per configuration
    assert all(launch(rows) in warmed for rows in range(1, 5000))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_lm_head_confidence_matches_reference(dtype, poisoned):
    hidden, weight = torch.randn(5, 32).to(dtype), torch.randn(3000, 32).to(dtype)
    result = lm_head_confidence(hidden, weight)
    reference = lm_head_confidence_reference(hidden, weight)
    assert_confidence_matches(result, reference, hidden @ weight.t(), dtype)


def test_cpu_dispatch_returns_references():
    kernels = get_kernels("cpu")
    assert kernels.chunk_attention is chunk_attention_reference and kernels.store_kv is store_kv_reference
    assert kernels.max_softmax is max_softmax_reference
    assert kernels.qk_norm_rope is qk_norm_rope_reference and kernels.silu_mul is silu_mul_reference
    assert kernels.add_rms_norm is add_rms_norm_reference


rms_norm_kernels = interpreted_copy("kernels.rms_norm")


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("shape", [(3, 64), (2, 5, 4, 16), (1, 100)])
def test_rms_norm_matches_reference(dtype, tolerance, shape):
    from kernels.rms_norm_ref import rms_norm_reference

    x = (torch.randn(shape) * 3).to(dtype)
    weight = (torch.rand(shape[-1]) + 0.5).to(dtype)
    expected = rms_norm_reference(x, weight, 1e-6).float()
    got = rms_norm_kernels.rms_norm(x, weight, 1e-6, out=torch.full_like(x, float("nan"))).float()
    assert torch.isfinite(got).all()
    assert float((got - expected).norm() / expected.norm()) < tolerance


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("shape", [(3, 64), (2, 5, 100)])
def test_add_rms_norm_matches_reference(dtype, tolerance, shape, poisoned):
    x, residual = (torch.randn(shape) * 3).to(dtype), (torch.randn(shape) * 3).to(dtype)
    weight = (torch.rand(shape[-1]) + 0.5).to(dtype)
    expected, expected_sum = add_rms_norm_reference(x, residual, weight, 1e-6)
    got, got_sum = rms_norm_kernels.add_rms_norm(x, residual, weight, 1e-6)
    assert torch.isfinite(got).all() and relative_error(got, expected) < tolerance
    if dtype == torch.bfloat16:  # the interpreter truncates fp32 -> bf16 (CUDA rounds to nearest even)
        assert relative_error(got_sum, expected_sum) < tolerance
    else:
        assert torch.equal(got_sum, expected_sum)


rope_kernels = interpreted_copy("kernels.rope")
activation_kernels = interpreted_copy("kernels.activation")

ROPE_CASES = {
    # name: leading shape, q heads, kv heads, head dim, q/k norm, q/k sliced from a fused qkv output
    "fused_qwen3_gqa": ((7,), 4, 2, 64, True, True),
    "batched_fused_llama": ((2, 3), 3, 1, 16, False, True),
    "batched_contiguous_norm": ((2, 5), 2, 2, 16, True, False),
    "fused_mha_no_norm": ((5,), 2, 2, 64, False, True),
}


def make_qk(leading, q_heads, kv_heads, head_dim, norm, fused, dtype, seed):
    """q, k (strided slices of one qkv tensor when fused), cos/sin from positions, norm weights or None."""
    gen = torch.Generator().manual_seed(seed)
    if fused:
        qkv = torch.randn(*leading, (q_heads + 2 * kv_heads) * head_dim, generator=gen).to(dtype)
        heads = qkv.view(*leading, q_heads + 2 * kv_heads, head_dim)
        q, k = heads[..., :q_heads, :], heads[..., q_heads : q_heads + kv_heads, :]
    else:
        q = torch.randn(*leading, q_heads, head_dim, generator=gen).to(dtype)
        k = torch.randn(*leading, kv_heads, head_dim, generator=gen).to(dtype)
    positions = torch.randint(0, 60, leading, generator=gen)
    cos, sin = rope_cos_sin(positions, head_dim, 10_000.0, dtype)
    weights = [(torch.rand(head_dim, generator=gen) + 0.5).to(dtype) if norm else None for _ in range(2)]
    return q, k, cos, sin, *weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ROPE_CASES)
def test_qk_norm_rope_matches_reference(name, dtype, poisoned):
    inputs = make_qk(*ROPE_CASES[name], dtype, seed=len(name))
    if ROPE_CASES[name][-1]:
        assert not inputs[0].is_contiguous() and not inputs[1].is_contiguous()
    q, k = rope_kernels.qk_norm_rope(*inputs, 1e-6)
    ref_q, ref_k = qk_norm_rope_reference(*inputs, 1e-6)
    for out, ref in ((q, ref_q), (k, ref_k)):
        assert out.shape == ref.shape and out.is_contiguous() and torch.isfinite(out).all()
        assert relative_error(out, ref) < {**TOLERANCE, torch.float32: 1e-5}[dtype]


@pytest.mark.parametrize("name", ROPE_CASES)
def test_rope_reference_matches_complex_rotation(name):
    """Rotate-half RoPE is the complex rotation of each pair (x_i, x_{i+D/2}) by position * theta^(-2i/D),
    after an RMSNorm computed here in float64."""
    leading, q_heads, kv_heads, head_dim, norm, fused = ROPE_CASES[name]
    q, k, cos, sin, q_weight, k_weight = make_qk(*ROPE_CASES[name], torch.float32, seed=3)
    positions = torch.arange(torch.Size(leading).numel()).view(leading) * 7 % 50
    cos, sin = rope_cos_sin(positions, head_dim, 10_000.0, torch.float32)
    ref_q, ref_k = qk_norm_rope_reference(q, k, cos, sin, q_weight, k_weight, 1e-6)
    half = head_dim // 2
    angles = positions.double()[..., None, None] * 10_000.0 ** (-torch.arange(half).double() / half)
    for x, weight, ref in ((q, q_weight, ref_q), (k, k_weight, ref_k)):
        x = x.double()
        if weight is not None:
            x = x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * weight.double()
        rotated = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(angles), angles)
        assert relative_error(ref, torch.cat((rotated.real, rotated.imag), dim=-1)) < 1e-5


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("shape", [(3, 2 * 40), (2, 3, 2 * 1500)])
def test_silu_mul_matches_reference(dtype, tolerance, shape, poisoned):
    gate_up = (torch.randn(shape) * 3).to(dtype)
    got = activation_kernels.silu_mul(gate_up)
    expected = silu_mul_reference(gate_up)
    assert got.shape == expected.shape and torch.isfinite(got).all()
    assert relative_error(got, expected) < tolerance


def test_tuner_picks_the_config_with_the_least_geometric_mean_slowdown():
    """Per key, the config slowest nowhere by much wins over one fastest at one shape and slow at another; a config
    that failed at any shape of a key never wins it."""
    from kernels.tune_attention import best_configs

    def row(c, b, config, ms=None, error=None):
        out = dict(head_dim=128, block_m=16, split=False, c=c, b=b, P=512, config=config)
        return out | ({"ms": ms} if ms is not None else {"error": error})

    rows = [row(1, 64, [32, 4, 3], 1.00), row(1, 64, [64, 4, 3], 1.05), row(1, 64, [128, 8, 2], 0.90),
            row(4, 64, [32, 4, 3], 2.00), row(4, 64, [64, 4, 3], 1.70), row(4, 64, [128, 8, 2], error="out of resources"),
            row(1, 128, [32, 4, 3], 3.00), row(1, 128, [64, 4, 3], 2.40), row(1, 128, [128, 8, 2], 2.40)]
    (config, slowdown), = best_configs(rows).values()
    assert config == [64, 4, 3]
    assert slowdown == pytest.approx((1.05 / 0.90) ** (1 / 3))


def test_launch_config_comes_from_the_table_only_on_hopper(monkeypatch):
    """The measured table applies on compute capability 9.x at its keys; elsewhere (and under the interpreter) the
    autotuner decides."""
    module = sys.modules["kernels.chunk_attention_interpreted"]
    cuda = torch.device("cuda", 0)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(module, "compute_capability", lambda device: (9, 0))
    assert module.launch_config(128, 16, False, cuda) == module.HOPPER_CONFIGS[(128, 16, False)]
    assert module.launch_config(64, 16, False, cuda) is None
    monkeypatch.setattr(module, "compute_capability", lambda device: (8, 0))
    assert module.launch_config(128, 16, False, cuda) is None
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(module, "compute_capability", lambda device: (9, 0))
    assert module.launch_config(128, 16, False, cuda) is None
