#!/bin/bash
# Chunk attention: per-page table reads, window tiles sized to the q tile, and a measured launch-config table.
# Four device calls, 2026-11-28 (UTC). The base kernel is 9ae51f2's kernels/chunk_attention.py.
#
# 05:51, one H100 (page_lookup_variants_h100.log): a scratch script (not kept) timed three page lookups of the
#   base kernel x up to 15 launch configs at 13 shapes, pages in order, against dense SDPA with and without a mask.
#   In the log, m0 is the base kernel's per-token table read, m1 one read per page, m2 no read (the page computed,
#   valid only with pages in order); each with its fastest config. "committed" is the base kernel as autotuned.
#   Per-page reads beat per-token reads at all 13 shapes and were the fastest of the three at 11.
#
# 05:54-06:03, one H200 (GPU-2768d482; ab_h200_autotuned.*, kernels_h200_autotuned.json): the tree with per-page
#   reads and window tiles, both versions autotuned, then the kernel bench of that tree. The A/B was run by
#   scratch/ab.py, the precursor of scripts/attention_ab.py (same shapes, tuning batch and interleaved timing;
#   it named the versions old/new and timed each twice):
git show 9ae51f2:kernels/chunk_attention.py > /tmp/base_attention.py
python3 scripts/attention_ab.py /tmp/base_attention.py --repeats 2 --peers --out ab_h200_autotuned.json
python3 -m kernels.bench --out kernels_h200_autotuned.json --budget-s 150 --flex-until-s 300
#
# 06:05-06:15, one H100 (GPU-73e4e219; tune_attention.json, tune.log, kernels_h100.json, bench.log.gz): the tuner,
#   then the kernel bench with HOPPER_CONFIGS filled from the tuner's JSON in the same process (the values
#   committed in kernels/chunk_attention.py are the tuner's, printed in tune.log):
python3 -m kernels.tune_attention --out tune_attention.json
python3 -m kernels.bench --out kernels_h100.json --budget-s 96 --flex-until-s 215
#
# 06:16, another H100 (GPU-55c016a6; ab_h100.*): the base kernel (autotuned) against the committed table, once
#   per shape, no peers (scratch/ab.py --fast, as above):
python3 scripts/attention_ab.py /tmp/base_attention.py --out ab_h100.json
