#!/usr/bin/env bash
# Repeats of the 8B concurrency sweep (1, 4, 16, 64, 128 users, 10 s each) with the committed whole-window
# controller, on two H200s of one host. Each GPU runs elastic and the fixed chunks 4, 8, 16 in one process (in
# opposite orders on the two GPUs), then, while time is left, a second process: elastic again on GPU 0, chunk:32 on
# GPU 1. Both install the 8B profile measured on this tree's step code (../gpu-concurrency-fresh-profiles-2026-11-28).
# Usage (device machine, repository root, $OUT set): [BUDGET=s] bash docs/benchmarks/gpu-whole-window-repeats-2026-11-28/run.sh TAG
set -uo pipefail
root=$PWD; tag=${1:-a}; budget=${BUDGET:-565}  # seconds per GPU (tags a and b ran with 565, c with 505)
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile=$root/docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b/profile.json
users="u1=users:10@1;u4=users:10@4;u16=users:10@16;u64=users:10@64;u128=users:10@128"
first=(elastic,chunk:4,chunk:8,chunk:16 chunk:16,chunk:8,chunk:4,elastic)
second=(elastic chunk:32)
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ 2>/dev/null; rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/$tag-gpu$g; mkdir -p $d; start=$SECONDS
    python3 -m optimus_backend.cli profile --here --install $profile >> $d/log.txt 2>&1
    pass=0
    for modes in ${first[$g]} ${second[$g]}; do
      pass=$((pass+1)); left=$((budget - (SECONDS-start)))
      (( left < 125 )) && break
      timeout $left python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 3 --replay $replay \
        --prompt-len 128 --max-tokens 256 --modes $modes --batches 1 --rates 16 --changing "$users" \
        --budget-s $((left-10)) --out $d/pass$pass >> $d/log.txt 2>&1
      echo "pass$pass ($modes) rc $? at $((SECONDS-start)) s" >> $d/log.txt
    done
    tar -C $OUT -czf $OUT/$tag-gpu$g.tgz $tag-gpu$g && rm -rf $d
  ) &
done
wait
