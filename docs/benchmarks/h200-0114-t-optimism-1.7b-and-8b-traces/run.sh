#!/usr/bin/env bash
# Four GPUs of one host. verify/base is c73b013 (no optimism in T), HEAD has it (f900b0f).
# GPU 0 (base) and GPU 1 (HEAD): the 1.7B A/B with the same installed profile (22:45, h200-2245 gpu1): closed
# batches of 1, 4, 16, 64 requests of 1024 tokens (elastic, chunk:16, chunk:8), the wave, the batches again.
# GPU 2 (HEAD) and GPU 3 (base): controller traces of the 8B shape (profile 22:54, h200-2254 gpu1): the 8 req/s point
# then closed batches of 16 and 64 (1024 tokens); GPU 2 runs elastic, chunk:6, elastic; GPU 3 elastic, chunk:8, elastic.
# verify/base: `git archive c73b013 | tar -x -C verify/base`, less docs/, tests/ and models/ (a link to the checkout's).
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
for g in 0 1 2 3; do
  (
    tree=$root; [[ $g == 0 || $g == 3 ]] && tree=$root/verify/base
    mkdir -p /tmp/tree$g && cp -a $tree/. /tmp/tree$g/ && rm -rf /tmp/tree$g/models && ln -s $root/models /tmp/tree$g/models
    tree=/tmp/tree$g; cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    [[ $tree == $root ]] && git -C $root log -1 --format=%h > $d/log.txt || echo c73b013 > $d/log.txt
    if [[ $g -lt 2 ]]; then
      python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2245-tile-splits-ab/gpu1/profile.json >> $d/log.txt 2>&1
      common="--shapes qwen3-1.7b --hf-batches= --duration 5 --replay $replay --prompt-len 128"
      timeout 125 python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 115 --out $d/batches1 >> $d/log.txt 2>&1
      echo "batches1 $((SECONDS-start)) s" >> $d/log.txt
      timeout 220 python3 -m loadtest.scale --shapes qwen3-1.7b --hf-batches= --duration 3 --replay $replay --prompt-len 128 --max-tokens 256 --modes elastic,chunk:8,chunk:16 --batches 1 --rates 16 --changing "wave=6@9,6~73,6@73,6~17,6@17,6~52,6@4" --budget-s 210 --out $d/wave >> $d/log.txt 2>&1
      echo "wave $((SECONDS-start)) s" >> $d/log.txt
      timeout $((550 - SECONDS + start)) python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 115 --out $d/batches2 >> $d/log.txt 2>&1
      echo "batches2 $((SECONDS-start)) s" >> $d/log.txt
    else
      python3 -m optimus_backend.cli profile --here --install $root/docs/benchmarks/h200-2254-8b-tile-splits-ab/gpu1/profile.json >> $d/log.txt 2>&1
      modes=elastic,chunk:6; [[ $g == 3 ]] && modes=elastic,chunk:8
      trace="python3 $root/scripts/controller_trace.py --shape qwen3-8b --replay $replay --rate 8 --prompt-len 128 --max-tokens 1024 --offline 16,64"
      timeout 330 $trace --modes $modes --out $d/trace1 >> $d/log.txt 2>&1
      echo "trace1 $((SECONDS-start)) s" >> $d/log.txt
      timeout $((550 - SECONDS + start)) $trace --modes elastic --out $d/trace2 >> $d/log.txt 2>&1
      echo "trace2 $((SECONDS-start)) s" >> $d/log.txt
    fi
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
