"""Incremental detokenization of the committed prefix, with stop strings matched across step boundaries."""

from __future__ import annotations

from typing import Callable


class Detokenizer:
    """Turns the growing committed prefix into text deltas.

    Text that could still be the start of a stop string, or that ends in an incomplete UTF-8 sequence,
    is held back until the next update decides it.
    """

    def __init__(self, decode: Callable[[list[int]], str], stops: list[str]):
        self.decode = decode
        self.stops = stops
        self.emitted = 0  # characters of the decoded text already sent
        self.stopped = False

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of a stop string (or '\ufffd' tail)."""
        hold = len(text) - len(text.rstrip("\ufffd"))
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        return hold

    def update(self, token_ids: list[int], final: bool = False) -> str:
        """New text for the committed prefix ``token_ids``; sets ``stopped`` when a stop string appears."""
        text = self.decode(token_ids)
        hits = [text.find(stop) for stop in self.stops if stop in text]
        if hits:
            self.stopped = True
            end = min(hits)
        else:
            end = len(text) if final else len(text) - self._held_back(text)
        end = max(end, self.emitted)
        delta, self.emitted = text[self.emitted:end], end
        return delta
