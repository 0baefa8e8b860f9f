#!/usr/bin/env bash
# Repeats of HEAD (the step-time level and the optimism in T) on the GPUs of one host, in the device time left:
# even GPUs: the 1.7B shape (22:45 profile of h200-2245 gpu1): batches of 1, 4, 16, 64 requests of 1024 tokens
# (elastic, chunk:16, chunk:8) with the 16 req/s point. Odd GPUs: the 8B shape (22:54 profile of h200-2254 gpu1):
# 64 requests of 1024 tokens (elastic, chunk:8, chunk:16) with the 8 req/s point. Results are written straight to $OUT.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
for g in $(seq 0 $(( $(nvidia-smi -L | wc -l) - 1 ))); do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d
    if [[ $((g % 2)) == 0 ]]; then
      python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2245-tile-splits-ab/gpu1/profile.json > $d/log.txt 2>&1
      timeout 190 python3 -m loadtest.scale --shapes qwen3-1.7b --hf-batches= --duration 5 --replay $replay --prompt-len 128 --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 150 --out $d/batches >> $d/log.txt 2>&1
    else
      python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json > $d/log.txt 2>&1
      timeout 190 python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 5 --replay $replay --prompt-len 128 --max-tokens 1024 --batches 64 --modes elastic,chunk:8,chunk:16 --rates 8 --budget-s 180 --out $d/batches >> $d/log.txt 2>&1
    fi
  ) &
done
wait
