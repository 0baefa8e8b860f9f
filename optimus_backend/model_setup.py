"""Device, dtype and model construction for an EngineConfig (checkpoint or named random shape)."""

from __future__ import annotations

import torch

from .checkpoint import load_checkpoint, random_model
from .config import ConfigError, EngineConfig
from .model import Transformer
from .tokenizer import Tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(config: EngineConfig) -> tuple[torch.device, torch.dtype]:
    """(device, dtype): "auto" picks CUDA with bfloat16 when available, else CPU with float32."""
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: CUDA was asked for but is not available")
    if config.dtype == "auto":
        return device, torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, DTYPES[config.dtype]


def load_model(config: EngineConfig, device: torch.device, dtype: torch.dtype) -> tuple[Transformer, Tokenizer | None]:
    """The checkpoint's model and tokenizer, or a random-weight model of a named shape (no tokenizer)."""
    if config.shape is not None:
        return random_model(config.shape, device, dtype, config.block_size or 32), None
    return load_checkpoint(config.checkpoint, device, dtype)


def model_name(config: EngineConfig) -> str:
    return config.shape if config.shape is not None else config.checkpoint.name
