#!/usr/bin/env bash
# After the per-batch-range step-time factors: changing loads on the 1.7B shape (the wave twice, the burst once;
# elastic, chunk:8, chunk:16) and the 8B offline batch sweep (elastic, chunk:8, chunk:16). Profiles: the 1.7B one of
# the 19:06 call (an H200) and the 8B one of 14:45 (an H200), installed as this card's after a one-point compile.
set -uo pipefail
root=$PWD
export PYTHONPATH=$root OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
compile="python3 -m optimus_backend.cli profile --device cuda --batches 1 --prefixes 128 --chunks 1 32 --repeats 1"
p17=$root/docs/benchmarks/h200-1906-batch-ranges/gpu0/profile.json
p8=$root/docs/benchmarks/h200-1445-tables/qwen3-8b-decode/profile.json
common="--hf-batches= --duration 5 --replay $replay --prompt-len 128 --max-tokens 256 --modes elastic,chunk:8,chunk:16"
wave="wave=6@9,6~73,6@73,6~17,6@17,6~52,6@4"
burst="burst=8@9,8@95,8@26,8~86,8@4"
job() {  # job GPU NAME SHAPE PROFILE ARGS...
  local g=$1 name=$2 shape=$3 given=$4; shift 4
  (
    d=$OUT/$name; mkdir -p $d; export CUDA_VISIBLE_DEVICES=$g; start=$SECONDS
    { $compile --shape $shape --out $d/compile.json && python3 -m optimus_backend.cli profile --here --install $given
      timeout 270 python3 -m loadtest.scale --shapes $shape $common "$@" --out $d; } > $d/log.txt 2>&1
    echo "$name: $((SECONDS-start)) s" | tee -a $OUT/gpus.log
    tar -C $OUT -czf $OUT/$name.tgz $name && rm -rf $d
  ) &
}
job 0 wave1-1.7b qwen3-1.7b $p17 --batches 64 --rates 128 --changing "$wave" --budget-s 230
job 1 wave2-1.7b qwen3-1.7b $p17 --batches 64 --rates 128 --changing "$wave" --budget-s 230
job 2 burst-1.7b qwen3-1.7b $p17 --batches 64 --rates 128 --changing "$burst" --budget-s 230
job 3 batches-8b qwen3-8b $p8 --batches 1,4,16,64 --rates 16 --budget-s 220
wait
