#!/usr/bin/env bash
# A concurrency sweep on the GPU: 1, 4, 16, 64 and 128 users held in a closed loop, 12 s each, for every mode
# (elastic, AR, BD-32, chunk:4, 8, 16). One host of two GPUs per shape: GPU 0 runs elastic, ar and bd, GPU 1 the
# fixed chunks, each in its own copy of the tree with the same installed profile of the shape (H200 profiles of
# 2026-11-27 22:45 / 22:54; on H100s the H100 profiles of 2026-11-26 09:44 / 09:51). In-process engine, random bf16
# weights, prompt 128, 256 tokens out, synthetic acceptance replayed, max batch 128.
# usage: bash run.sh SHAPE  (qwen3-8b or qwen3-1.7b); then merge the two GPUs' CSVs and `python -m loadtest.report`.
set -uo pipefail
shape=$1
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
users="u1=users:12@1;u4=users:12@4;u16=users:12@16;u64=users:12@64;u128=users:12@128"
if nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -q H200; then
  [[ $shape == qwen3-8b ]] && profile=h200-2254-8b-tile-splits-ab/gpu1/profile.json || profile=h200-2245-tile-splits-ab/gpu1/profile.json
else
  [[ $shape == qwen3-8b ]] && profile=h100-0944-qwen3-8b-decode/profile.json || profile=h100-0951-qwen3-1.7b-decode/profile.json
fi
echo "profile $profile" | tee -a $OUT/gpus.log
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    [[ $g == 0 ]] && modes=elastic,ar,bd || modes=chunk:4,chunk:8,chunk:16
    d=$OUT/$shape-gpu$g; mkdir -p $d; start=$SECONDS
    python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/$profile >> $d/log.txt 2>&1
    timeout ${SWEEP_TIMEOUT_S:-560} python3 -m loadtest.scale --shapes $shape --hf-batches= --duration 3 --replay $replay \
      --prompt-len 128 --max-tokens 256 --modes $modes --batches 1 --rates 16 --changing "$users" \
      --budget-s $(( ${SWEEP_TIMEOUT_S:-560} - 20 )) --out $d/users >> $d/log.txt 2>&1
    echo "users $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/$shape-gpu$g.tgz $shape-gpu$g && rm -rf $d
  ) &
done
wait
