#!/usr/bin/env bash
# One H200 (GPU 1 of a two-GPU host, 2026-11-28 08:19 UTC), tree 686faaa + the engine's slow-step log: chunk
# attention with each request's pages in order (the layout the KV cache's admission by reservation makes), no Flex,
# c = 1, 4, 8 at P = 2048 and 8192 over the batch sizes. About 40 s.
CUDA_VISIBLE_DEVICES=1 timeout 200 python3 -m kernels.bench --no-flex --page-order sequential --batches 1 4 16 64 128 256 \
    --windows 1 4 8 --prefixes 2048 8192 --budget-s 150 --out $OUT/kernels_sequential.json
