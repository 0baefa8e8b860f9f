"""The shipped model's recipe: data splits, tokenizer, training layout vs. decoding, a few CPU steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from optimus_backend.checkpoint import load_checkpoint
from optimus_backend.masks import block_causal
from optimus_backend.model import ModelConfig, Transformer, dense_mask_attention
from optimus_backend.tokenizer import Tokenizer
from optimus_backend.training import data
from optimus_backend.training.packing import dense_mask, draw, pack
from optimus_backend.training.train import main as train_main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small training set (tokenizer included) built by the real recipe."""
    out = tmp_path_factory.mktemp("data")
    data.build(out, count=3000)
    return out


def test_held_out_never_meets_training():
    for task in data.TASKS:
        train = data.training(task, 300)
        held = data.held_out(task, 300)
        assert max(p.seed for p in train) < min(p.seed for p in held)
        assert not {p.question for p in train} & {p.question for p in data.held_out(task)}


def test_exact_match_means_score_one():
    problem = data.held_out("chain_sum", 1)[0]
    assert data.exact(problem, problem.answer) and data.exact(problem, f" {problem.answer}\n")
    assert not data.exact(problem, problem.answer + "0")
    assert 0 < data.score(problem, f"{problem.answer} apples") < 1  # partial credit is not a match


def test_tokenizer_round_trip_specials_and_digits(dataset):
    tok = Tokenizer(dataset)
    for special, expected in (("<|pad|>", 0), ("<|eos|>", 1), ("<|mask|>", 2)):
        assert tok.token_id(special) == expected
    assert tok.token_id("<|user|>") is not None and tok.token_id("<|assistant|>") is not None
    text = "Calculate 1234 + -56. Olivia has 7 apples."
    assert tok.decode(tok.encode(text)) == text
    digits = [tok.fast.id_to_token(i) for i in tok.encode("90817")]
    assert digits == list("90817")
    prompt = tok.apply_chat_template("2 + 3 =")
    assert prompt == "<|user|>2 + 3 =<|eos|><|assistant|>"
    assert tok.encode(prompt)[0] == tok.token_id("<|user|>") and tok.encode(prompt)[-1] == tok.token_id("<|assistant|>")
    config = json.loads((dataset / "tokenizer_config.json").read_text())
    assert config["mask_token"] == "<|mask|>" and "chat_template" in config


@pytest.mark.parametrize("kind", ["bd", "ar"])
def test_noisy_slots_see_exactly_what_the_decoder_feeds(kind):
    """Every scored slot's hidden state equals a plain forward over what a decoder would feed then."""
    block, vocab, mask = 32, 50, 2
    cfg = ModelConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, model_type="sdar")
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    lengths = np.array([70, 20, 100])  # answers crossing a block boundary and inside one block
    prompts = np.array([40, 12, 90])
    tokens = np.random.default_rng(0).integers(3, vocab, lengths.sum()).astype(np.uint16)
    packed = pack(tokens, prompts, lengths, kind, block, 512, pad_id=0)
    batch = draw(packed, torch.tensor([0]), kind, block, mask, torch.Generator().manual_seed(3))
    with torch.no_grad():
        hidden = model(batch.inputs, batch.pos, dense_mask_attention(dense_mask(batch)))[0]
        for i in torch.nonzero(batch.labels[0] != -100).flatten().tolist():
            doc, pos = batch.doc[0, i], int(batch.pos[0, i])
            same = batch.doc[0] == doc
            if kind == "ar":
                ids = batch.inputs[0, same][: pos + 1]
            else:  # clean blocks before, then the fed (visible) slots of the noisy block
                start = pos // block * block
                clean = same & ~batch.noisy[0] & (batch.pos[0] < start)
                fed = same & batch.noisy[0] & batch.visible[0] & (batch.pos[0] // block == pos // block)
                ids = torch.cat([batch.inputs[0, clean], batch.inputs[0, fed]])
                assert int(batch.pos[0, fed][-1]) >= pos
            positions = torch.arange(len(ids))
            attend = dense_mask_attention(block_causal(positions, positions, 1 if kind == "ar" else block)[None])
            expected = model(ids[None], positions[None], attend)[0, pos]
            torch.testing.assert_close(hidden[i], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bd", "ar"])
def test_a_few_cpu_steps_train_and_save_a_loadable_checkpoint(dataset, tmp_path, kind):
    out = tmp_path / kind
    train_main(["--kind", kind, "--data", str(dataset), "--out", str(out), "--shape", "test", "--rows", "2",
                "--row-len", "256", "--steps", "3", "--log-every", "1", "--warmup", "1"])
    log = json.loads((out / "training_log.json").read_text())
    losses = [record["loss"] for record in log["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    model, tok = load_checkpoint(out)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == ("sdar" if kind == "bd" else "qwen3")
    assert model.config.causal == (kind == "ar")
    if kind == "bd":
        assert config["block_size"] == 32 and config["mask_token_id"] == tok.token_id("<|mask|>")
    assert json.loads((out / "generation_config.json").read_text())["threshold"] == 0.9
    assert all(f.stat().st_size <= 15_000_000 for f in out.glob("*.safetensors"))
