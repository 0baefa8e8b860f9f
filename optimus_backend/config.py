"""Every setting of Optimus, each with one default: the CLI, the Triton adapter and tests build these."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = PROJECT_ROOT / "models" / "optimus-tiny"
DEFAULT_AR_CHECKPOINT = PROJECT_ROOT / "models" / "optimus-tiny-ar"


class ConfigError(ValueError):
    """A bad setting or request parameter; the message names the field."""


@dataclass(frozen=True)
class DecodingMode:
    """How many positions a request feeds per step.

    kind: "ar" (c = 1, causal checkpoint), "bd" (whole block, BD-B), "chunk" (fixed window c),
    "elastic" (the controller picks c every step).
    """

    kind: str
    chunk: int | None = None

    @staticmethod
    def parse(text: str) -> "DecodingMode":
        text = text.strip().lower()
        if text in ("ar", "bd", "elastic"):
            return DecodingMode(text)
        if text.startswith("bd") and text[2:].isdigit():
            return DecodingMode("bd")
        if text.startswith("chunk:") and text[6:].isdigit() and int(text[6:]) >= 1:
            return DecodingMode("chunk", int(text[6:]))
        raise ConfigError(f"mode: unknown decoding mode {text!r} (expected ar, bd, chunk:N or elastic)")

    def __str__(self) -> str:
        return f"chunk:{self.chunk}" if self.kind == "chunk" else self.kind


@dataclass
class SamplingParams:
    """Per-request generation parameters (Triton's vLLM schema plus Optimus extras)."""

    max_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    threshold: float = 0.9
    ignore_eos: bool = False

    def validate(self, max_tokens_limit: int | None = None) -> "SamplingParams":
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens <= 0:
            raise ConfigError(f"max_tokens: must be a positive integer, got {self.max_tokens!r}")
        if max_tokens_limit is not None and self.max_tokens > max_tokens_limit:
            raise ConfigError(f"max_tokens: {self.max_tokens} exceeds the limit {max_tokens_limit}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError("stop: must be a string or a list of non-empty strings")
        if not isinstance(self.threshold, (int, float)) or not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold: must be in (0, 1], got {self.threshold!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0, got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.ignore_eos, bool):
            raise ConfigError(f"ignore_eos: must be a boolean, got {self.ignore_eos!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed: must be an integer, got {self.seed!r}")
        return self

    @staticmethod
    def from_dict(values: dict, max_tokens_limit: int | None = None) -> "SamplingParams":
        """Builds and validates params from a JSON-like dict; unknown keys are an error naming the key."""
        known = {f.name: f for f in dataclasses.fields(SamplingParams)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown sampling parameter (known: {', '.join(sorted(known))})")
        return SamplingParams(**values).validate(max_tokens_limit)

    @staticmethod
    def from_json(text: str, max_tokens_limit: int | None = None) -> "SamplingParams":
        try:
            values = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"sampling_parameters: malformed JSON ({exc})") from exc
        if not isinstance(values, dict):
            raise ConfigError("sampling_parameters: must be a JSON object")
        return SamplingParams.from_dict(values, max_tokens_limit)


@dataclass
class EngineConfig:
    """Server-side settings of one engine instance."""

    checkpoint: Path | None = DEFAULT_CHECKPOINT
    shape: str | None = None  # a named random-weight shape (e.g. "qwen3-8b") instead of a checkpoint
    mode: str = "elastic"
    device: str = "auto"  # "auto" picks cuda when available
    dtype: str = "auto"  # "auto": bfloat16 on cuda, float32 on cpu
    block_size: int | None = None  # None: the checkpoint's
    page_size: int = 16
    kv_budget_bytes: int | None = None  # None: kv_memory_fraction of free GPU memory, or kv_cpu_bytes on CPU
    kv_memory_fraction: float = 0.5
    kv_cpu_bytes: int = 256 * 2**20
    max_running: int = 64
    max_tokens_limit: int = 4096
    apply_chat_template: bool = True  # wrap text prompts in the checkpoint's chat template, when it has one
    prefix_kv_reuse: bool = True
    out_block: bool = False
    decoding_rule: str = "low_confidence_dynamic"
    tpot_slo_ms: float | None = None
    profile_path: Path | None = None  # None: the per model+device+dtype cache file
    use_kernels: bool = True  # Triton kernels on CUDA; PyTorch references on CPU
    cuda_graphs: bool = True  # replay captured forwards for steps of up to graph_max_tokens tokens
    graph_max_tokens: int = 8192
    seed: int = 0

    def decoding_mode(self) -> DecodingMode:
        return DecodingMode.parse(self.mode)

    def validate(self) -> "EngineConfig":
        self.decoding_mode()
        if self.checkpoint is None and self.shape is None:
            raise ConfigError("checkpoint: give a checkpoint directory or a named shape")
        if self.page_size <= 0:
            raise ConfigError(f"page_size: must be positive, got {self.page_size}")
        if self.max_running <= 0:
            raise ConfigError(f"max_running: must be positive, got {self.max_running}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype: unknown dtype {self.dtype!r}")
        if self.tpot_slo_ms is not None and self.tpot_slo_ms <= 0:
            raise ConfigError(f"tpot_slo_ms: must be positive, got {self.tpot_slo_ms}")
        return self


def check_mode(model_config, mode: DecodingMode) -> None:
    """AR mode needs a causal checkpoint, and every other mode a block-diffusion one."""
    if (mode.kind == "ar") != model_config.causal:
        kind = "a causal (AR) checkpoint" if mode.kind == "ar" else "a block-diffusion checkpoint"
        raise ConfigError(f"mode: {mode} needs {kind}; this checkpoint is "
                          f"{'causal' if model_config.causal else 'block-diffusion'}")
