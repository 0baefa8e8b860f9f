#!/usr/bin/env bash
# A/B on one host of four GPUs: GPUs 0 and 2 run verify/base (3ea271b: q tiles from the CUDA graph bucket's mean
# window, prefix splits from the page table's width), GPUs 1 and 3 run HEAD (6c0e9ce: q tiles from the step's longest
# window, graphs keyed by the tile; each request splits its own prefix).
# GPUs 0/1: the 1.7B profile, the offline batch sweep (1, 4, 16, 64 requests of 1024 tokens; elastic, chunk:16,
# chunk:8), the 128 / 256 req/s points with offline b=64 (256 tokens), and the batch sweep again.
# GPUs 2/3: (3 only) the CUDA tests, then the 1.7B profile, the 1.7B wave (elastic, chunk:8, chunk:16) and the
# batch sweep.
# verify/base: `git archive 3ea271b | tar -x -C verify/base`, less docs/ and tests/, models/ a link to the checkout's.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile_cmd="python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --chunks 1 2 4 8 12 16 17 20 24 32 --repeats 5 --shape qwen3-1.7b"
for g in 0 1 2 3; do
  (
    tree=$root; [[ $((g % 2)) == 0 ]] && tree=$root/verify/base
    if [[ $g -ge 2 ]]; then  # its own copy: the profile cache lives in the tree (.cache/profiles)
      mkdir -p /tmp/tree$g && cp -a $tree/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
      tree=/tmp/tree$g
    fi
    cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    common="--shapes qwen3-1.7b --hf-batches= --duration 5 --replay $replay --prompt-len 128"
    if [[ $g == 3 ]]; then
      timeout 100 python3 -m pytest -q tests/test_engine_cuda.py > $d/pytest.txt 2>&1
      echo "pytest rc $? $((SECONDS-start)) s" >> $d/log.txt
    fi
    timeout 150 $profile_cmd --out $d/profile.json >> $d/log.txt 2>&1
    python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
    echo "profile $((SECONDS-start)) s" >> $d/log.txt
    if [[ $g -lt 2 ]]; then
      timeout 125 python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 115 --out $d/batches1 >> $d/log.txt 2>&1
      echo "batches1 $((SECONDS-start)) s" >> $d/log.txt
      timeout 130 python3 -m loadtest.scale $common --max-tokens 256 --batches 64 --modes elastic,chunk:8,chunk:16 --budget-s 120 --rates 128,256 --out $d/rates >> $d/log.txt 2>&1
      echo "rates $((SECONDS-start)) s" >> $d/log.txt
    else
      timeout 220 python3 -m loadtest.scale --shapes qwen3-1.7b --hf-batches= --duration 3 --replay $replay --prompt-len 128 --max-tokens 256 --modes elastic,chunk:8,chunk:16 --batches 1 --rates 16 --changing "wave=6@9,6~73,6@73,6~17,6@17,6~52,6@4" --budget-s 210 --out $d/wave >> $d/log.txt 2>&1
      echo "wave $((SECONDS-start)) s" >> $d/log.txt
    fi
    timeout 125 python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 115 --out $d/batches2 >> $d/log.txt 2>&1
    echo "batches2 $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
