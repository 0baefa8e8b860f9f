#!/usr/bin/env bash
# A/B of the step-time optimism (f900b0f) on the 8B shape, four GPUs of one host: GPUs 0 and 2 run verify/base
# (c73b013, no optimism in T), GPUs 1 and 3 run HEAD. Every GPU installs the same profile (22:54, h200-2254 gpu1)
# and runs 16 and 64 requests of 1024 tokens (elastic, chunk:8, chunk:16) with the 8 req/s point, then 64 again.
# verify/base: `git archive c73b013 | tar -x -C verify/base`, less docs/, tests/ and models/ (a link to the checkout's).
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
given=$root/docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json
for g in 0 1 2 3; do
  (
    tree=$root; [[ $((g % 2)) == 0 ]] && tree=$root/verify/base
    mkdir -p /tmp/tree$g && cp -a $tree/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    git -C $root log -1 --format=%h > $d/log.txt; python3 -m optimus_backend.cli profile --here --install $given >> $d/log.txt 2>&1
    common="--shapes qwen3-8b --hf-batches= --duration 5 --replay $replay --prompt-len 128 --max-tokens 1024 --modes elastic,chunk:8,chunk:16"
    timeout 300 python3 -m loadtest.scale $common --batches 16,64 --rates 8 --budget-s 290 --out $d/batches1 >> $d/log.txt 2>&1
    echo "batches1 $((SECONDS-start)) s" >> $d/log.txt
    timeout $((545 - SECONDS + start)) python3 -m loadtest.scale $common --batches 64 --rates 8 --budget-s 230 --out $d/batches2 >> $d/log.txt 2>&1
    echo "batches2 $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
