#!/usr/bin/env bash
# A/B on one host: GPU 0 runs the cheaper elastic choice without the graph warm replay (verify/base), GPU 1 runs
# HEAD (with it). Each profiles the 1.7B shape, runs the offline batch sweep (1, 4, 16, 64 requests of 1024 tokens;
# elastic, chunk:16, chunk:8), the elastic trace (rate 16, then offline 4, 16, 64 of 512 tokens), the 128 / 256 req/s
# points with offline b=64 (256 tokens; elastic, chunk:8, chunk:16), and the batch sweep again.
# verify/base: `git archive f2c3872 | tar -x -C verify/base`, less docs/ and tests/, models/ a link to the checkout's;
# HEAD was 3c1ad5d.
set -uo pipefail
root=$PWD
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.log
replay=$root/docs/benchmarks/acceptance-synthetic.json
for g in 0 1; do
  (
    tree=$root; [[ $g == 0 ]] && tree=$root/verify/base
    cd $tree; export PYTHONPATH=$tree CUDA_VISIBLE_DEVICES=$g
    d=$OUT/gpu$g; mkdir -p $d; start=$SECONDS
    common="--shapes qwen3-1.7b --hf-batches= --duration 5 --replay $replay --prompt-len 128"
    timeout 150 python3 -m optimus_backend.cli profile --device cuda --batches 1 4 16 32 64 96 128 --prefixes 128 512 --repeats 5 --shape qwen3-1.7b --out $d/profile.json > $d/log.txt 2>&1
    python3 -m optimus_backend.cli profile --here --install $d/profile.json >> $d/log.txt 2>&1
    echo "profile $((SECONDS-start)) s" >> $d/log.txt
    timeout 120 python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 110 --out $d/batches1 >> $d/log.txt 2>&1
    echo "batches1 $((SECONDS-start)) s" >> $d/log.txt
    timeout 70 python3 $root/scripts/controller_trace.py --shape qwen3-1.7b --modes elastic --replay $replay --prompt-len 128 --max-tokens 512 --rate 16 --offline 4,16,64 --out $d >> $d/log.txt 2>&1
    echo "trace $((SECONDS-start)) s" >> $d/log.txt
    timeout 125 python3 -m loadtest.scale $common --max-tokens 256 --batches 64 --modes elastic,chunk:8,chunk:16 --budget-s 115 --rates 128,256 --out $d/rates >> $d/log.txt 2>&1
    echo "rates $((SECONDS-start)) s" >> $d/log.txt
    timeout 120 python3 -m loadtest.scale $common --max-tokens 1024 --batches 1,4,16,64 --modes elastic,chunk:16,chunk:8 --rates 16 --budget-s 110 --out $d/batches2 >> $d/log.txt 2>&1
    echo "batches2 $((SECONDS-start)) s" >> $d/log.txt
    tar -C $OUT -czf $OUT/gpu$g.tgz gpu$g && rm -rf $d
  ) &
done
wait
