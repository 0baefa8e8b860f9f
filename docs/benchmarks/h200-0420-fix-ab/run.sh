#!/usr/bin/env bash
# A/B of the record's batch and the prefill in the choice (HEAD) against verify/base (60d37b3, before), two H200s
# of one host: a controller trace of elastic on the 8B closed-loop users load of h200-0332-users, warmed up with one
# request, the 22:54 8B profile (h200-2254 gpu1) installed. GPU 0 runs HEAD, GPU 1 the base.
# The base arm did not run: its tree has no docs/, so the relative --replay path did not resolve (gpu1/log.txt).
# verify/base: `git archive 60d37b3 | tar -x -C verify/base`, less docs/, tests/ and models/ (a link to the checkout's).
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
users="users:10@2,4~64,10@64,4~8,10@8,4~128,10@128,4~1,10@1"
for g in 0 1; do
  (
    tree=$root; [[ $g == 1 ]] && tree=$root/verify/base
    mkdir -p /tmp/tree$g && cp -a $tree/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree:$tree/scripts CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d
    [[ $g == 0 ]] && echo "tree ${TREE:-HEAD}" > $d/log.txt || echo "tree 60d37b3" > $d/log.txt
    python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json >> $d/log.txt 2>&1
    timeout 245 python3 scripts/controller_trace.py --shape qwen3-8b --modes elastic --replay docs/benchmarks/acceptance-synthetic.json \
      --prompt-len 128 --max-tokens 256 --load "$users" --warm-batch 1 --out $d >> $d/log.txt 2>&1
    gzip $d/trace_*.json
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
