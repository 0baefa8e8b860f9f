#!/usr/bin/env bash
# The 8B closed-loop users load again, with the 22:54 8B profile (h200-2254 gpu1) installed on both GPUs.
# GPU 0: loadtest.scale as in h200-0432-users (warm-up with one request), modes elastic, chunk:32, chunk:4.
# GPU 1: a controller trace of elastic warmed up the same way (--warm-batch 1), then closed batches of 16 requests
# of 1024 tokens (elastic, chunk:8, chunk:16).
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
users="users:10@2,4~64,10@64,4~8,10@8,4~128,10@128,4~1,10@1"
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree:$tree/scripts CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    echo "tree ${TREE:-unknown}" > $d/log.txt
    python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json >> $d/log.txt 2>&1
    if [[ $g == 0 ]]; then
      timeout 550 python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 3 --replay $replay --prompt-len 128 \
        --max-tokens 256 --modes elastic,chunk:32,chunk:4 --batches 1 --rates 16 --changing "users=$users" --budget-s 500 \
        --out $d/users >> $d/log.txt 2>&1
    else
      timeout 260 python3 scripts/controller_trace.py --shape qwen3-8b --modes elastic --replay $replay --prompt-len 128 \
        --max-tokens 256 --load "$users" --warm-batch 1 --out $d >> $d/log.txt 2>&1
      gzip $d/trace_*.json
      echo "trace $((SECONDS-start)) s" >> $d/log.txt
      timeout $((550 - SECONDS + start)) python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 5 --replay $replay \
        --prompt-len 128 --max-tokens 1024 --modes elastic,chunk:8,chunk:16 --batches 16 --rates 8 --budget-s 260 \
        --out $d/batches >> $d/log.txt 2>&1
    fi
    echo "done $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
