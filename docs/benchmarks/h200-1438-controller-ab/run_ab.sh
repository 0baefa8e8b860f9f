#!/usr/bin/env bash
# Same-machine A/B of the elastic controller: ab/before (868be4e) vs the working tree, one shape per GPU.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
H=docs/benchmarks/h200-1429-latency-factors
(cd ab/before && ln -sfn ../../docs docs && mkdir -p ../../.cache && ln -sfn ../../.cache .cache)
python3 -m optimus_backend.cli profile --install $H/qwen3-8b-decode/profile.json
python3 -m optimus_backend.cli profile --install $H/qwen3-1.7b-decode/profile.json
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
one() {  # one GPU SHAPE RATES TREE TAG
  local dir=$OUT/$2-$5
  (cd $4 && CUDA_VISIBLE_DEVICES=$1 PYTHONPATH=$PWD python3 -m loadtest.scale --shapes $2 --hf-batches= --duration 5 \
    --replay docs/benchmarks/acceptance-synthetic.json --batches 64 --modes elastic --budget-s 140 --prompt-len 128 \
    --max-tokens 256 --rates $3 --out $dir > $dir.log 2>&1)
  echo "$2 $5 exit $?" | tee -a $OUT/gpus.log
}
lane() { one $1 $2 $3 ab/before before1; one $1 $2 $3 . new; one $1 $2 $3 ab/before before2; }
lane 0 qwen3-8b 32,64 &
lane 1 qwen3-1.7b 128,256 &
wait
cd $OUT && tar -czf ab.tgz qwen3-* gpus.log && rm -rf qwen3-*
