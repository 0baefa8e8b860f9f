#!/usr/bin/env bash
# One device call: CUDA engine tests, then engine-step profiles of the Qwen3 shapes (JSON + PNG under $OUT).
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pytest -q -x tests/test_engine_cuda.py 2>&1 | tail -15
for shape in ${SHAPES:-qwen3-8b}; do
  python3 -m optimus_backend.cli profile --shape "$shape" --device cuda ${PROFILE_ARGS:-} \
    --out "$OUT/profile_${shape}.json" --plot "$OUT/profile_${shape}.png" 2>&1 | grep -v "profiling T" | tail -80
done
