#!/usr/bin/env bash
# One-off A/B (not committed): per GPU, elastic and chunk:8 on the 1.7B shape with the tree before (ab_old, 966e4c5)
# and after the chunk chosen ahead, interleaved old/new/new/old, one profile per GPU installed in both trees.
set -uo pipefail
root=$PWD
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
args="--shapes qwen3-1.7b --hf-batches= --duration 5 --replay $root/docs/benchmarks/acceptance-synthetic.json --batches 64 --modes elastic,chunk:8 --budget-s 60 --prompt-len 128 --max-tokens 256 --rates 128,256"
for g in 0; do
  (
    d=$OUT/gpu$g; mkdir -p $d; export CUDA_VISIBLE_DEVICES=$g OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
    cd $root && PYTHONPATH=$root timeout 200 python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5 --shape qwen3-1.7b --out $d/profile.json > $d/log.txt 2>&1
    PYTHONPATH=$root python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
    (cd $root/ab_old && PYTHONPATH=$root/ab_old python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1)
    for run in old1 new1 new2 old2; do
      tree=$root; [[ $run == old* ]] && tree=$root/ab_old
      (cd $tree && PYTHONPATH=$tree timeout 110 python3 -m loadtest.scale $args --out $d/$run >> $d/log.txt 2>&1)
    done
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
