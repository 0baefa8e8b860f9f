#!/usr/bin/env bash
# Two more closed-batch sweeps of the 8B shape on HEAD (6c0e9ce and later docs), one per GPU of one host: the 22:54
# profile of GPU 1 installed as this card's, then 16 and 64 requests of 1024 tokens (elastic, chunk:8, chunk:16).
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
given=$root/docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json
for g in 0 1; do
  (
    tree=/tmp/tree$g; mkdir -p $tree && cp -a $root/. $tree/ && rm -rf $tree/models && ln -s $root/models $tree/models
    cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    python3 -m optimus_backend.cli profile --here --install $given > $d/log.txt 2>&1
    timeout 320 python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 5 --replay $replay --prompt-len 128 --max-tokens 1024 --batches 16,64 --modes elastic,chunk:8,chunk:16 --rates 8 --budget-s 310 --out $d/batches >> $d/log.txt 2>&1
    echo "batches $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
