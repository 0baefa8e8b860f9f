"""Loader: config fields from the checkpoint, round trip with sharding, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from optimus_backend.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

from conftest import build_checkpoint


def test_mask_id_and_block_size_come_from_the_checkpoint(tmp_path):
    directory = build_checkpoint(tmp_path / "ck", causal=False, block_size=4, mask_token_id=3)
    model, tokenizer = load_checkpoint(directory)
    assert model.config.block_size == 4 and model.config.mask_token_id == 3
    assert not model.config.causal and not model.config.logits_shift
    assert tokenizer.decode(tokenizer.encode("the quick brown fox")) == "the quick brown fox"


def test_mask_id_falls_back_to_the_tokenizer(tmp_path):
    directory = build_checkpoint(tmp_path / "ck", causal=False)
    config = json.loads((directory / "config.json").read_text())
    del config["mask_token_id"]
    (directory / "config.json").write_text(json.dumps(config))
    model, tokenizer = load_checkpoint(directory)
    assert model.config.mask_token_id == tokenizer.token_id("<|mask|>")


def test_sharded_round_trip(tmp_path):
    directory = build_checkpoint(tmp_path / "ck", causal=True)
    model, _ = load_checkpoint(directory)
    sharded = tmp_path / "sharded"
    save_checkpoint(model, sharded, tokenizer_dir=directory, dtype=torch.float32, max_shard_bytes=80_000)
    shards = sorted(sharded.glob("*.safetensors"))
    assert len(shards) > 2 and all(s.stat().st_size < 82_000 for s in shards)
    assert (sharded / "model.safetensors.index.json").is_file()
    again, _ = load_checkpoint(sharded)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    directory = build_checkpoint(tmp_path / "ck", causal=False)
    (directory / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_checkpoint(directory)
    directory = build_checkpoint(tmp_path / "ck2", causal=False)
    (directory / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(directory)
    directory = build_checkpoint(tmp_path / "ck3", causal=False)
    for file in directory.glob("*.safetensors"):
        file.unlink()
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(directory)


def test_unknown_architecture(tmp_path):
    directory = build_checkpoint(tmp_path / "ck", causal=False)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "mamba"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown model_type 'mamba'"):
        load_checkpoint(directory)


def rewrite_weights(directory, change):
    path = next(directory.glob("*.safetensors"))
    weights = load_file(str(path))
    change(weights)
    save_file(weights, str(path))


def test_missing_and_misshaped_weights(tmp_path):
    directory = build_checkpoint(tmp_path / "ck", causal=False)
    rewrite_weights(directory, lambda w: w.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match="model.layers.1.mlp.up_proj.weight"):
        load_checkpoint(directory)
    directory = build_checkpoint(tmp_path / "ck2", causal=False)
    rewrite_weights(directory, lambda w: w.update({"model.norm.weight": torch.ones(7)}))
    with pytest.raises(CheckpointError, match=r"model.norm.weight.*\(7,\)"):
        load_checkpoint(directory)
    directory = build_checkpoint(tmp_path / "ck3", causal=False)
    rewrite_weights(directory, lambda w: w.update({"model.extra.weight": torch.ones(2)}))
    with pytest.raises(CheckpointError, match="unexpected weight 'model.extra.weight'"):
        load_checkpoint(directory)


def test_diffusion_checkpoint_without_block_size(tmp_path):
    directory = build_checkpoint(tmp_path / "ck", causal=False)
    config = json.loads((directory / "config.json").read_text())
    del config["block_size"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="block_size"):
        load_checkpoint(directory)
