#!/usr/bin/env bash
# The 8B concurrency sweep (1, 4, 16, 64, 128 users, 12 s each), all six modes on one host of two GPUs, after the
# chunk attention stopped specializing on its per-step counts (no compile inside an eager prefill step). Both GPUs
# install the 8B profile measured on this tree at 08:26 (../gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b);
# the warm-up sends 128 requests at once. GPU 0: elastic, ar, bd; GPU 1: chunk:4, chunk:8, chunk:16.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile=$root/docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b/profile.json
users="u1=users:12@1;u4=users:12@4;u16=users:12@16;u64=users:12@64;u128=users:12@128"
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ 2>/dev/null; rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    [[ $g == 0 ]] && modes=elastic,ar,bd || modes=chunk:4,chunk:8,chunk:16
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    python3 -m optimus_backend.cli profile --here --install $profile >> $d/log.txt 2>&1
    timeout 430 python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 3 --replay $replay \
      --prompt-len 128 --max-tokens 256 --modes $modes --batches 1 --rates 16 --changing "$users" \
      --budget-s 420 --out $d/users >> $d/log.txt 2>&1
    echo "users $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
