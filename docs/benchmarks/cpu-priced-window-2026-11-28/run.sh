#!/bin/bash
# CPU (this project's 2-core box), 2026-11-28: the real engine, scheduler and controller on the shipped tiny model
# replaying the synthetic acceptance, every step priced by the 8B profile of an H200 (22:54, 2026-11-27; lognormal
# noise 0.06, fixed seed), under the concurrency sweep of ../cpu-priced-concurrency-2026-11-28/ (closed loops of 1,
# 4, 16, 64 and 128 users held for 4, 4, 6, 10 and 10 priced seconds), elastic only: the fixed chunks and the
# controller before are that folder's logs (same profile, schedule and seed).
# 10:41-11:02 UTC: elastic_per_window.log, the controller of da51139 (E learned at every request's window).
# 11:03-11:15 UTC: elastic_whole_windows.log, this commit's (E learned from whole windows only).
P=docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json
OMP_NUM_THREADS=1 PYTHONPATH=scripts python scripts/users_check.py --mode elastic --profile $P \
  --users "users:4@1,4@4,6@16,10@64,10@128" > docs/benchmarks/cpu-priced-window-2026-11-28/elastic_whole_windows.log
# 11:25-11:53 UTC: the same for the 1.7B profile of an H200 (2026-11-27 22:45), elastic with whole windows
# (qwen3-1.7b_elastic_whole_windows.log); the controller before is ../cpu-priced-concurrency-2026-11-28/qwen3-1.7b_elastic.log.
P=docs/benchmarks/h200-2245-tile-splits-ab/gpu1/profile.json
OMP_NUM_THREADS=1 PYTHONPATH=scripts python scripts/users_check.py --mode elastic --profile $P \
  --users "users:4@1,4@4,6@16,10@64,10@128" > docs/benchmarks/cpu-priced-window-2026-11-28/qwen3-1.7b_elastic_whole_windows.log
