"""Incremental detokenization of the committed prefix, with stop strings matched across step boundaries."""

from __future__ import annotations

from typing import Callable

CONTEXT_TOKENS = 4  # settled tokens decoded again before new ones, so a tokenizer joins them as in the whole text


class Detokenizer:
    """Turns the growing committed prefix into text deltas.

    Each update decodes only the tokens not yet settled plus a few settled ones as context (not the whole
    prefix again, which would cost O(length) per step). Text that could still be the start of a stop string,
    or that ends in an incomplete UTF-8 sequence, is held back until the next update decides it.
    """

    def __init__(self, decode: Callable[[list[int]], str], stops: list[str]):
        self.decode = decode
        self.stops = stops
        self.longest_stop = max((len(stop) for stop in stops), default=0)
        self.settled_text = ""  # the text of token_ids[:settled], final
        self.settled = 0
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

    def text(self, token_ids: list[int]) -> str:
        """decode(token_ids), decoding only what is new since the last settled point (plus its context)."""
        if len(token_ids) < self.settled:  # the prefix shrank (a finish trimmed it): start over
            self.settled_text, self.settled = "", 0
        start = max(self.settled - CONTEXT_TOKENS, 0)
        context = self.decode(token_ids[start:self.settled])
        window = self.decode(token_ids[start:])
        if not window.startswith(context):  # the tokenizer re-joined across the context: decode it all
            self.settled_text, self.settled = "", 0
            return self.text(token_ids)
        text = self.settled_text + window[len(context):]
        if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence may still change: not settled
            self.settled_text, self.settled = text, len(token_ids)
        return text

    def update(self, token_ids: list[int], final: bool = False) -> str:
        """New text for the committed prefix ``token_ids``; sets ``stopped`` when a stop string appears."""
        text = self.text(token_ids)
        search_from = max(self.emitted - self.longest_stop + 1, 0)
        hits = [at for at in (text.find(stop, search_from) for stop in self.stops) if at >= 0]
        if hits:
            self.stopped = True
            end = min(hits)
        else:
            end = len(text) if final else len(text) - self._held_back(text)
        end = max(end, self.emitted)
        delta, self.emitted = text[self.emitted:end], end
        return delta
