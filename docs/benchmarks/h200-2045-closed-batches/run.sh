#!/usr/bin/env bash
# HEAD fa03527 + trace script: GPU 0 profiles the 1.7B shape, traces elastic / chunk:16 / bd through a rate point and
# offline batches of 4, 16 and 64 (512 tokens each), then the offline batch sweep with 1024-token requests;
# GPU 1 profiles and repeats elastic, chunk:8, chunk:16 at 128 and 256 req/s and offline b=64 (256 tokens).
set -uo pipefail
root=$PWD
export PYTHONPATH=$root OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
profile="python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5 --shape qwen3-1.7b"
replay=$root/docs/benchmarks/acceptance-synthetic.json
common="--shapes qwen3-1.7b --hf-batches= --duration 5 --replay $replay --prompt-len 128"
for g in 0 1; do
  (
    d=$OUT/gpu$g; mkdir -p $d; export CUDA_VISIBLE_DEVICES=$g
    start=$SECONDS
    timeout 150 $profile --out $d/profile.json > $d/log.txt 2>&1
    python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
    echo "profile $((SECONDS-start)) s" >> $d/log.txt
    if [[ $g == 0 ]]; then
      timeout 150 python3 scripts/controller_trace.py --shape qwen3-1.7b --modes elastic,chunk:16,bd --replay $replay --prompt-len 128 --max-tokens 512 --rate 16 --offline 4,16,64 --out $d >> $d/log.txt 2>&1
      echo "trace $((SECONDS-start)) s" >> $d/log.txt
      timeout 200 python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,bd,chunk:8 --rates 16 --budget-s 190 --out $d/batches >> $d/log.txt 2>&1
      echo "batches $((SECONDS-start)) s" >> $d/log.txt
    else
      for run in 1 2 3; do
        (( SECONDS - start > 400 )) && break
        timeout 140 python3 -m loadtest.scale $common --max-tokens 256 --batches 64 --modes elastic,chunk:8,chunk:16 --budget-s 120 --rates 128,256 --out $d/run$run >> $d/log.txt 2>&1
        echo "run$run $((SECONDS-start)) s" >> $d/log.txt
      done
    fi
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
