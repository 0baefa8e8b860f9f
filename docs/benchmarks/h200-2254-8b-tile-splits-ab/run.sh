#!/usr/bin/env bash
# The 8B shape (Qwen3-8B heads: GROUP 4, so q tiles of 4-32 rows) on one host of two GPUs: GPU 0 runs
# verify/base (3ea271b), GPU 1 runs HEAD (q tiles from the step's longest window, per-request prefix splits).
# Each: its own profile of the 8B shape, then the offline batch sweep (1, 4, 16, 64 requests of 1024 tokens;
# elastic, chunk:16, chunk:8).
# verify/base: `git archive 3ea271b | tar -x -C verify/base`, less docs/ and tests/, models/ a link to the checkout's.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile_cmd="python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 64 128 --prefixes 512 --chunks 1 2 4 8 12 16 17 24 32 --repeats 3 --shape qwen3-8b"
for g in 0 1; do
  (
    tree=$root; [[ $((g % 2)) == 0 ]] && tree=$root/verify/base
    mkdir -p /tmp/tree$g && cp -a $tree/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g  # its own copy: the profile cache lives in the tree (.cache/profiles)
    cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    timeout 210 $profile_cmd --out $d/profile.json >> $d/log.txt 2>&1
    python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
    echo "profile $((SECONDS-start)) s" >> $d/log.txt
    timeout 300 python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 5 --replay $replay --prompt-len 128 --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 8 --budget-s 290 --out $d/batches >> $d/log.txt 2>&1
    echo "batches $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
