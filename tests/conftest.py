"""Shared fixtures: tiny random checkpoints (block-diffusion and causal) with a small BPE tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from optimus_backend.checkpoint import save_checkpoint
from optimus_backend.model import ModelConfig, Transformer

if not torch.cuda.is_available():
    # Triton decides interpreted or compiled when a @triton.jit function is defined, its own library included: some
    # imports (transformers' models) load triton.language early, which must then be interpreted too on a CPU box.
    os.environ.setdefault("TRITON_INTERPRET", "1")

SPECIALS = ["<|pad|>", "<|eos|>", "<|mask|>", "<|user|>", "<|assistant|>"]
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "what is 12 + 7 - 3? the answer is 16",
    "to be or not to be, that is the question",
    "stop here STOP there; end of line",
] * 20


@pytest.fixture
def poisoned(monkeypatch):
    """torch.empty / empty_like return NaN-filled floats and -7-filled integers."""
    empty, empty_like = torch.empty, torch.empty_like

    def poison(tensor):
        return tensor.fill_(float("nan") if tensor.is_floating_point() else -7)

    monkeypatch.setattr(torch, "empty", lambda *a, **k: poison(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: poison(empty_like(*a, **k)))


def write_tokenizer(directory: Path) -> Tokenizer:
    # Metaspace, not byte-level: every token decodes to printable text, so random models stream text
    tokenizer = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS + ["<|unk|>"])
    tokenizer.train_from_iterator(CORPUS, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"mask_token": "<|mask|>"}))
    return tokenizer


def tiny_model_config(vocab: int, causal: bool, block_size: int = 8, **overrides) -> ModelConfig:
    values = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=10000.0,
                  model_type="qwen3" if causal else "sdar", causal=causal, logits_shift=causal,
                  block_size=1 if causal else block_size, mask_token_id=None if causal else 2,
                  eos_token_ids=[1], pad_token_id=0)
    values.update(overrides)
    return ModelConfig(**values)


def build_checkpoint(directory: Path, causal: bool, seed: int = 0, **overrides) -> Path:
    tokenizer = write_tokenizer(directory)
    torch.manual_seed(seed)
    model = Transformer(tiny_model_config(tokenizer.get_vocab_size(), causal, **overrides))
    for name, param in model.named_parameters():
        torch.nn.init.normal_(param, std=1.0 if "embed" in name else 0.6 if "lm_head" in name else 0.5)
    if model.config.mask_token_id is not None:  # MASK slots then differ by context, not only by position
        torch.nn.init.zeros_(model.model.embed_tokens.weight[model.config.mask_token_id])
    save_checkpoint(model, directory, dtype=torch.float32)
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random block-diffusion (SDAR-style, block size 8) checkpoint."""
    return build_checkpoint(tmp_path_factory.mktemp("tiny-bd"), causal=False)


@pytest.fixture(scope="session")
def tiny_ar_checkpoint(tmp_path_factory) -> Path:
    """A random causal (Qwen3) checkpoint: the AR twin shape."""
    return build_checkpoint(tmp_path_factory.mktemp("tiny-ar"), causal=True)
