#!/usr/bin/env bash
# One device call: CUDA tests, the step breakdown of the 8B shape, then engine-step profiles (JSON under $OUT,
# also left in the profile cache for a scale run on the same machine). Plots are drawn afterwards, off the GPU,
# with optimus_backend.cost_model.plot.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu_check.log"
python3 -m pytest -q -x tests/test_engine_cuda.py tests/test_kernels.py 2>&1 | tail -15 | tee -a "$OUT/gpu_check.log"
python3 scripts/profile_step.py qwen3-8b 2>&1 | tee -a "$OUT/gpu_check.log"
for target in ${PROFILE_TARGETS:---checkpoint=models/optimus-tiny --shape=qwen3-1.7b --shape=qwen3-8b}; do
  name=$(basename "${target#*=}")
  python3 -m optimus_backend.cli profile "$target" --device cuda ${PROFILE_ARGS:-} \
    --out "$OUT/profile_${name}.json" 2>&1 | grep -v "profiling T" | tail -5 | tee -a "$OUT/gpu_check.log"
  python3 -m optimus_backend.cli profile --install "$OUT/profile_${name}.json"
done
