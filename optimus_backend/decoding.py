"""Decoding rules: given the scored MASK slots of one request, which to commit and with which tokens.

A rule is one small class behind one interface, picked by name (``RULES``); new rules don't touch the
scheduler or the runner.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from .config import ConfigError, SamplingParams
from .replay import ReplayRule


def choose_tokens(logits: Tensor, params: SamplingParams, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Rows of logits [R, V] -> (token [R], confidence [R]); greedy when temperature is 0.

    Confidence is the probability of the chosen token under the (temperature / top-p shaped) distribution.
    """
    logits = logits.float()
    if params.temperature == 0:
        probs = torch.softmax(logits, dim=-1)
        confidence, token = probs.max(dim=-1)
        return token, confidence
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < params.top_p
        filtered = torch.zeros_like(probs).scatter(-1, order, sorted_probs * keep)
        probs = filtered / filtered.sum(-1, keepdim=True)
    token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(probs.device)
    return token, probs.gather(-1, token.unsqueeze(-1)).squeeze(-1)


class DecodingRule(Protocol):
    def select(self, confidence: list[float], threshold: float) -> list[int]:
        """Indices (into the scored slots) to commit this step; never empty when slots exist."""


class LowConfidenceDynamic:
    """Commit every slot with confidence >= threshold, else the single most confident one."""

    def select(self, confidence: list[float], threshold: float) -> list[int]:
        if not confidence:
            return []
        chosen = [i for i, conf in enumerate(confidence) if conf >= threshold]
        return chosen or [max(range(len(confidence)), key=confidence.__getitem__)]


RULES: dict[str, type] = {"low_confidence_dynamic": LowConfidenceDynamic, "replay": ReplayRule}


def make_rule(name: str) -> DecodingRule:
    """A rule by name; ``"<rule>:<argument>"`` passes the argument (e.g. ``"replay:stats.json"``)."""
    kind, _, argument = name.partition(":")
    if kind not in RULES:
        raise ConfigError(f"decoding_rule: unknown rule {name!r} (known: {', '.join(RULES)})")
    return RULES[kind](argument) if argument else RULES[kind]()
