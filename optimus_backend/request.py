"""One request's decoding state and the window rules of DESIGN §3 (shared by the engine and the reference).

Positions are absolute. ``cached_len`` positions have final KV. Block k is [kB, (k+1)B). For models with
shifted logits (causal AR twins, Fast-dLLM v2) the logits of fed position p predict position p + 1, so
the fed range is the target range moved back by one and ``cached_len`` stops one short of the first
MASK: the last committed token before it is fed again as the predictor (no KV is ever written twice).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .config import SamplingParams
from .model import ModelConfig


class StepKind(enum.Enum):
    PREFILL = "prefill"  # prompt positions in complete blocks: fed once, cached
    DECODE = "decode"  # a window with MASK slots to score
    CLEAN = "clean"  # BD-B / no-reuse: the finished block fed with real ids to write its KV


@dataclass(frozen=True)
class StepPlan:
    """What one request feeds in one step."""

    kind: StepKind
    fed_start: int
    fed_end: int
    scored: tuple[int, ...]  # target positions to score; row of p is p - shift - fed_start
    cache_end: int  # KV of [fed_start, cache_end) is written from this step's forward
    window: int = 0  # decode positions fed past the uncached prompt tail: min(c, the room before the block's end)

    @property
    def fed_len(self) -> int:
        return self.fed_end - self.fed_start


@dataclass
class Request:
    """State of one request: token ids with MASK slots, commit flags, cache progress, finish."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    block_size: int
    mask_id: int
    shift: int  # 1 when logits are shifted by one position
    eos_ids: frozenset[int] = frozenset()
    ids: list[int] = field(default_factory=list)
    committed: list[bool] = field(default_factory=list)
    commit_steps: dict[int, int] = field(default_factory=dict)  # position -> step of its commit
    cached_len: int = 0
    eos_pos: int | None = None  # the first committed EOS: slots after it are never scored
    steps: int = 0
    finished: bool = False
    finish_reason: str | None = None
    output_len: int | None = None  # generated tokens kept when finished (EOS excluded)
    _first_mask: int = field(default=0, init=False, repr=False)  # where the scan for the first MASK resumes

    @staticmethod
    def for_model(request_id: str, prompt_ids: list[int], params: SamplingParams, cfg: ModelConfig) -> "Request":
        """A request decoded with a checkpoint's block size, mask id, logits shift and EOS ids.

        Causal checkpoints have no mask id: -1 stands in, and their windows never feed a MASK slot.
        """
        mask_id = -1 if cfg.mask_token_id is None else cfg.mask_token_id
        return Request(request_id, list(prompt_ids), params, cfg.block_size, mask_id, int(cfg.logits_shift),
                       frozenset(cfg.eos_token_ids))

    def __post_init__(self) -> None:
        prompt_len = len(self.prompt_ids)
        self.ids = list(self.prompt_ids) + [self.mask_id] * self.params.max_tokens
        self.committed = [True] * prompt_len + [False] * self.params.max_tokens

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_ids)

    @property
    def total_len(self) -> int:
        return len(self.ids)

    @property
    def prefilled(self) -> bool:
        return self.steps > 0 or self.prefill_end() == 0

    def prefill_end(self) -> int:
        """Prompt positions cached by prefill: complete blocks (less the predictor for shifted models)."""
        return max(0, (self.prompt_len // self.block_size) * self.block_size - self.shift)

    def first_mask(self) -> int:
        """The first uncommitted position; commits never revert, so the scan resumes where it last stopped."""
        pos, total = self._first_mask, self.total_len
        while pos < total and self.committed[pos]:
            pos += 1
        self._first_mask = pos
        return pos

    def generated(self) -> list[int]:
        """The contiguous committed prefix of generated tokens (what may be streamed)."""
        end = self.first_mask() if self.output_len is None else self.prompt_len + self.output_len
        return self.ids[self.prompt_len:end]

    def plan(self, chunk: int, prefix_reuse: bool = True, out_block: bool = False,
             frame: tuple[int, int, int] | None = None) -> StepPlan:
        """The window of this step for chunk size ``chunk`` (DESIGN §3); ``frame``: this state's ``frame()``,
        if the caller has it."""
        if not self.prefilled:
            end = self.prefill_end()
            return StepPlan(StepKind.PREFILL, 0, end, (), end)
        if prefix_reuse:
            return self._plan_reuse(chunk, out_block, frame)
        return self._plan_block(chunk)

    def _scorable(self, positions: range, first_mask: int, out_block: bool) -> tuple[int, ...]:
        """MASK slots worth scoring: in the first block with MASKs (in-block) and before a committed EOS."""
        block_end = (first_mask // self.block_size + 1) * self.block_size
        end = min(positions.stop, self.eos_pos if self.eos_pos is not None else self.total_len)
        return tuple(p for p in range(positions.start, end)
                     if not self.committed[p] and (out_block or p < block_end))

    def frame(self, out_block: bool = False) -> tuple[int, int, int]:
        """(first MASK, tail, room) of a prefix-reuse window: chunk c feeds min(tail + c, room) positions (an
        uncached prompt tail rides along; the window ends at the first MASK block's end, or the sequence's with
        ``out_block``)."""
        first_mask = self.first_mask()
        limit = self.total_len if out_block else min((first_mask // self.block_size + 1) * self.block_size, self.total_len)
        target_start = self.cached_len + self.shift
        return first_mask, max(target_start, self.prompt_len) - target_start, limit - target_start

    def _plan_reuse(self, chunk: int, out_block: bool, frame: tuple[int, int, int] | None) -> StepPlan:
        first_mask, tail, room = self.frame(out_block) if frame is None else frame
        start = self.cached_len
        target_start = start + self.shift
        target_end = target_start + min(tail + chunk, room)
        fed_end = target_end - self.shift
        run_end = start
        while run_end < fed_end and self.committed[run_end]:
            run_end += 1
        cache_end = run_end - 1 if self.shift and run_end < fed_end else run_end
        scored = self._scorable(range(target_start, target_end), first_mask, out_block)
        return StepPlan(StepKind.DECODE, start, fed_end, scored, cache_end, target_end - target_start - tail)

    def _plan_block(self, chunk: int) -> StepPlan:
        block = (self.cached_len + self.shift) // self.block_size
        block_start = block * self.block_size
        block_end = min(block_start + self.block_size, self.total_len)
        if all(self.committed[block_start:block_end]):
            return StepPlan(StepKind.CLEAN, self.cached_len, block_end - self.shift, (), block_end - self.shift)
        masks = self._scorable(range(block_start, block_end), block_start, out_block=False)
        target_end = block_end if chunk >= len(masks) else masks[chunk - 1] + 1
        return StepPlan(StepKind.DECODE, self.cached_len, target_end - self.shift, masks[:chunk], self.cached_len,
                        len(masks[:chunk]))

    def apply(self, plan: StepPlan, commits: dict[int, int]) -> None:
        """Records this step's commits and KV writes, then checks EOS / length."""
        assert not commits or plan.kind is StepKind.DECODE and commits.keys() <= set(plan.scored)
        for pos, token in commits.items():
            assert not self.committed[pos]
            self.ids[pos] = token
            self.committed[pos] = True
            self.commit_steps[pos] = self.steps
            if token in self.eos_ids and not self.params.ignore_eos and (self.eos_pos is None or pos < self.eos_pos):
                self.eos_pos = pos
        self.cached_len = max(self.cached_len, plan.cache_end)
        self.steps += 1
        self._check_finish()

    def _check_finish(self) -> None:
        first_mask = self.first_mask()
        if self.eos_pos is not None and self.eos_pos <= first_mask:
            self.finish("stop", self.eos_pos - self.prompt_len)
            return
        if first_mask == self.total_len:
            self.finish("length", self.params.max_tokens)

    def finish(self, reason: str, output_len: int | None = None) -> None:
        """Ends the request; ``output_len`` generated tokens are kept (default: the committed prefix)."""
        if self.finished:
            return
        self.output_len = len(self.generated()) if output_len is None else output_len
        self.finished = True
        self.finish_reason = reason
