#!/bin/bash
# CPU (this project's 2-core box), 2026-11-28 06:38-07:08 UTC, tree 7c92b42 + priced_engine's AR twin (this commit):
# the real engine, scheduler and controller on the shipped tiny model (its AR twin for ar) replaying the synthetic
# acceptance, every step priced by the 8B profile of an H200 (22:54, 2026-11-27; lognormal noise 0.06, fixed seed),
# under a concurrency sweep: closed loops of 1, 4, 16, 64 and 128 users held for 4, 4, 6, 10 and 10 priced seconds.
# Two modes at a time, one thread each; about 10 minutes per mode.
P=docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json
U="users:4@1,4@4,6@16,10@64,10@128"
for mode in elastic ar bd chunk:4 chunk:8 chunk:16; do
  OMP_NUM_THREADS=1 PYTHONPATH=scripts python scripts/users_check.py --mode $mode --profile $P --users "$U" \
    > docs/benchmarks/cpu-priced-concurrency-2026-11-28/${mode/:/}.log
done
# 07:24-07:51 UTC: the same for the 1.7B profile of an H200 (2026-11-27 22:45), elastic and ar only (the fixed
# chunks were stopped for time); logs qwen3-1.7b_elastic.log and qwen3-1.7b_ar.log.
P=docs/benchmarks/h200-2245-tile-splits-ab/gpu1/profile.json
for mode in elastic ar; do
  OMP_NUM_THREADS=1 PYTHONPATH=scripts python scripts/users_check.py --mode $mode --profile $P --users "$U" \
    > docs/benchmarks/cpu-priced-concurrency-2026-11-28/qwen3-1.7b_$mode.log
done
