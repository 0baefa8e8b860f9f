#!/bin/bash
# CPU (this project's 2-core box), 2026-11-28 06:43 UTC, tree 7c92b42+: the simulator, not a measurement.
# A concurrency sweep: closed loops of 1, 4, 16, 64 and 128 users, 40 s each, three seeds, the H100 profiles of
# 2026-11-26 and the synthetic acceptance; elastic against AR, BD-32 and chunk:4/8/16. About 90 s.
optimus simulate --profile docs/benchmarks/profile_qwen3-8b.json docs/benchmarks/profile_qwen3-1.7b.json \
    --max-batch 128 --seeds 3 --rates "" --policies elastic,ar,bd,chunk:4,chunk:8,chunk:16 \
    --changing "u1=users:40@1;u4=users:40@4;u16=users:40@16;u64=users:40@64;u128=users:40@128" \
    --out-dir docs/benchmarks/simulated-concurrency-2026-11-28
