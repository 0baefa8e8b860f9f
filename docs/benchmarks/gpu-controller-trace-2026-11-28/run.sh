#!/usr/bin/env bash
# The elastic controller's decisions on one H200 under closed loops of 16, 64 and 128 users (10 s each, the 8B
# shape, acceptance replayed, prompts of 128 tokens asking for 256), as in the concurrency sweep: every step record
# and, every 25 steps, the decision's inputs (scripts/controller_trace.py). Installs the 8B profile measured on this
# tree's step code (../gpu-concurrency-fresh-profiles-2026-11-28).
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1 PYTHONPATH=$root
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
profile=$root/docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b/profile.json
python3 -m optimus_backend.cli profile --here --install $profile > $OUT/log.txt 2>&1
timeout 400 python3 scripts/controller_trace.py --replay docs/benchmarks/acceptance-synthetic.json --prompt-len 128 \
  --max-tokens 256 --load "users:10@16,10@64,10@128" --modes elastic --out $OUT/trace >> $OUT/log.txt 2>&1
echo "rc $?" >> $OUT/log.txt
gzip $OUT/trace/*.json; ls -la $OUT/trace >> $OUT/log.txt
