"""Our forward against transformers' Qwen3 / Qwen2 / Llama on tiny random checkpoints (fp32)."""

from __future__ import annotations

import pytest
import torch
import transformers

from optimus_backend.checkpoint import load_checkpoint
from optimus_backend.masks import block_causal
from optimus_backend.model import dense_mask_attention

from conftest import write_tokenizer

ARCHS = {
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, {}),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {}),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {"head_dim": 16}),
}


def save_hf_model(arch: str, directory, tie: bool = False):
    config_cls, model_cls, extra = ARCHS[arch]
    config = config_cls(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                        rope_theta=10000.0, tie_word_embeddings=tie, eos_token_id=1, **extra)
    if arch == "qwen3":
        config.head_dim = 16
    torch.manual_seed(0)
    model = model_cls(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.2)
    model.save_pretrained(directory)
    write_tokenizer(directory)
    return model


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).norm() / ref.norm())


@pytest.mark.parametrize("arch,tie", [("qwen3", False), ("qwen3", True), ("qwen2", False), ("llama", False)])
def test_causal_forward_matches_transformers(tmp_path, arch, tie):
    reference = save_hf_model(arch, tmp_path, tie)
    ours, _ = load_checkpoint(tmp_path)
    ids = torch.randint(3, 300, (2, 37))
    positions = torch.arange(37).expand(2, 37)
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
        attention = dense_mask_attention(block_causal(positions[:1], positions[:1], 1))
        got = ours.logits(ours(ids, positions, attention))
        ours.fuse_projections()  # the engine's path: one qkv (with Qwen2's biases) and one gate-up GEMM
        fused = ours.logits(ours(ids, positions, attention))
    assert relative_error(got, expected) < 1e-5
    assert relative_error(fused, expected) < 1e-5


@pytest.mark.parametrize("arch", ["qwen3", "qwen2"])
@pytest.mark.parametrize("block_size", [4, 8])
def test_block_causal_forward_matches_transformers_4d_mask(tmp_path, arch, block_size):
    reference = save_hf_model(arch, tmp_path)
    ours, _ = load_checkpoint(tmp_path)
    ids = torch.randint(3, 300, (1, 29))
    positions = torch.arange(29).unsqueeze(0)
    allowed = block_causal(positions, positions, block_size)
    additive = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=additive.unsqueeze(1)).logits
        got = ours.logits(ours(ids, positions, dense_mask_attention(allowed)))
    assert relative_error(got, expected) < 1e-5
    # the mask matters: a causal forward differs from the block-causal one
    with torch.no_grad():
        causal = ours.logits(ours(ids, positions, dense_mask_attention(block_causal(positions, positions, 1))))
    assert relative_error(causal, expected) > 1e-3
