#!/usr/bin/env bash
# Closed-loop users loads on the GPU: every mode (elastic and fixed chunk:4, 8, 16, 32) serves the same schedule of
# concurrent users (each user sends its next request when its previous one ends), so a faster mode serves more.
# GPU 0: the 1.7B shape (profile of 22:45, h200-2245 gpu1) with 6-s phases; GPU 1: the 8B shape (profile of 22:54,
# h200-2254 gpu1) with 10-s phases. In-process engine, random bf16 weights, prompt 128, 256 tokens out, synthetic
# acceptance replayed, max batch 128.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
modes=elastic,chunk:4,chunk:8,chunk:16,chunk:32
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    echo "tree ${TREE:-unknown}" > $d/log.txt
    if [[ $g == 0 ]]; then
      shape=qwen3-1.7b; profile=h200-2245-tile-splits-ab; users="users:6@2,3~64,6@64,3~8,6@8,3~128,6@128,3~1,6@1"
    else
      shape=qwen3-8b; profile=h200-2254-8b-tile-splits-ab; users="users:10@2,4~64,10@64,4~8,10@8,4~128,10@128,4~1,10@1"
    fi
    python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/$profile/gpu1/profile.json >> $d/log.txt 2>&1
    timeout 570 python3 -m loadtest.scale --shapes $shape --hf-batches= --duration 3 --replay $replay --prompt-len 128 \
      --max-tokens 256 --modes $modes --batches 1 --rates 16 --changing "users=$users" --budget-s 500 \
      --out $d/users >> $d/log.txt 2>&1
    echo "users $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
