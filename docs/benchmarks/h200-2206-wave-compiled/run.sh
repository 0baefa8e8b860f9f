#!/usr/bin/env bash
# The 1.7B wave (changing load) on 40b919a: elastic, chunk:8, chunk:16 on the same arrivals; the profile of the 21:47
# call (an H200), installed as this card's after a one-point compile.
set -uo pipefail
root=$PWD
export PYTHONPATH=$root OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
given=$root/docs/benchmarks/h200-2147-graph-warm-replay/gpu1/profile.json
d=$OUT/wave-1.7b; mkdir -p $d; start=$SECONDS
{ python3 -m optimus_backend.cli profile --device cuda --batches 1 --prefixes 128 --chunks 1 32 --repeats 1 --shape qwen3-1.7b --out $d/compile.json && python3 -m optimus_backend.cli profile --here --install $given
  timeout 240 python3 -m loadtest.scale --shapes qwen3-1.7b --hf-batches= --duration 3 --replay $replay --prompt-len 128 --max-tokens 256 --modes elastic,chunk:8,chunk:16 --batches 1 --rates 16 --changing "wave=6@9,6~73,6@73,6~17,6@17,6~52,6@4" --budget-s 220 --out $d; } > $d/log.txt 2>&1
echo "wave: $((SECONDS-start)) s" | tee -a $OUT/gpus.log
tar -C $OUT -czf $OUT/wave-1.7b.tgz wave-1.7b && rm -rf $d
