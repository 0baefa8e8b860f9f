#!/usr/bin/env bash
# Verification of b8018fa (first-step ratio) and ff39964 (monotone profile) on the GPU: GPUs 0-2 profile the 1.7B
# shape and run three repeats of elastic, chunk:8, chunk:16 (128 and 256 req/s, offline b=64); GPU 3 runs the 1.7B
# wave twice with the same three modes.
set -uo pipefail
root=$PWD
export PYTHONPATH=$root OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
git -C $root log -1 --format=%H > $OUT/commit.txt 2>/dev/null
profile="python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5 --shape qwen3-1.7b"
common="--shapes qwen3-1.7b --hf-batches= --duration 5 --replay $root/docs/benchmarks/acceptance-synthetic.json --batches 64 --modes elastic,chunk:8,chunk:16 --prompt-len 128 --max-tokens 256"
for g in 0 1 2 3; do
  (
    d=$OUT/gpu$g; mkdir -p $d; export CUDA_VISIBLE_DEVICES=$g
    start=$SECONDS
    timeout 150 $profile --out $d/profile.json > $d/log.txt 2>&1
    python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
    echo "profile $((SECONDS-start)) s" >> $d/log.txt
    if [[ $g == 3 ]]; then
      for run in 1 2; do
        (( SECONDS - start > 330 )) && break
        timeout 240 python3 -m loadtest.scale $common --budget-s 220 --rates 128 --changing 'wave=6@9,6~73,6@73,6~17,6@17,6~52,6@4' --out $d/wave$run >> $d/log.txt 2>&1
        echo "wave$run $((SECONDS-start)) s" >> $d/log.txt
      done
    else
      for run in 1 2 3; do
        (( SECONDS - start > 440 )) && break
        timeout 140 python3 -m loadtest.scale $common --budget-s 120 --rates 128,256 --out $d/run$run >> $d/log.txt 2>&1
        echo "run$run $((SECONDS-start)) s" >> $d/log.txt
      done
    fi
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
