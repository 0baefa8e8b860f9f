#!/usr/bin/env bash
# One device call on a 4-GPU machine: the H100 tables of docs/BENCHMARKS.md side by side, one job per GPU, each
# table's modes in one process on one GPU (so rows of a table share a card). Each job's files come back as
# $OUT/<job>.tgz (the device tool returns at most 8 files). BUDGET: seconds per sweep (default 470). Each engine
# job first profiles its shape's step on its own GPU (profile.json in its folder, installed into the cache), so
# the elastic controller prices steps of this machine, not of another card.
#   GPU 0: Qwen3-1.7B shape, decode-heavy (prompt 128, 256 out), rates up to 256 req/s
#   GPU 1: Qwen3-8B shape, decode-heavy
#   GPU 2: Qwen3-8B shape, prefill-heavy (prompt 256, 64 out)
#   GPU 3: the chunk-attention bench at c = 1 and 8 over large KV, the 8B step breakdown, the HF generate peer
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
budget=${BUDGET:-470}
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$OUT/gpus.log"
profile="python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5"
engine="--hf-batches= --duration 5 --replay docs/benchmarks/acceptance-synthetic.json --batches 64
        --modes ${MODES:-elastic,chunk:8,chunk:16,chunk:4,bd,ar} --budget-s $budget"

job() {  # job GPU NAME COMMAND...: runs COMMAND on one GPU with $dir as its output folder, then packs $dir
  local gpu=$1 name=$2
  shift 2
  local dir="$OUT/$name"
  mkdir -p "$dir"
  CUDA_VISIBLE_DEVICES=$gpu timeout $((budget + 110)) env dir="$dir" bash -c "$*" >"$dir/stdout.log" 2>&1
  echo "$name: exit $?" | tee -a "$OUT/gpus.log"
  tar -C "$OUT" -czf "$OUT/$name.tgz" "$name" && rm -rf "$dir"
}

job 0 qwen3-1.7b-decode $profile --shape qwen3-1.7b --out '$dir/profile.json' \
  '&& python3 -m optimus_backend.cli profile --install $dir/profile.json &&' python3 -m loadtest.scale --shapes qwen3-1.7b $engine --prompt-len 128 --max-tokens 256 \
  --rates 16,32,64,128,256 --out '$dir' &
job 1 qwen3-8b-decode $profile --shape qwen3-8b --out '$dir/profile.json' \
  '&& python3 -m optimus_backend.cli profile --install $dir/profile.json &&' python3 -m loadtest.scale --shapes qwen3-8b $engine --prompt-len 128 --max-tokens 256 \
  --rates 4,8,16,32,64 --out '$dir' &
job 2 qwen3-8b-prefill $profile --shape qwen3-8b --out '$dir/profile.json' \
  '&& python3 -m optimus_backend.cli profile --install $dir/profile.json &&' python3 -m loadtest.scale --shapes qwen3-8b $engine --prompt-len 256 --max-tokens 64 \
  --rates 8,16,32,64,128 --out '$dir' &
kernels="--no-flex --batches 64 128 256 --windows 1 8 --prefixes 2048 8192 --budget-s 110"
job 3 kernels-hf "python3 -m kernels.bench $kernels --out \$dir/kernels.json; python3 scripts/profile_step.py qwen3-8b;
  python3 -m loadtest.scale --shapes qwen3-8b,qwen3-1.7b --modes= --hf-batches 64 --prompt-len 128 \
    --max-tokens 256 --budget-s 200 --replay docs/benchmarks/acceptance-synthetic.json --out \$dir" &
wait
