#!/usr/bin/env bash
# The concurrency sweep again (1, 4, 16, 64, 128 users, 12 s each), with two changes from
# ../gpu-concurrency-2026-11-28/run.sh: each shape first measures its own profile on this tree (the kernels changed
# since the profiles of 2026-11-27 22:45/22:54), and the warm-up sends 128 requests at once (the largest burst of
# the run, loadtest.bench.warm_up_batch), so its first-use costs are not measured. GPU 0: the 8B shape, elastic, ar
# and bd; GPU 1: the 1.7B shape, elastic, ar, chunk:16, chunk:8 and bd. Each in its own copy of the tree.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
users="u1=users:12@1;u4=users:12@4;u16=users:12@16;u64=users:12@64;u128=users:12@128"
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ 2>/dev/null; rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    if [[ $g == 0 ]]; then
      shape=qwen3-8b; modes=elastic,ar,bd; profile_s=170
      profile_args="--batches 1 4 16 64 128 --prefixes 512 --chunks 1 2 4 8 12 16 17 24 32 --repeats 3"
    else
      shape=qwen3-1.7b; modes=elastic,ar,chunk:16,chunk:8,bd; profile_s=130
      profile_args="--batches 1 4 16 32 64 96 128 --prefixes 128 512 --chunks 1 2 4 8 12 16 17 20 24 32 --repeats 5"
    fi
    d=$OUT/$shape; mkdir -p $d; start=$SECONDS
    timeout $profile_s python3 -m optimus_backend.cli profile --device cuda $profile_args --shape $shape \
      --out $d/profile.json >> $d/log.txt 2>&1
    python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
    echo "profile $((SECONDS-start)) s" >> $d/log.txt
    left=$((585 - SECONDS))
    timeout $left python3 -m loadtest.scale --shapes $shape --hf-batches= --duration 3 --replay $replay \
      --prompt-len 128 --max-tokens 256 --modes $modes --batches 1 --rates 16 --changing "$users" \
      --budget-s $((left - 10)) --out $d/users >> $d/log.txt 2>&1
    echo "users $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/$shape.tgz $shape && rm -rf $d
  ) &
done
wait
