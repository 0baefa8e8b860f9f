#!/usr/bin/env bash
# GPU 0 and 3: the 1.7B controller trace (elastic, chunk:8, chunk:16) of a rate point then an offline batch of 64.
# GPU 1 and 2: offline throughput vs batch size (1, 4, 16, 64), all six modes, 1.7B and 8B shapes.
set -uo pipefail
root=$PWD
export PYTHONPATH=$root OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
git -C $root log -1 --format=%H > $OUT/commit.txt 2>/dev/null
profile="python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5"
replay=$root/docs/benchmarks/acceptance-synthetic.json
run() {  # run GPU NAME COMMAND
  local g=$1 name=$2; shift 2
  (
    d=$OUT/$name; mkdir -p $d; export CUDA_VISIBLE_DEVICES=$g
    start=$SECONDS
    timeout 560 env d=$d bash -c "$*" > $d/log.txt 2>&1
    echo "$name: exit $? after $((SECONDS-start)) s" | tee -a $OUT/gpus.log
    tar -C $OUT -czf $OUT/$name.tgz $name && rm -rf $d
  ) &
}
own17="$profile --shape qwen3-1.7b --out \$d/profile.json && python3 -m optimus_backend.cli profile --here --install \$d/profile.json"
given8="$profile --shape qwen3-8b --batches 1 --prefixes 128 --chunks 1 32 --repeats 1 --out \$d/compile.json && python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-1445-tables/qwen3-8b-decode/profile.json"
trace="python3 scripts/controller_trace.py --shape qwen3-1.7b --modes elastic,chunk:8,chunk:16 --replay $replay --prompt-len 128 --max-tokens 256 --offline 64 --out \$d"
batches="--hf-batches= --duration 5 --replay $replay --batches 1,4,16,64 --modes elastic,chunk:8,chunk:16,chunk:4,bd,ar --prompt-len 128 --max-tokens 256 --rates 16"
run 0 trace-1.7b-r128 "$own17 && $trace --rate 128"
run 1 batches-1.7b "$own17 && python3 -m loadtest.scale --shapes qwen3-1.7b $batches --budget-s 380 --out \$d"
run 2 batches-8b "$given8 && python3 -m loadtest.scale --shapes qwen3-8b $batches --budget-s 440 --out \$d"
run 3 trace-1.7b-r256 "$own17 && $trace --rate 256"
wait
