#!/usr/bin/env bash
# The 8B concurrency sweep (1, 4, 16, 64, 128 users, 10 s each) on a tree whose elastic choice runs in plain Python
# (same decisions as 9613116 of ../gpu-whole-window-repeats-2026-11-28), on two H200s of one host. Each GPU runs
# elastic and the fixed chunks 4, 8, 16 in one process (in opposite orders on the two GPUs); then GPU 0 runs elastic
# again, and GPU 1 runs scripts/host_profile.py (elastic and chunk:4, 8B shape, 128 requests/s open loop) to show
# where the engine thread's host time goes on this host (SECOND1=elastic: elastic again instead).
# Usage (device machine, repository root, $OUT set): [BUDGET=s] [SECOND1=elastic] bash docs/benchmarks/gpu-plain-choice-2026-11-28/run.sh TAG
# (calls a and b ran with the defaults; call c with BUDGET=515 SECOND1=elastic)
set -uo pipefail
root=$PWD; tag=${1:-a}; budget=${BUDGET:-560}  # seconds per GPU
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus-$tag.log
lscpu | grep -m1 "Model name" | tee -a $OUT/gpus-$tag.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile=$root/docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b/profile.json
users="u1=users:10@1;u4=users:10@4;u16=users:10@16;u64=users:10@64;u128=users:10@128"
first=(elastic,chunk:4,chunk:8,chunk:16 chunk:16,chunk:8,chunk:4,elastic)
second=(elastic ${SECOND1:-host})
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ 2>/dev/null; rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/$tag-gpu$g; mkdir -p $d; start=$SECONDS
    python3 -m optimus_backend.cli profile --here --install $profile >> $d/log.txt 2>&1
    pass=0
    for modes in ${first[$g]} ${second[$g]}; do
      pass=$((pass+1)); left=$((budget - (SECONDS-start)))
      (( left < 110 )) && break
      if [[ $modes == host ]]; then
        timeout $left python3 scripts/host_profile.py --shape qwen3-8b --modes elastic,chunk:4 --rate 128 \
          --replay $replay --out $d/host >> $d/log.txt 2>&1
      else
        timeout $left python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 3 --replay $replay \
          --prompt-len 128 --max-tokens 256 --modes $modes --batches 1 --rates 16 --changing "$users" \
          --budget-s $((left-10)) --out $d/pass$pass >> $d/log.txt 2>&1
      fi
      echo "pass$pass ($modes) rc $? at $((SECONDS-start)) s" >> $d/log.txt
    done
    tar -C $OUT -czf $OUT/$tag-gpu$g.tgz $tag-gpu$g && rm -rf $d
  ) &
done
wait
