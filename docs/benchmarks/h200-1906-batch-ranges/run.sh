#!/usr/bin/env bash
# After the per-batch-range step-time factors: GPUs 0-2 profile the 1.7B shape and repeat elastic, chunk:8, chunk:16
# (128 and 256 req/s, offline b=64); GPU 3 runs the offline batch sweep (1, 4, 16, 64) and one elastic trace.
set -uo pipefail
root=$PWD
export PYTHONPATH=$root OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
profile="python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5 --shape qwen3-1.7b"
replay=$root/docs/benchmarks/acceptance-synthetic.json
common="--shapes qwen3-1.7b --hf-batches= --duration 5 --replay $replay --prompt-len 128 --max-tokens 256"
for g in 0 1 2 3; do
  (
    d=$OUT/gpu$g; mkdir -p $d; export CUDA_VISIBLE_DEVICES=$g
    start=$SECONDS
    timeout 150 $profile --out $d/profile.json > $d/log.txt 2>&1
    python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
    echo "profile $((SECONDS-start)) s" >> $d/log.txt
    if [[ $g == 3 ]]; then
      timeout 200 python3 -m loadtest.scale $common --batches 1,4,16,64 --modes elastic,chunk:8,chunk:16,bd --rates 16 --budget-s 180 --out $d/batches >> $d/log.txt 2>&1
      echo "batches $((SECONDS-start)) s" >> $d/log.txt
      timeout 100 python3 scripts/controller_trace.py --shape qwen3-1.7b --modes elastic --replay $replay --prompt-len 128 --max-tokens 256 --offline 64 --rate 128 --out $d >> $d/log.txt 2>&1
      echo "trace $((SECONDS-start)) s" >> $d/log.txt
    else
      for run in 1 2 3; do
        (( SECONDS - start > 330 )) && break
        timeout 140 python3 -m loadtest.scale $common --batches 64 --modes elastic,chunk:8,chunk:16 --budget-s 120 --rates 128,256 --out $d/run$run >> $d/log.txt 2>&1
        echo "run$run $((SECONDS-start)) s" >> $d/log.txt
      done
    fi
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
