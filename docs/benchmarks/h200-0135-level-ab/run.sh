#!/usr/bin/env bash
# A/B of the step-time level (HEAD: a batch range's factor common to every c follows a drift of all step times)
# against verify/base (f900b0f: the optimism in T alone), four GPUs of one host; even GPUs run base, odd HEAD.
# GPUs 0/1: the 8B shape with the 22:54 profile (h200-2254 gpu1) installed: 16 and 64 requests of 1024 tokens
# (elastic, chunk:8, chunk:16) with the 8 req/s point, then 64 again.
# GPUs 2/3: the 1.7B shape with the 22:45 profile (h200-2245 gpu1): batches of 1, 4, 16, 64 requests of 1024 tokens
# (elastic, chunk:16, chunk:8), the wave, the batches again.
# verify/base: `git archive f900b0f | tar -x -C verify/base`, less docs/, tests/ and models/ (a link to the checkout's).
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
for g in 0 1 2 3; do
  (
    tree=$root; [[ $((g % 2)) == 0 ]] && tree=$root/verify/base
    mkdir -p /tmp/tree$g && cp -a $tree/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    [[ $((g % 2)) == 1 ]] && git -C $root log -1 --format=%h > $d/log.txt || echo f900b0f > $d/log.txt
    if [[ $g -lt 2 ]]; then
      python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json >> $d/log.txt 2>&1
      common="--shapes qwen3-8b --hf-batches= --duration 5 --replay $replay --prompt-len 128 --max-tokens 1024 --modes elastic,chunk:8,chunk:16"
      timeout 300 python3 -m loadtest.scale $common --batches 16,64 --rates 8 --budget-s 290 --out $d/batches1 >> $d/log.txt 2>&1
      echo "batches1 $((SECONDS-start)) s" >> $d/log.txt
      timeout $((545 - SECONDS + start)) python3 -m loadtest.scale $common --batches 64 --rates 8 --budget-s 230 --out $d/batches2 >> $d/log.txt 2>&1
      echo "batches2 $((SECONDS-start)) s" >> $d/log.txt
    else
      python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2245-tile-splits-ab/gpu1/profile.json >> $d/log.txt 2>&1
      common="--shapes qwen3-1.7b --hf-batches= --duration 5 --replay $replay --prompt-len 128"
      timeout 125 python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 115 --out $d/batches1 >> $d/log.txt 2>&1
      echo "batches1 $((SECONDS-start)) s" >> $d/log.txt
      timeout 220 python3 -m loadtest.scale --shapes qwen3-1.7b --hf-batches= --duration 3 --replay $replay --prompt-len 128 --max-tokens 256 --modes elastic,chunk:8,chunk:16 --batches 1 --rates 16 --changing "wave=6@9,6~73,6@73,6~17,6@17,6~52,6@4" --budget-s 210 --out $d/wave >> $d/log.txt 2>&1
      echo "wave $((SECONDS-start)) s" >> $d/log.txt
      timeout $((550 - SECONDS + start)) python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 115 --out $d/batches2 >> $d/log.txt 2>&1
      echo "batches2 $((SECONDS-start)) s" >> $d/log.txt
    fi
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
