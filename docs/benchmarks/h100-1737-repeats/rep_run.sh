#!/usr/bin/env bash
# Repeats (not committed as code; kept with its data): elastic and chunk:8 on the 1.7B shape, four fresh engine
# processes on one GPU after one profile of it.
set -uo pipefail
root=$PWD; d=$OUT/repeats; mkdir -p $d
export PYTHONPATH=$root OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/gpus.log
timeout 200 python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5 --shape qwen3-1.7b --out $d/profile.json > $d/log.txt 2>&1
python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
for run in 1 2 3 4; do
  timeout 120 python3 -m loadtest.scale --shapes qwen3-1.7b --hf-batches= --duration 5 --replay docs/benchmarks/acceptance-synthetic.json --batches 64 --modes elastic,chunk:8 --budget-s 150 --prompt-len 128 --max-tokens 256 --rates 128,256 --out $d/run$run >> $d/log.txt 2>&1
done
tar -C $OUT -czf $OUT/repeats.tgz repeats && rm -rf $d
