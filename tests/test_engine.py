"""The engine (paged, batched, varlen) commits exactly what the reference decoder commits."""

from __future__ import annotations

import logging
import queue
import time

import numpy as np
import pytest

from optimus_backend.config import PROJECT_ROOT, ConfigError, DecodingMode, EngineConfig, SamplingParams
from optimus_backend.controller import ChunkController
from optimus_backend.cuda_graphs import Buckets, graph_keys
from optimus_backend.detokenizer import Detokenizer
from optimus_backend import engine as engine_module
from optimus_backend.engine import Engine
from optimus_backend.runner import aligned_starts
from optimus_backend.reference import ReferenceDecoder
from optimus_backend.request import StepKind
from optimus_backend.tokenizer import Tokenizer

PROMPTS = [
    "what is 12 + 7 - 3? the",
    "to be",
    "the quick brown fox jumps over the lazy dog, to be or not to be",
    "stop here",
    "what is",
    "the lazy dog jumps",
    "that is the question: what is 12",
    "fox",
]


class ScriptedController(ChunkController):
    """Chunk sizes from a list, one per engine step (the last one repeats)."""

    def __init__(self, chunks: list[int]):
        super().__init__()
        self.chunks = chunks
        self.step = 0

    def choose(self, batch: int, prefix=None, step_tokens=None, spares=None) -> int:
        return self.chunks[min(self.step, len(self.chunks) - 1)]

    def observe(self, record) -> None:
        self.step += 1

    def can_admit(self, running: int) -> bool:
        return True


def make_engine(checkpoint, mode: str, **config) -> Engine:
    return Engine(EngineConfig(checkpoint=checkpoint, mode=mode, device="cpu", **config), start=False)


def run_to_end(engine: Engine, handles, arrivals: dict[int, list] | None = None) -> None:
    """Steps the engine by hand; ``arrivals`` maps a step to submissions made just before it."""
    step = 0
    while True:
        for prompt, params, out in (arrivals or {}).pop(step, []):
            out.append(engine.submit(prompt, params))
        engine._drain_inbox()
        if not engine.scheduler.running and not engine.scheduler.waiting and not arrivals:
            engine._catch_up()  # as the loop does when it goes idle
            return
        engine.step()
        step += 1


def commits_by_step(request) -> list[tuple[int, int, int]]:
    return sorted((step, pos, request.ids[pos]) for pos, step in request.commit_steps.items())


PARAMS = SamplingParams(max_tokens=19, ignore_eos=True, threshold=0.3)
CASES = [("bd", True, False), ("chunk:1", True, False), ("chunk:3", True, False), ("chunk:8", True, False),
         ("chunk:5", False, False), ("chunk:5", True, True)]


@pytest.mark.parametrize("mode,reuse,out_block", CASES)
def test_engine_matches_reference_for_every_mode(tiny_checkpoint, mode, reuse, out_block):
    engine = make_engine(tiny_checkpoint, mode, prefix_kv_reuse=reuse, out_block=out_block)
    handles = [engine.submit(p, PARAMS) for p in PROMPTS[:4]]
    run_to_end(engine, handles)
    reference = ReferenceDecoder(engine.model)
    for prompt, handle in zip(PROMPTS, handles):
        expected = reference.generate(engine.tokenizer.encode(prompt), PARAMS, DecodingMode.parse(mode),
                                      engine.tokenizer.decode, prefix_reuse=reuse, out_block=out_block)
        committed = {pos: r.step for r in expected.records for pos in r.committed}
        assert handle.request.commit_steps == committed
        assert handle.request.generated() == expected.token_ids
        assert handle.result()[0] == expected.text


def test_engine_follows_a_chunk_size_sequence_like_the_reference(tiny_checkpoint):
    schedule = [8, 1, 3, 8, 2, 5, 5, 1, 4, 8, 6, 2, 7, 3, 8, 1, 8, 8, 4, 2, 8, 3, 1, 6, 8, 8, 2, 8, 5, 8, 8, 8]
    engine = make_engine(tiny_checkpoint, "chunk:8")
    engine.controller = engine.scheduler.controller = ScriptedController(schedule)
    handle = engine.submit(PROMPTS[0], PARAMS)
    run_to_end(engine, [handle])
    expected = ReferenceDecoder(engine.model).generate(engine.tokenizer.encode(PROMPTS[0]), PARAMS,
                                                       DecodingMode.parse("chunk:8"), chunks=schedule.__getitem__)
    assert commits_by_step(handle.request) == sorted(
        (r.step, pos, tok) for r in expected.records for pos, tok in r.committed.items())


def test_ar_engine_matches_the_reference(tiny_ar_checkpoint):
    engine = make_engine(tiny_ar_checkpoint, "ar")
    handles = [engine.submit(p, PARAMS) for p in PROMPTS[:3]]
    run_to_end(engine, handles)
    for prompt, handle in zip(PROMPTS, handles):
        expected = ReferenceDecoder(engine.model).generate(engine.tokenizer.encode(prompt), PARAMS,
                                                           DecodingMode.parse("ar"))
        assert handle.request.generated() == expected.token_ids


@pytest.mark.parametrize("mode", ["bd", "chunk:4"])
def test_output_is_the_same_alone_and_batched_with_late_arrivals(tiny_checkpoint, mode):
    alone_engine = make_engine(tiny_checkpoint, mode)
    alone = alone_engine.submit(PROMPTS[0], PARAMS)
    run_to_end(alone_engine, [alone])
    engine = make_engine(tiny_checkpoint, mode)
    handles: list = []
    arrivals = {0: [(PROMPTS[1], SamplingParams(max_tokens=7, threshold=0.3), handles)]}
    for i, prompt in enumerate(PROMPTS[2:], start=1):
        arrivals.setdefault(i * 2, []).append((prompt, SamplingParams(max_tokens=5 + 4 * i, threshold=0.3), handles))
    arrivals[3] = [(PROMPTS[0], PARAMS, handles)]
    run_to_end(engine, handles, arrivals)
    target = next(h for h in handles if h.request.prompt_ids == alone.request.prompt_ids and h.request.params is PARAMS)
    assert len(handles) == 8
    assert target.request.generated() == alone.request.generated()
    assert target.request.commit_steps == alone.request.commit_steps
    assert all(h.request.finished for h in handles)


def test_abort_frees_every_page(tiny_checkpoint):
    engine = make_engine(tiny_checkpoint, "chunk:4")
    long = engine.submit(PROMPTS[2], SamplingParams(max_tokens=200, ignore_eos=True))
    other = engine.submit(PROMPTS[0], SamplingParams(max_tokens=100, ignore_eos=True))
    engine._drain_inbox()
    for _ in range(3):
        engine.step()
    assert engine.kv.pages_used > 0
    engine.abort(long.request_id)
    engine.abort(other.request_id)
    engine._drain_inbox()
    assert engine.kv.pages_used == 0 and len(engine.kv.free_pages) == engine.kv.num_pages
    assert [d for d in long][-1].finish_reason == "abort"


def test_abort_after_the_last_step_keeps_the_finished_result(tiny_checkpoint):
    """With deltas sent during the next step, a request can end before its final delta is out; an abort arriving
    then must not cut its text or turn its finish into an abort."""
    for prompt in PROMPTS:  # one whose last step adds text (the tiny model often ends on tokens that decode to "")
        whole = make_engine(tiny_checkpoint, "chunk:4")
        reference = whole.submit(prompt, PARAMS)
        run_to_end(whole, [reference])
        deltas = list(reference)
        if deltas[-1].text:
            break
    else:
        pytest.fail("no prompt whose last step adds text")
    engine = make_engine(tiny_checkpoint, "chunk:4")
    engine.overlap_host_work = True
    handle = engine.submit(prompt, PARAMS)
    engine._drain_inbox()
    while not handle.request.finished:
        engine.step()
    engine.abort(handle.request_id)
    engine._drain_inbox()
    text, final = handle.result()
    assert final.finish_reason == "length" and text == "".join(d.text for d in deltas)
    assert engine.stats()["total_aborted"] == 0 and engine.kv.pages_used == 0


def test_a_step_record_counts_every_decoding_request_and_windows_only_scored_ones(tiny_checkpoint):
    """The record's batch is the choice's batch, every request that decodes (one that only prefills is not in it, and
    one whose window only caches tokens is), so step-time factors are learned in the batch range they price; its
    windows are the scored requests' only (test_controller: a step with none scored teaches no acceptance)."""
    engine = make_engine(tiny_checkpoint, "chunk:2")
    schedule, planned = engine.scheduler.schedule, []

    def recording_schedule():
        chunk, batch = schedule()
        if batch:
            plans = [plan for _, plan in batch]
            planned.append((sum(p.kind is not StepKind.PREFILL for p in plans),
                            tuple(p.window for p in plans if p.scored)))
        return chunk, batch

    engine.scheduler.schedule = recording_schedule
    late: list = []
    arrivals = {3: [(prompt, PARAMS, late) for prompt in PROMPTS[2:4]]}
    run_to_end(engine, [engine.submit(prompt, PARAMS) for prompt in PROMPTS[:2]], arrivals)
    history = list(engine.controller.history)
    assert [(record.batch, record.windows) for record in history] == planned
    assert any(len(record.windows) < record.batch for record in history)  # a window that only caches tokens


def elastic_engine(checkpoint) -> Engine:
    """An elastic engine on the CPU that overlaps its host work as it does on a GPU."""
    engine = make_engine(checkpoint, "elastic", profile_path=PROJECT_ROOT / "docs/benchmarks/profile_optimus-tiny.json")
    engine.overlap_host_work = True
    return engine


def test_an_overlapped_observation_carries_its_own_steps_choice(tiny_checkpoint):
    """On a GPU the controller observes a step while the next one runs, after the next choice: each record must
    still carry its own step's chunk and prices, every step is observed once, in order, and the last one when the
    engine goes idle."""
    engine = elastic_engine(tiny_checkpoint)
    controller, scheduled = engine.controller, []
    schedule = engine.scheduler.schedule

    def recording_schedule():
        chunk, batch = schedule()
        if batch:
            scheduled.append((chunk, controller.last_predicted_ms, controller.last_profiled_ms))
        return chunk, batch

    engine.scheduler.schedule = recording_schedule
    run_to_end(engine, [engine.submit(prompt, PARAMS) for prompt in PROMPTS[:4]])
    history = list(controller.history)
    assert len(set(scheduled)) > 1 and [record.step for record in history] == list(range(engine.steps))
    assert [(record.chunk, record.predicted_ms, record.profiled_ms) for record in history] == scheduled
    assert controller.steps == engine.steps


def test_requests_can_share_one_delta_queue(tiny_checkpoint):
    """Deltas put on a queue shared by several requests carry their request_id; each request's deltas, in order,
    hold exactly its committed tokens and end with one finished delta."""
    engine = make_engine(tiny_checkpoint, "chunk:4")
    shared: queue.SimpleQueue = queue.SimpleQueue()
    handles = [engine.submit(prompt, PARAMS, f"shared-{i}", deltas=shared) for i, prompt in enumerate(PROMPTS[:3])]
    engine.run_until_idle()
    tokens: dict[str, list[int]] = {handle.request_id: [] for handle in handles}
    finished: dict[str, int] = dict.fromkeys(tokens, 0)
    while not shared.empty():
        delta = shared.get()
        assert finished[delta.request_id] == 0  # nothing after the final delta
        tokens[delta.request_id] += delta.token_ids
        finished[delta.request_id] += delta.finished
    assert all(count == 1 for count in finished.values())
    assert all(tokens[h.request_id] == h.request.generated() and len(tokens[h.request_id]) == 19 for h in handles)


def test_run_until_idle_steps_by_hand_and_delivers_the_last_deltas(tiny_checkpoint):
    engine = make_engine(tiny_checkpoint, "chunk:4")
    engine.overlap_host_work = True  # the last step's deltas are pending until the engine goes idle
    handles = [engine.submit(prompt, PARAMS) for prompt in PROMPTS[:2]]
    assert engine.run_until_idle(3) == 3 and engine.steps == 3
    assert not all(handle.request.finished for handle in handles)
    taken = engine.run_until_idle()
    assert taken > 0 and engine.steps == 3 + taken and not engine.scheduler.running
    alone = make_engine(tiny_checkpoint, "chunk:4")
    for prompt, handle in zip(PROMPTS[:2], handles):
        delivered = []  # already queued: nothing is left to send once the engine is idle
        while not handle.deltas.empty():
            delivered.append(handle.deltas.get_nowait())
        single = alone.submit(prompt, PARAMS)
        run_to_end(alone, [single])
        text, final = single.result()
        assert delivered[-1] == final and "".join(d.text for d in delivered) == text


def test_page_exhaustion_queues_instead_of_failing(tiny_checkpoint):
    page_bytes = 2 * 2 * 16 * 2 * 16 * 4  # 2 (k,v) x layers x page x kv heads x head dim x fp32
    engine = make_engine(tiny_checkpoint, "chunk:4", kv_budget_bytes=page_bytes * 6)
    params = SamplingParams(max_tokens=30, ignore_eos=True, threshold=0.3)  # 3 pages each with the prompt
    handles = [engine.submit(p, params) for p in PROMPTS[3:7]]
    engine._drain_inbox()
    engine.step()
    assert len(engine.scheduler.running) == 2 and len(engine.scheduler.waiting) == 2
    run_to_end(engine, handles)
    for prompt, handle in zip(PROMPTS[3:7], handles):
        alone = make_engine(tiny_checkpoint, "chunk:4")
        single = alone.submit(prompt, params)
        run_to_end(alone, [single])
        assert handle.request.generated() == single.request.generated()
    assert engine.kv.pages_used == 0


def test_stop_string_split_across_steps_is_caught(tiny_checkpoint):
    engine = make_engine(tiny_checkpoint, "chunk:2")
    free = engine.submit(PROMPTS[0], PARAMS)
    run_to_end(engine, [free])
    deltas = [d.text for d in free]
    boundary = next(i for i in range(len(deltas) - 1) if deltas[i] and deltas[i + 1])
    stop = deltas[boundary][-1:] + deltas[boundary + 1][:1]
    text = "".join(deltas)
    engine.overlap_host_work = True  # the GPU's order: deltas go out while the next step runs
    stopped = engine.submit(PROMPTS[0], SamplingParams(max_tokens=19, ignore_eos=True, threshold=0.3, stop=[stop]))
    companion = engine.submit(PROMPTS[1], PARAMS)
    run_to_end(engine, [stopped, companion])
    result, final = stopped.result()
    assert final.finish_reason == "stop" and result == text[:text.find(stop)]
    # the stop is found while the next step runs: that step's commits are dropped and its pages freed, and the
    # request beside it decodes as it would alone
    assert stopped.request.steps < free.request.steps
    alone = make_engine(tiny_checkpoint, "chunk:2")
    single = alone.submit(PROMPTS[1], PARAMS)
    run_to_end(alone, [single])
    assert companion.result()[0] == single.result()[0]
    assert companion.request.commit_steps == single.request.commit_steps
    assert engine.kv.pages_used == 0 and engine.stats()["total_finished"] == 3


class WholeTextDetokenizer(Detokenizer):
    """The reference: decodes the whole prefix at every update."""

    def text(self, token_ids: list[int]) -> str:
        return self.decode(token_ids)


@pytest.mark.parametrize("seed", range(4))
def test_incremental_detokenizer_matches_decoding_the_whole_prefix(seed):
    """Decoding only the new tokens (plus context) gives the whole prefix's text at every step, and the same deltas
    as the reference, for the shipped byte-level BPE tokenizer on text with multi-byte characters and on random ids
    (which cut UTF-8 sequences anywhere)."""
    tokenizer = Tokenizer(PROJECT_ROOT / "models/optimus-tiny")
    rng = np.random.default_rng(seed)
    text_ids = tokenizer.encode("naïve café: 中文字符 and emoji 🙂🚀, then the lazy dog " * 6)
    random_ids = rng.integers(0, tokenizer.vocab_size, 300).tolist()
    for ids, stops in [(text_ids, []), (random_ids, []), (text_ids, ["lazy d", "字符"]), (random_ids, ["e t"])]:
        decoded = {"fast": 0, "reference": 0}  # tokens each one decoded

        def counting(name):
            def decode(token_ids):
                decoded[name] += len(token_ids)
                return tokenizer.decode(token_ids)
            return decode

        fast, reference = Detokenizer(counting("fast"), stops), WholeTextDetokenizer(counting("reference"), stops)
        end = 0
        while end < len(ids) and not reference.stopped:
            end = min(end + int(rng.integers(1, 9)), len(ids))
            final = end == len(ids)
            assert fast.update(ids[:end], final) == reference.update(ids[:end], final)
            counted = decoded["fast"]
            assert fast.text(ids[:end]) == tokenizer.decode(ids[:end])
            decoded["fast"] = counted  # only the updates' decoding is compared
        assert fast.stopped == reference.stopped
        if not stops:  # the whole run: the reference decodes O(n^2) tokens, the incremental one O(n)
            assert decoded["fast"] < decoded["reference"] / 4


def test_detokenizer_holds_back_a_possible_stop_prefix():
    detok = Detokenizer(lambda ids: "".join(chr(i) for i in ids), ["cd"])
    assert detok.update([ord("a"), ord("b"), ord("c")]) == "ab"
    assert detok.update([ord(c) for c in "abce"]) == "ce" and not detok.stopped
    detok = Detokenizer(lambda ids: "".join(chr(i) for i in ids), ["cd"])
    assert detok.update([ord(c) for c in "abc"]) == "ab"
    assert detok.update([ord(c) for c in "abcdx"]) == "" and detok.stopped


@pytest.mark.parametrize("params,field", [
    (dict(max_tokens=-1), "max_tokens"), (dict(max_tokens=0), "max_tokens"), (dict(threshold=0.0), "threshold"),
    (dict(threshold=1.5), "threshold"), (dict(top_p=0), "top_p"), (dict(stop=[""]), "stop"),
])
def test_bad_params_raise_a_clear_error(tiny_checkpoint, params, field):
    engine = make_engine(tiny_checkpoint, "chunk:4")
    with pytest.raises(ConfigError, match=f"^{field}:"):
        engine.submit("what is", SamplingParams(**params))


def test_unknown_mode_and_mismatched_checkpoint(tiny_checkpoint, tiny_ar_checkpoint):
    with pytest.raises(ConfigError, match="^mode:"):
        make_engine(tiny_checkpoint, "chunky")
    with pytest.raises(ConfigError, match="^mode:"):
        make_engine(tiny_ar_checkpoint, "bd")
    engine = make_engine(tiny_checkpoint, "chunk:4")
    with pytest.raises(ConfigError, match="^text_input:"):
        engine.submit("", SamplingParams())
    with pytest.raises(ConfigError, match="^text_input:.*context"):
        engine.submit("what is " * 2000, SamplingParams())


def test_threaded_engine_streams_and_shuts_down(tiny_checkpoint):
    engine = Engine(EngineConfig(checkpoint=tiny_checkpoint, mode="chunk:4", device="cpu"))
    try:
        texts = engine.generate(PROMPTS[:4], PARAMS)
        manual = make_engine(tiny_checkpoint, "chunk:4")
        handles = [manual.submit(p, PARAMS) for p in PROMPTS[:4]]
        run_to_end(manual, handles)
        assert texts == [h.result()[0] for h in handles]
        assert engine.stats()["kv_pages_used"] == 0 and engine.stats()["total_finished"] == 4
    finally:
        engine.shutdown()


@pytest.mark.parametrize("causal,out_block", [(False, False), (False, True), (True, False)])
def test_window_predicts_what_each_chunk_feeds(causal, out_block):
    """The scheduler prices chunk sizes with Request.window: min(tail + c, room) must be what plan(c) feeds, at
    every state a request passes through (random commits, prompt tails, windows cut at block ends)."""
    import random

    from conftest import tiny_model_config
    from optimus_backend.request import Request, StepKind

    rng = random.Random(0)
    cfg = tiny_model_config(50, causal)
    request = Request.for_model("r", [rng.randrange(3, 50) for _ in range(13)], SamplingParams(max_tokens=40), cfg)
    request.apply(request.plan(1), {})  # prefill
    while not request.finished:
        frame = request.frame(out_block)
        for chunk in (1, 3, 8, 20):
            plan = request.plan(chunk, out_block=out_block)
            assert plan.kind is StepKind.DECODE and plan.fed_len == min(frame[1] + chunk, frame[2])
            assert request.plan(chunk, out_block=out_block, frame=frame) == plan  # the scheduler's shortcut
        plan = request.plan(rng.choice((1, 3, 8)), out_block=out_block)
        picks = [p for p in plan.scored if rng.random() < 0.5] or list(plan.scored[:1])
        request.apply(plan, {p: rng.randrange(3, 50) for p in picks})


def test_fed_tokens_sums_every_window_for_every_chunk():
    """The scheduler's fed tokens per chunk size (sorted spare room, no [requests, chunks] array) equal the sum of
    min(tail + c, room) over the requests, for random frames including rooms below the tail and repeated values."""
    from optimus_backend.scheduler import fed_tokens, spare_rooms

    rng, chunks = np.random.default_rng(3), np.arange(1, 33)
    for _ in range(300):
        count = int(rng.integers(1, 200))
        tails = rng.integers(0, 40, count)
        rooms = tails + rng.integers(-3, 40, count)
        frames = [(0, int(t), int(r)) for t, r in zip(tails, rooms)]
        expected = np.minimum(tails[:, None] + chunks[None, :], rooms[:, None]).sum(axis=0)
        assert fed_tokens(spare_rooms(frames), int(tails.sum()), chunks.tolist()) == expected.tolist()


@pytest.mark.parametrize("max_requests,max_tokens", [(128, 4096), (37, 1000), (256, 8192)])
def test_padded_tokens_agree_with_the_bucket_each_step_replays(max_requests, max_tokens):
    """The controller prices each c at ``Buckets.padded`` (many token counts at once); the runner replays
    ``Buckets.key``. They must name the same size, eager steps (too many requests or tokens) included."""
    buckets, rng = Buckets.for_limits(max_requests, max_tokens), np.random.default_rng(max_tokens)
    for requests in [1, 2, max_requests - 1, max_requests, max_requests + 1, *rng.integers(1, 2 * max_requests, 20)]:
        tokens = np.concatenate([rng.integers(1, 2 * max_tokens, 200), np.array(buckets.tokens), [max_tokens + 1]])
        keys = [buckets.key(int(requests), int(t)) for t in tokens]
        expected = [t if key is None else key[1] for t, key in zip(tokens.tolist(), keys)]
        assert buckets.padded(int(requests), tokens.tolist()) == expected


@pytest.mark.parametrize("max_requests,max_tokens,block_size,group", [(128, 4096, 32, 2), (37, 1000, 4, 4),
                                                                     (256, 8192, 32, 4)])
def test_every_step_that_fits_a_bucket_has_a_graph_for_its_q_tile(max_requests, max_tokens, block_size, group):
    """Graphs are captured at start for ``graph_keys`` only: any step a bucket holds (windows of any mix of lengths,
    prompts longer than a block included) must find its (bucket, q tile) among them, or it would run eagerly."""
    from kernels.chunk_attention import q_tile_rows

    buckets, rng = Buckets.for_limits(max_requests, max_tokens), np.random.default_rng(block_size)
    tile_rows = lambda window: q_tile_rows(window, group)  # noqa: E731
    keys = graph_keys(buckets, block_size, tile_rows)
    assert len(keys) == len(set(keys))
    needed = set()
    for _ in range(3000):
        requests = int(rng.choice([1, 2, rng.integers(1, max_requests + 1)]))
        longest = int(rng.integers(1, 3 * block_size))
        windows = rng.integers(1, longest + 1, requests)
        windows[rng.integers(requests)] = longest
        key = buckets.key(requests, int(windows.sum()))
        if key is not None:
            needed.add((*key, tile_rows(min(longest, block_size))))
    assert needed <= set(keys)
    assert {key[2] for key in needed} == {key[2] for key in keys}  # the steps drawn reach every tile captured


def test_kv_page_tables_follow_admissions_growth_and_releases(tiny_checkpoint):
    """Random admits, growth and releases: every live request's pages are its own (no page held twice), the step's
    page table starts each request's row with its pages and pads it only with pages it holds or 0, and every page is
    back in the pool at the end."""
    kv = make_engine(tiny_checkpoint, "chunk:4").kv
    rng, live, held = np.random.default_rng(3), {}, {}  # request -> reserved positions, -> positions ensured
    for step in range(400):
        if live and rng.random() < 0.3:
            request = str(rng.choice(sorted(live)))
            kv.release(request)
            del live[request], held[request]
        elif rng.random() < 0.5 and kv.can_admit(positions := int(rng.integers(1, 200))):
            kv.admit(f"r{step}", positions)
            live[f"r{step}"], held[f"r{step}"] = positions, 0
        for request in live:
            held[request] = min(live[request], held[request] + int(rng.integers(0, 40)))
            kv.ensure(request, held[request])
        pages = {request: kv.pages(request).tolist() for request in live}
        assert all(len(pages[r]) == kv.pages_needed(held[r]) for r in live)
        owned = {r: kv.table_rows[kv.rows[r], :kv.reserved[r]].tolist() for r in live}
        assert all(owned[r][:len(pages[r])] == pages[r] and len(owned[r]) == kv.pages_needed(live[r]) for r in live)
        flat = [page for table in owned.values() for page in table]
        assert len(flat) == len(set(flat)) == kv.pages_used
        if live:
            order = list(rng.permutation(sorted(live)))
            width = max(1, *(len(pages[r]) for r in order))
            for request, row in zip(order, kv.page_table(order).tolist()):
                assert len(row) == width and row[:len(pages[request])] == pages[request]
                assert set(row[len(pages[request]):]) <= set(owned[request]) | {0}
    for request in list(live):
        kv.release(request)
    assert kv.pages_used == 0 and kv.unreserved_pages() == kv.num_pages


def test_kv_pages_of_a_request_are_one_run_however_requests_grow(tiny_checkpoint):
    """Requests that grow a page at a time in lockstep still get one run of neighbouring pages each (the attention
    reads scattered pages slower), and a released run goes whole, in order, to the next request that fits it."""
    kv = make_engine(tiny_checkpoint, "chunk:4").kv
    positions = 10 * kv.page_size
    for name in "abc":
        kv.admit(name, positions)
    for grown in range(1, positions + 1):
        for name in "abc":
            kv.ensure(name, grown)
    runs = {name: kv.pages(name).tolist() for name in "abc"}
    for run in runs.values():
        assert run == list(range(run[0], run[0] + 10))
    kv.release("b")
    kv.admit("d", positions - kv.page_size)
    kv.ensure("d", positions - kv.page_size)
    assert kv.pages("d").tolist() == runs["b"][:9]


def test_a_stalled_step_is_logged_with_what_it_ran(tiny_checkpoint, caplog, monkeypatch):
    engine = make_engine(tiny_checkpoint, "chunk:4")
    handles = [engine.submit(prompt, PARAMS) for prompt in PROMPTS[:2]]
    engine.run_until_idle(4)
    collect = engine.runner.collect
    slow_ms = 1.5 * max(engine_module.SLOW_STEP_MS, engine_module.SLOW_STEP_FACTOR * max(engine._recent_step_ms))

    def stalled(flight):
        time.sleep(slow_ms / 1e3)
        return collect(flight)

    monkeypatch.setattr(engine.runner, "collect", stalled)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="optimus.engine"):
        engine.run_until_idle(1)
    (record,) = [r for r in caplog.records if "slow step" in r.getMessage()]
    assert "2 requests, chunk 4" in record.getMessage()
    monkeypatch.setattr(engine.runner, "collect", collect)
    run_to_end(engine, handles)
    assert all(handle.request.finished for handle in handles)


def test_upload_fields_start_aligned_and_do_not_overlap():
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = rng.integers(0, 40, size=7).tolist()
        starts = aligned_starts(sizes)
        assert all(start % 2 == 0 for start in starts)  # int64 elements: 16-byte aligned
        assert all(starts[i] + sizes[i] <= starts[i + 1] <= starts[i] + sizes[i] + 1 for i in range(len(sizes)))


@pytest.mark.parametrize("shift,out_block", [(0, False), (1, False), (0, True)])
def test_spare_room_predicts_every_chunks_window(shift, out_block):
    """The spare room the controller prices windows by (room less the uncached prompt tail, as the scheduler gives
    it) is, for every c, the window the plan really feeds: min(c, spare), through random commits (out of order too,
    at least one a step, as every rule commits), prompt tails and block ends."""
    from optimus_backend.request import Request
    from optimus_backend.scheduler import spare_rooms

    rng = np.random.default_rng(shift)
    for trial in range(30):
        block = int(rng.choice([4, 8, 16]))
        request = Request(f"r{trial}", list(range(1, int(rng.integers(3, 20)))), SamplingParams(max_tokens=40),
                          block, mask_id=0, shift=shift)
        request.cached_len, request.steps = request.prefill_end(), 1
        while not request.finished:
            frame = request.frame(out_block)
            (spare,) = spare_rooms([frame])
            plans = [request.plan(c, True, out_block, frame) for c in range(1, 2 * block + 1)]
            assert [p.window for p in plans] == [min(c, spare) for c in range(1, 2 * block + 1)]
            plan = plans[int(rng.integers(0, len(plans)))]
            picked = [p for p in plan.scored if rng.random() < 0.4] or list(plan.scored[-1:])  # a step commits one
            request.apply(plan, {p: 5 for p in picked})
