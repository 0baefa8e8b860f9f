"""What one generation request returned, with the latency numbers clients and the load test report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Generation:
    """Text, timings (seconds, from the moment the request was sent) and counts of one request."""

    text: str = ""
    chunks: list[str] = field(default_factory=list)
    ttft_s: float | None = None
    e2e_s: float | None = None
    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def add(self, text: str) -> None:
        """Records one streamed piece of text."""
        if text and self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self._started
        if text:
            self.chunks.append(text)
            self.text += text

    def finish(self) -> "Generation":
        self.e2e_s = time.perf_counter() - self._started
        if self.ttft_s is None and self.text:
            self.ttft_s = self.e2e_s
        return self

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: (e2e - TTFT) / (tokens - 1)."""
        n = self.num_output_tokens
        if n is None or n < 2 or self.e2e_s is None or self.ttft_s is None:
            return None
        return (self.e2e_s - self.ttft_s) / (n - 1)

    @property
    def tokens_per_s(self) -> float | None:
        if not self.num_output_tokens or not self.e2e_s:
            return None
        return self.num_output_tokens / self.e2e_s

    def summary(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1e3:.1f} ms"
        rate = "-" if self.tokens_per_s is None else f"{self.tokens_per_s:.1f}"
        return (f"TTFT {ms(self.ttft_s)}  TPOT {ms(self.tpot_s)}  e2e {ms(self.e2e_s)}  "
                f"tokens in/out {self.num_input_tokens}/{self.num_output_tokens}  {rate} tokens/s  "
                f"finish {self.finish_reason}")
