#!/usr/bin/env bash
# The 8B chunk landscape at the near-tie loads (4 and 16 users, 12 s each) on one H200: elastic and fixed chunks
# 16-32, with the per-chunk step rows (chunks.csv) that say what each c cost against the profile and what it
# committed. Installs the 8B profile measured on this tree at 08:26.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1 PYTHONPATH=$root
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile=$root/docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b/profile.json
d=$OUT/gpu0; mkdir -p $d; start=$SECONDS
python3 -m optimus_backend.cli profile --here --install $profile >> $d/log.txt 2>&1
timeout 560 python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 3 --replay $replay \
  --prompt-len 128 --max-tokens 256 --modes elastic,chunk:16,chunk:24,chunk:32,chunk:20,chunk:28 --batches 1 \
  --rates 16 --changing "u4=users:12@4;u16=users:12@16" --budget-s 540 --out $d/landscape >> $d/log.txt 2>&1
echo "landscape $((SECONDS-start)) s" >> $d/log.txt
