"""`optimus eval` on a handful of held-out problems with the shipped checkpoints: well above chance.

Guards the loader, tokenizer and chat template of the shipped pair; the headline numbers live in the model
card (models/optimus-tiny/README.md), not here.
"""

from __future__ import annotations

import argparse
import json

from optimus_backend import evaluate
from optimus_backend.config import DEFAULT_AR_CHECKPOINT, DEFAULT_CHECKPOINT


def test_shipped_checkpoints_solve_held_out_chain_sums(tmp_path):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    out = tmp_path / "eval.json"
    args = parser.parse_args(["--checkpoint", str(DEFAULT_CHECKPOINT), "--ar-checkpoint", str(DEFAULT_AR_CHECKPOINT),
                              "--device", "cpu", "--modes", "ar,bd,chunk:8", "--tasks", "chain_sum", "--num", "12",
                              "--json", str(out)])
    assert evaluate.run(args) == 0
    results = json.loads(out.read_text())["results"]
    assert {r["mode"] for r in results} == {"ar", "bd", "chunk:8"}
    for result in results:
        assert result["accuracy"] >= 0.5, result  # chance is ~0 for exact sums
    bd = next(r for r in results if r["mode"] == "bd")
    assert bd["tokens_per_forward"] > 1.0
