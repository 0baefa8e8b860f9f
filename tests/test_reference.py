"""The reference decoder pins down DESIGN §3: BD-B rule, chunked windows, prefix-KV reuse, AR, stops."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from torch import nn

from optimus_backend.checkpoint import load_checkpoint
from optimus_backend.config import DecodingMode, SamplingParams
from optimus_backend.model import ModelConfig
from optimus_backend.reference import ReferenceDecoder

VOCAB = 50
MASK, EOS = 2, 1


class LogitsOracle(nn.Module):
    """Stands in for a model: scripted (token, confidence) per (decode step, position)."""

    def __init__(self, script: dict[tuple[int, int], tuple[int, float]], block_size: int = 4):
        super().__init__()
        self.config = ModelConfig(vocab_size=VOCAB, hidden_size=1, intermediate_size=1, num_hidden_layers=1,
                                  num_attention_heads=1, num_key_value_heads=1, head_dim=2, model_type="sdar",
                                  block_size=block_size, mask_token_id=MASK, eos_token_ids=[EOS])
        self.anchor = nn.Parameter(torch.zeros(1))
        self.script = script
        self.forwards = 0
        self.fed: list[list[int]] = []

    def forward(self, ids, positions, attention):
        self.forwards += 1
        self.fed.append(ids[0].tolist())
        return positions.unsqueeze(-1).float()

    def logits(self, hidden):
        rows = []
        for position in hidden[:, 0].tolist():
            token, conf = self.script.get((self.forwards, int(position)), (7, 0.05))
            row = torch.zeros(VOCAB)
            row[token] = math.log(conf * (VOCAB - 1) / (1 - conf))
            rows.append(row)
        return torch.stack(rows)


def test_bd_commits_above_threshold_else_the_most_confident_then_clean_pass():
    # prompt of 4 = one complete block (prefill is forward 1); generation block [4, 8)
    script = {
        (2, 4): (10, 0.95), (2, 5): (11, 0.50), (2, 6): (12, 0.92), (2, 7): (13, 0.30),
        (3, 5): (21, 0.40), (3, 7): (23, 0.60),
        (4, 5): (31, 0.20),
    }
    oracle = LogitsOracle(script)
    result = ReferenceDecoder(oracle).generate([5, 6, 7, 8], SamplingParams(max_tokens=8, ignore_eos=True),
                                               DecodingMode.parse("bd"))
    records = result.records
    assert [r.kind for r in records[:5]] == ["prefill", "decode", "decode", "decode", "clean"]
    assert records[0].kv_written == (0, 4)
    assert records[1].committed == {4: 10, 6: 12}  # both >= 0.9
    assert records[2].committed == {7: 23}  # none >= 0.9: the single most confident
    assert records[3].committed == {5: 31}  # the last MASK, even at 0.2
    assert records[4].fed == (4, 8) and records[4].kv_written == (4, 8) and records[4].committed == {}
    assert oracle.fed[4] == [10, 31, 12, 23]  # the clean pass feeds the real ids
    for record in records[1:4]:
        assert record.fed == (4, 8) and record.kv_written == (4, 4)
    assert result.token_ids[:4] == [10, 31, 12, 23] and len(result.token_ids) == 8
    assert records[-1].kind == "decode"  # the last block needs no clean pass: the request is done


def test_threshold_is_per_request():
    script = {(2, 4): (10, 0.8), (2, 5): (11, 0.7)}
    low = ReferenceDecoder(LogitsOracle(script)).generate(
        [5, 6, 7, 8], SamplingParams(max_tokens=4, threshold=0.6, ignore_eos=True), DecodingMode.parse("bd"))
    assert low.records[1].committed == {4: 10, 5: 11}


def test_eos_finishes_only_once_everything_before_it_is_committed():
    script = {(2, 6): (EOS, 0.99), (3, 4): (10, 0.99), (4, 5): (11, 0.99)}
    result = ReferenceDecoder(LogitsOracle(script)).generate([5, 6, 7, 8], SamplingParams(max_tokens=12),
                                                             DecodingMode.parse("bd"))
    assert [r.committed for r in result.records[1:]] == [{6: EOS}, {4: 10}, {5: 11}]
    assert result.finish_reason == "stop" and result.token_ids == [10, 11]


def test_prompt_tail_joins_the_first_generated_block():
    oracle = LogitsOracle({})
    result = ReferenceDecoder(oracle).generate([5, 6, 7, 8, 9, 10], SamplingParams(max_tokens=2, ignore_eos=True),
                                               DecodingMode.parse("bd"))
    assert result.records[0].fed == (0, 4) and result.records[0].kv_written == (0, 4)
    assert result.records[1].fed == (4, 8)
    assert oracle.fed[1][:2] == [9, 10] and oracle.fed[1][2:] == [MASK, MASK]


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


PROMPT = "what is 12 + 7 - 3? the"


def test_chunked_without_reuse_at_c_equal_b_commits_what_bd_commits(tiny_model):
    model, tokenizer = tiny_model
    decoder = ReferenceDecoder(model)
    params = SamplingParams(max_tokens=24, ignore_eos=True, threshold=0.3)
    ids = tokenizer.encode(PROMPT)
    bd = decoder.generate(ids, params, DecodingMode.parse("bd"))
    chunk = decoder.generate(ids, params, DecodingMode.parse(f"chunk:{model.config.block_size}"), prefix_reuse=False)
    assert [(r.kind, r.fed, r.committed) for r in bd.records] == [(r.kind, r.fed, r.committed) for r in chunk.records]
    assert any(len(r.committed) > 1 for r in bd.records)


@pytest.mark.parametrize("chunk,out_block", [(1, False), (3, False), (5, False), (8, False), (5, True), (12, True)])
def test_reuse_writes_each_kv_once_after_its_commit_and_never_refeeds_it(tiny_model, chunk, out_block):
    model, tokenizer = tiny_model
    ids = tokenizer.encode(PROMPT)
    params = SamplingParams(max_tokens=21, ignore_eos=True, threshold=0.5)
    result = ReferenceDecoder(model).generate(ids, params, DecodingMode.parse(f"chunk:{chunk}"), out_block=out_block)
    written_at: dict[int, int] = {}
    committed_at = {pos: r.step for r in result.records for pos in r.committed}
    for record in result.records:
        uncached_prompt = max(0, len(ids) - record.fed[0])  # a prompt tail rides along with the first window
        assert record.fed[1] - record.fed[0] <= (8 if record.kind == "prefill" else chunk + uncached_prompt)
        for pos in range(*record.fed):
            assert pos not in written_at, f"position {pos} fed again after its KV was cached"
        for pos in range(*record.kv_written):
            assert pos not in written_at
            written_at[pos] = record.step
            if pos in committed_at:
                assert written_at[pos] > committed_at[pos]
        if not out_block and record.kind == "decode":
            blocks_with_masks = {p // 8 for p in range(*record.fed) if p >= len(ids) and p not in
                                 {q for r in result.records[:record.step] for q in r.committed}}
            assert len(blocks_with_masks) <= 1, "in-block window holds MASKs of two blocks"
    assert len(result.token_ids) == 21


def test_ar_on_a_causal_model_is_greedy_autoregressive_decoding(tiny_ar_checkpoint):
    model, tokenizer = load_checkpoint(tiny_ar_checkpoint)
    ids = tokenizer.encode(PROMPT)
    result = ReferenceDecoder(model).generate(ids, SamplingParams(max_tokens=12, ignore_eos=True),
                                              DecodingMode.parse("ar"))
    decode_steps = [r for r in result.records if r.kind == "decode"]
    assert all(r.fed[1] - r.fed[0] == 1 and len(r.committed) == 1 for r in decode_steps)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_ar_checkpoint).eval()
    expected = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                           pad_token_id=0)[0, len(ids):].tolist()
    assert result.token_ids == expected


def test_mode_must_match_the_checkpoint(tiny_model, tiny_ar_checkpoint):
    from optimus_backend.config import ConfigError
    model, _ = tiny_model
    with pytest.raises(ConfigError, match="mode: ar"):
        ReferenceDecoder(model).generate([5, 6], SamplingParams(max_tokens=2), DecodingMode.parse("ar"))


def test_stop_string_truncates_the_text(tiny_model):
    model, tokenizer = tiny_model
    ids = tokenizer.encode(PROMPT)
    free = ReferenceDecoder(model).generate(ids, SamplingParams(max_tokens=16, ignore_eos=True),
                                            DecodingMode.parse("chunk:4"), tokenizer.decode)
    stop = free.text[5:8]
    assert stop
    stopped = ReferenceDecoder(model).generate(ids, SamplingParams(max_tokens=16, ignore_eos=True, stop=[stop]),
                                               DecodingMode.parse("chunk:4"), tokenizer.decode)
    assert stopped.finish_reason == "stop" and stopped.text == free.text[:free.text.find(stop)]


def test_slots_after_a_committed_eos_are_never_scored():
    # forward 2 commits EOS at 5; slot 4 stays uncertain while 6 and 7 look more confident than it
    script = {(2, 5): (EOS, 0.99), (2, 4): (10, 0.2), (2, 6): (0, 0.5), (2, 7): (0, 0.5),
              (3, 4): (11, 0.3), (3, 6): (0, 0.6), (3, 7): (0, 0.6)}
    result = ReferenceDecoder(LogitsOracle(script)).generate([5, 6, 7, 8], SamplingParams(max_tokens=8),
                                                             DecodingMode.parse("bd"))
    assert [r.committed for r in result.records[1:]] == [{5: EOS}, {4: 11}]
    assert result.finish_reason == "stop" and result.token_ids == [11]


def test_an_uncached_prompt_tail_rides_along_with_the_first_window():
    oracle = LogitsOracle({})
    result = ReferenceDecoder(oracle).generate([5, 6, 7, 8, 9, 10], SamplingParams(max_tokens=6, ignore_eos=True),
                                               DecodingMode.parse("chunk:1"))
    assert result.records[0].fed == (0, 4)  # prefill: the complete block
    assert result.records[1].fed == (4, 7)  # prompt tail 4..5 plus one generated position
    assert result.records[1].kv_written == (4, 6) and list(result.records[1].committed) == [6]
