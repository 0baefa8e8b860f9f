#!/usr/bin/env bash
# One device call on a 4-GPU machine: the H100 tables of docs/BENCHMARKS.md side by side, one job per GPU, each
# table's modes in one process on one GPU (so rows of a table share a card). Each job's files come back as
# $OUT/<job>.tgz (the device tool returns at most 8 files). BUDGET: seconds per job (default 530).
#   GPU 0: Qwen3-1.7B shape, decode-heavy (prompt 128, 256 out), rates up to 256 req/s
#   GPU 1: Qwen3-8B shape, decode-heavy
#   GPU 2: Qwen3-8B shape, prefill-heavy (prompt 256, 64 out)
#   GPU 3: kernel bench, sequential vs shuffled page order (c = 1 at large KV); then the HF generate peer
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
budget=${BUDGET:-530}
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$OUT/gpus.log"
python3 -m optimus_backend.cli profile --install docs/benchmarks/profile_qwen3-*.json
engine="--hf-batches= --duration 5 --replay docs/benchmarks/acceptance-synthetic.json --batches 64
        --modes ${MODES:-elastic,chunk:8,chunk:16,chunk:4,bd,ar} --budget-s $budget"

job() {  # job GPU NAME COMMAND...: runs COMMAND on one GPU with $dir as its output folder, then packs $dir
  local gpu=$1 name=$2
  shift 2
  local dir="$OUT/$name"
  mkdir -p "$dir"
  CUDA_VISIBLE_DEVICES=$gpu timeout $((budget + 50)) env dir="$dir" bash -c "$*" >"$dir/stdout.log" 2>&1
  echo "$name: exit $?" | tee -a "$OUT/gpus.log"
  tar -C "$OUT" -czf "$OUT/$name.tgz" "$name" && rm -rf "$dir"
}

job 0 qwen3-1.7b-decode python3 -m loadtest.scale --shapes qwen3-1.7b $engine --prompt-len 128 --max-tokens 256 \
  --rates 8,16,32,64,128,256 --out '$dir' &
job 1 qwen3-8b-decode python3 -m loadtest.scale --shapes qwen3-8b $engine --prompt-len 128 --max-tokens 256 \
  --rates 4,8,16,32,64 --out '$dir' &
job 2 qwen3-8b-prefill python3 -m loadtest.scale --shapes qwen3-8b $engine --prompt-len 256 --max-tokens 64 \
  --rates 8,16,32,64,128 --out '$dir' &
kernels="--no-flex --batches 64 128 256 --windows 1 8 --prefixes 2048 8192 --budget-s 110"
job 3 kernels-hf "python3 -m kernels.bench $kernels --page-order sequential --out \$dir/kernels_sequential.json;
  python3 -m kernels.bench $kernels --page-order shuffled --out \$dir/kernels_shuffled.json;
  python3 -m loadtest.scale --shapes qwen3-8b,qwen3-1.7b --modes= --hf-batches 64 --prompt-len 128 \
    --max-tokens 256 --budget-s 250 --replay docs/benchmarks/acceptance-synthetic.json --out \$dir" &
wait
