"""Hugging Face layout checkpoints: config.json, (sharded) safetensors, tokenizer; named random shapes."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .model import ModelConfig, Transformer
from .tokenizer import Tokenizer

CAUSAL_TYPES = {"qwen3": "qwen3", "qwen2": "qwen2", "llama": "llama"}
DIFFUSION_TYPES = {"sdar": "qwen3", "fast_dllm_v2": "qwen2", "fast_dllm_qwen": "qwen2"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")

# Named shapes for random-weight models (latency does not depend on weight values).
SHAPES = {
    "qwen3-1.7b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-8b": dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128),
}


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the file or weight."""


def _architecture(raw: dict) -> tuple[str, bool]:
    """(architecture family, is block diffusion) from config.json's model_type."""
    model_type = str(raw.get("model_type", "")).lower()
    if model_type in DIFFUSION_TYPES:
        return DIFFUSION_TYPES[model_type], True
    if model_type in CAUSAL_TYPES:
        return CAUSAL_TYPES[model_type], bool(raw.get("block_diffusion", False))
    known = ", ".join(sorted({**CAUSAL_TYPES, **DIFFUSION_TYPES}))
    raise CheckpointError(f"config.json: unknown model_type {model_type!r} (supported: {known})")


def model_config_from_dict(raw: dict, tokenizer: Tokenizer | None = None) -> ModelConfig:
    """Builds a ModelConfig from config.json contents; mask id and block size come from the checkpoint."""
    family, diffusion = _architecture(raw)
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    for name in required:
        if name not in raw:
            raise CheckpointError(f"config.json: missing field {name!r}")
    heads = raw["num_attention_heads"]
    eos = raw.get("eos_token_id")
    mask_id = raw.get("mask_token_id")
    if mask_id is None and diffusion and tokenizer is not None:
        mask_id = tokenizer.find_mask_token()
    block_size = raw.get("block_size", raw.get("bd_size"))
    if diffusion and (mask_id is None or block_size is None):
        missing = "mask_token_id" if mask_id is None else "block_size"
        raise CheckpointError(f"config.json: block-diffusion checkpoint without {missing!r}")
    return ModelConfig(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_hidden_layers=raw["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=raw.get("num_key_value_heads", heads),
        head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
        model_type=str(raw["model_type"]).lower(),
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        rope_theta=raw.get("rope_theta", 10000.0),
        max_position_embeddings=raw.get("max_position_embeddings", 4096),
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
        qk_norm=family == "qwen3",
        qkv_bias=family == "qwen2" or bool(raw.get("attention_bias", False)),
        logits_shift=not diffusion or family == "qwen2",
        causal=not diffusion,
        block_size=int(block_size) if diffusion else 1,
        mask_token_id=mask_id,
        eos_token_ids=[] if eos is None else ([eos] if isinstance(eos, int) else list(eos)),
        pad_token_id=raw.get("pad_token_id"),
    )


def read_model_config(directory: Path, tokenizer: Tokenizer | None = None) -> ModelConfig:
    path = Path(directory) / "config.json"
    if not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: config.json is missing")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    return model_config_from_dict(raw, tokenizer)


def _weight_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [directory / name for name in names]
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory}: no *.safetensors weight files")
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{file}: weight shard listed in the index is missing")
    return files


def load_weights(model: Transformer, directory: Path) -> None:
    """Copies safetensors weights into the model, checking every name and shape."""
    expected = model.state_dict()
    seen: set[str] = set()
    for file in _weight_files(Path(directory)):
        with safe_open(str(file), framework="pt") as shard:
            for name in shard.keys():
                if name not in expected:
                    if "rotary_emb" in name:
                        continue
                    raise CheckpointError(f"{file.name}: unexpected weight {name!r}")
                tensor = shard.get_tensor(name)
                if tuple(tensor.shape) != tuple(expected[name].shape):
                    raise CheckpointError(
                        f"{file.name}: weight {name!r} has shape {tuple(tensor.shape)}, "
                        f"expected {tuple(expected[name].shape)}"
                    )
                with torch.no_grad():
                    expected[name].copy_(tensor)
                seen.add(name)
    missing = set(expected) - seen
    if model.config.tie_word_embeddings:
        missing -= {"lm_head.weight"} if "model.embed_tokens.weight" in seen else set()
    if missing:
        raise CheckpointError(f"{directory}: missing weights, e.g. {sorted(missing)[0]!r} ({len(missing)} missing)")


def load_checkpoint(directory: Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> tuple[Transformer, Tokenizer]:
    """Loads model and tokenizer from a Hugging Face layout directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    try:
        tokenizer = Tokenizer(directory)
    except FileNotFoundError as exc:
        raise CheckpointError(str(exc)) from exc
    cfg = read_model_config(directory, tokenizer)
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device="cpu").float()
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    load_weights(model, directory)
    return model.to(device=device, dtype=dtype).eval(), tokenizer


def random_model(shape: str, device: str | torch.device, dtype: torch.dtype, block_size: int = 32) -> Transformer:
    """A model of a named shape with random weights, built directly on the device; "<shape>-ar" is its causal
    (AR twin) version."""
    base = shape.removesuffix("-ar")
    if base not in SHAPES:
        raise CheckpointError(f"shape: unknown shape {shape!r} (known: {', '.join(sorted(SHAPES))}, each also -ar)")
    if shape != base:
        cfg = ModelConfig(**SHAPES[base], model_type="qwen3", causal=True, logits_shift=True, block_size=1,
                          eos_token_ids=[0])
    else:
        cfg = ModelConfig(**SHAPES[shape], model_type="sdar", block_size=block_size,
                          mask_token_id=SHAPES[shape]["vocab_size"] - 1, eos_token_ids=[0])
    with torch.device(device):
        model = Transformer(cfg).to(dtype)
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.02)
    return model.eval()


def config_dict(cfg: ModelConfig, dtype: torch.dtype = torch.bfloat16) -> dict:
    """config.json contents for a ModelConfig (our explicit block_size / mask_token_id included)."""
    raw = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    raw["eos_token_id"] = raw.pop("eos_token_ids")
    for derived in ("qk_norm", "qkv_bias", "logits_shift", "causal"):
        raw.pop(derived)
    raw["architectures"] = ["Qwen3ForCausalLM"]
    raw["torch_dtype"] = str(dtype).removeprefix("torch.")
    return raw


def save_checkpoint(model: Transformer, directory: Path, tokenizer_dir: Path | None = None,
                    dtype: torch.dtype = torch.bfloat16, max_shard_bytes: int = 15_000_000) -> None:
    """Writes config.json, safetensors shards of at most max_shard_bytes, and copies tokenizer files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config_dict(model.config, dtype), indent=2) + "\n")
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    for old in directory.glob("*.safetensors"):
        old.unlink()
    weight_map = {}
    for i, shard in enumerate(shards):
        name = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
    index = directory / "model.safetensors.index.json"
    if len(shards) > 1:
        index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2) + "\n")
    elif index.exists():
        index.unlink()
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            source = Path(tokenizer_dir) / name
            if source.is_file() and source.resolve() != (directory / name).resolve():
                (directory / name).write_bytes(source.read_bytes())

