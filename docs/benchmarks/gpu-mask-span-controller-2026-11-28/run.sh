#!/usr/bin/env bash
# The 8B near-tie and saturating loads (4, 16 and 64 users, 10 s each) on one H200 after the elastic controller
# learned acceptance per window from the first MASK (clip(c - lead, 0, span)): elastic, chunk:16 and chunk:8, the
# best fixed chunks there in the earlier runs. Installs the 8B profile measured on this tree's step code at 08:26.
# That controller was tried and not kept (docs/CONTROLLER.md, "Learning per window"); it was never committed.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1 PYTHONPATH=$root
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile=$root/docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b/profile.json
d=$OUT/gpu0; mkdir -p $d; start=$SECONDS
python3 -m optimus_backend.cli profile --here --install $profile >> $d/log.txt 2>&1
timeout 235 python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 3 --replay $replay \
  --prompt-len 128 --max-tokens 256 --modes elastic,chunk:16,chunk:8 --batches 1 --rates 16 \
  --changing "u4=users:10@4;u16=users:10@16;u64=users:10@64" --budget-s 225 --out $d/users >> $d/log.txt 2>&1
echo "users $((SECONDS-start)) s" >> $d/log.txt
tar -C $OUT -czf $OUT/gpu0.tgz gpu0 && cp $d/users/changing.csv $OUT/ && rm -rf $d
