#!/usr/bin/env bash
# The 8B concurrency sweep of run.sh with 8 s per load, on one H200 (two were not lent): elastic, the fixed chunks 4, 8, 16 in
# one process, then elastic again in a second process while time is left.
# Usage (device machine, repository root, $OUT set): bash docs/benchmarks/gpu-whole-window-repeats-2026-11-28/run_one.sh TAG
set -uo pipefail
root=$PWD; tag=${1:-c}
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1 PYTHONPATH=$root
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile=$root/docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b/profile.json
users="u1=users:8@1;u4=users:8@4;u16=users:8@16;u64=users:8@64;u128=users:8@128"
d=$OUT/$tag-gpu0; mkdir -p $d; start=$SECONDS
python3 -m optimus_backend.cli profile --here --install $profile >> $d/log.txt 2>&1
pass=0
for modes in elastic,chunk:4,chunk:8,chunk:16 elastic; do
  pass=$((pass+1)); left=$((505 - (SECONDS-start)))
  (( left < 95 )) && break
  timeout $left python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 3 --replay $replay \
    --prompt-len 128 --max-tokens 256 --modes $modes --batches 1 --rates 16 --changing "$users" \
    --budget-s $((left-10)) --out $d/pass$pass >> $d/log.txt 2>&1
  echo "pass$pass ($modes) rc $? at $((SECONDS-start)) s" >> $d/log.txt
done
tar -C $OUT -czf $OUT/$tag-gpu0.tgz $tag-gpu0 && rm -rf $d
