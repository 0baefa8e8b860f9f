#!/usr/bin/env bash
# The 8B near-tie loads (4 and 16 users, where chunk:16 is the best fixed chunk), elastic against chunk:16, twice
# per GPU with the mode order swapped between passes. GPU 0 runs the controller as committed (Z = 0.7), GPU 1 with
# Z = 0.35 (edited in its copy of the tree). GPU 0 first runs the CUDA engine tests. Both install the 8B profile
# measured on this tree at 08:26 (../gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b).
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
profile=$root/docs/benchmarks/gpu-concurrency-fresh-profiles-2026-11-28/qwen3-8b/profile.json
users="u4a=users:12@4;u16a=users:12@16;u1=users:12@1;u4b=users:12@4;u16b=users:12@16"
for g in 0 1; do
  (
    mkdir -p /tmp/tree$g && cp -a $root/. /tmp/tree$g/ 2>/dev/null; rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    if [[ $g == 1 ]]; then sed -i 's/^Z = 0.7 /Z = 0.35 /' optimus_backend/controller.py; fi
    grep -n '^Z = ' optimus_backend/controller.py >> $d/log.txt
    python3 -m optimus_backend.cli profile --here --install $profile >> $d/log.txt 2>&1
    if [[ $g == 0 ]]; then
      timeout 110 python3 -m pytest -q tests/test_engine_cuda.py > $d/pytest.txt 2>&1
      echo "pytest rc $? $((SECONDS-start)) s" >> $d/log.txt
    fi
    pass=0
    for modes in elastic,chunk:16 chunk:16,elastic; do
      pass=$((pass+1)); left=$((560 - (SECONDS-start)))
      (( left < 150 )) && break
      timeout $left python3 -m loadtest.scale --shapes qwen3-8b --hf-batches= --duration 3 --replay $replay \
        --prompt-len 128 --max-tokens 256 --modes $modes --batches 1 --rates 16 --changing "$users" \
        --budget-s $((left-10)) --out $d/pass$pass >> $d/log.txt 2>&1
      echo "pass$pass $((SECONDS-start)) s" >> $d/log.txt
    done
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
