"""Scratch (device): chunk attention time with the default q-tile height vs one tall enough for a whole block,
on windows that straddle the default tile (1.7B and 8B heads, prefix 512 and 1024)."""
import random, torch
import kernels.chunk_attention as ca
from kernels.bench_attention import paged_batch
from kernels.bench_timing import Timer

default_plan = ca.plan_launch
def tall_plan(num_tokens, num_requests, group, num_kv_heads, max_context, device, split_len=None):
    plan = default_plan(num_tokens, num_requests, group, num_kv_heads, max_context, device, split_len)
    block_q = max(plan.block_q, min(32, 128 // group))
    return ca.LaunchPlan(block_q, num_tokens // block_q + num_requests, plan.split_len, plan.num_splits)

def run(heads, windows, prefix):
    q_heads, kv_heads = heads
    batch = paged_batch(windows, [prefix] * len(windows), q_heads, kv_heads, 128, 16, torch.bfloat16, "cuda")
    out, timer = {}, Timer(torch.device("cuda"))
    for name, planner in (("default", default_plan), ("tall", tall_plan)):
        ca.plan_launch = planner
        fn = lambda: ca.chunk_attention(**batch, block_size=32, scale=128 ** -0.5)
        out[name] = round(timer(fn), 4)
    ca.plan_launch = default_plan
    out["tall/default"] = round(out["tall"] / out["default"], 3)
    return out

random.seed(0)
for heads in ((16, 8), (32, 8)):
    for prefix in (512, 1024):
        for b, lo, hi in ((64, 16, 16), (64, 17, 20), (64, 12, 20), (16, 16, 16), (16, 17, 24), (128, 1, 1), (128, 8, 8), (4, 32, 32)):
            windows = [random.randint(lo, hi) for _ in range(b)]
            print(heads, prefix, b, f"{lo}-{hi}", run(heads, windows, prefix), flush=True)
