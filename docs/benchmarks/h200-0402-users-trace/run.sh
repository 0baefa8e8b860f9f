#!/usr/bin/env bash
# Controller traces of the 8B closed-loop users load of h200-0432-users: elastic on GPU 0, fixed chunk:4 on GPU 1,
# both with the 22:54 8B profile (h200-2254 gpu1) installed. In-process engine, random bf16 weights, prompt 128,
# 256 tokens out, synthetic acceptance replayed.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
users="users:10@2,4~64,10@64,4~8,10@8,4~128,10@128,4~1,10@1"
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree:$tree/scripts CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; mode=elastic; [[ $g == 1 ]] && mode=chunk:4
    echo "tree ${TREE:-unknown}" > $d/log.txt
    python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json >> $d/log.txt 2>&1
    timeout 400 python3 scripts/controller_trace.py --shape qwen3-8b --modes $mode --replay docs/benchmarks/acceptance-synthetic.json \
      --prompt-len 128 --max-tokens 256 --load "$users" --out $d >> $d/log.txt 2>&1
    gzip $d/trace_*.json
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
