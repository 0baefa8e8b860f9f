#!/usr/bin/env bash
# One device call on a 4-GPU machine: the H100 tables of docs/BENCHMARKS.md side by side, one job per GPU, each
# table's modes in one process on one GPU (so rows of a table share a card). Each job's files come back as
# $OUT/<job>.tgz (the device tool returns at most 8 files). BUDGET: seconds per sweep (default 470). JOBS: the
# jobs to run (default the first four below), each on the next GPU, so one job fits a one-GPU machine. Each engine
# job first profiles its shape's step on its own GPU (profile.json in its folder, installed into the cache), so
# the elastic controller prices steps of this machine, not of another card. PROFILES="shape=file ..." installs
# a committed profile of that shape instead (one made on another machine: saves the 3-4 minutes an 8B profile
# takes on an H100, though a profile from the serving machine prices c better), keyed as this machine's card.
# JOB_TIMEOUT: seconds per job (default BUDGET + 110).
#   qwen3-1.7b-decode: Qwen3-1.7B shape, decode-heavy (prompt 128, 256 out), rates up to 256 req/s
#   qwen3-8b-decode: Qwen3-8B shape, decode-heavy
#   qwen3-8b-prefill: Qwen3-8B shape, prefill-heavy (prompt 256, 64 out)
#   kernels-hf: the chunk-attention bench at c = 1 and 8 over large KV, the 8B step breakdown, the HF generate peer
#   qwen3-1.7b-burst, qwen3-1.7b-wave, qwen3-8b-burst, qwen3-8b-wave: changing loads, decode-heavy, every mode on
#     the same arrivals (the simulator's burst and wave as fractions of each shape's capacity, 86 and 34 req/s,
#     in 40-42 s), plus one repeat of the top contested rate point
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
budget=${BUDGET:-470}
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$OUT/gpus.log"
profile="python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5"
engine="--hf-batches= --duration 5 --replay docs/benchmarks/acceptance-synthetic.json --batches 64 \
        --modes ${MODES:-elastic,chunk:8,chunk:16,chunk:4,bd,ar} --budget-s $budget"

JOBS=${JOBS:-qwen3-1.7b-decode qwen3-8b-decode qwen3-8b-prefill kernels-hf}
gpu=0
job() {  # job NAME COMMAND...: runs COMMAND on the next GPU, in the background, with $dir as its output folder
  local name=$1
  shift
  [[ " $JOBS " == *" $name "* ]] || return 0
  local dir="$OUT/$name" command="$*" device=$gpu
  gpu=$((gpu + 1))
  mkdir -p "$dir"
  (
    CUDA_VISIBLE_DEVICES=$device timeout ${JOB_TIMEOUT:-$((budget + 110))} env dir="$dir" bash -c "$command" >"$dir/stdout.log" 2>&1
    echo "$name: exit $?" | tee -a "$OUT/gpus.log"
    tar -C "$OUT" -czf "$OUT/$name.tgz" "$name" && rm -rf "$dir"
  ) &
}
sweep() {  # sweep SHAPE ARGS...: profile the shape's step here, install the profile, then the scale run
  local shape=$1 given=""
  shift
  for pair in ${PROFILES:-}; do [[ ${pair%%=*} == "$shape" ]] && given=${pair#*=}; done
  local measure="$profile --shape $shape --out \$dir/profile.json"
  # with a given profile, a one-point profile still compiles the kernels (into Triton's disk cache), so the first
  # mode of the time-boxed sweep does not spend its share compiling
  [[ -n $given ]] && measure="$profile --shape $shape --batches 1 --prefixes 128 --chunks 1 32 --repeats 1 \
    --out \$dir/compile.json && cp $given \$dir/profile.json"
  echo "$measure && python3 -m optimus_backend.cli profile --here --install \$dir/profile.json" \
    "&& python3 -m loadtest.scale --shapes $shape $engine $* --out \$dir"
}

job qwen3-1.7b-decode "$(sweep qwen3-1.7b --prompt-len 128 --max-tokens 256 --rates 16,32,64,128,256)"
job qwen3-8b-decode "$(sweep qwen3-8b --prompt-len 128 --max-tokens 256 --rates 4,8,16,32,64)"
job qwen3-8b-prefill "$(sweep qwen3-8b --prompt-len 256 --max-tokens 64 --rates 8,16,32,64,128)"
decode="--prompt-len 128 --max-tokens 256"
job qwen3-1.7b-burst "$(sweep qwen3-1.7b $decode --rates 128 --changing 'burst=8@9,8@95,8@26,8~86,8@4')"
job qwen3-1.7b-wave "$(sweep qwen3-1.7b $decode --rates 128 --changing 'wave=6@9,6~73,6@73,6~17,6@17,6~52,6@4')"
job qwen3-8b-burst "$(sweep qwen3-8b $decode --rates 32 --changing 'burst=8@3.4,8@37,8@10,8~34,8@1.7')"
job qwen3-8b-wave "$(sweep qwen3-8b $decode --rates 32 --changing 'wave=6@3.4,6~29,6@29,6~7,6@7,6~20,6@1.7')"
kernels="--no-flex --batches 64 128 256 --windows 1 8 --prefixes 2048 8192 --budget-s 110"
job kernels-hf "python3 -m kernels.bench $kernels --out \$dir/kernels.json; python3 scripts/profile_step.py qwen3-8b;
  python3 -m loadtest.scale --shapes qwen3-8b,qwen3-1.7b --modes= --hf-batches 64 --prompt-len 128 \
    --max-tokens 256 --budget-s 200 --replay docs/benchmarks/acceptance-synthetic.json --out \$dir"
wait
