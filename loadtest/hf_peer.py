"""The external AR peer: Hugging Face transformers ``generate`` (greedy, batched, static KV cache) on a named
random-weight shape, as /work/shared/reference/hf_ar_*.json measured it: output tokens per second of one batch.

A static cache makes ``generate`` compile the forward; the first call per batch size is the warm-up (compilation
included) and is not timed.
"""

from __future__ import annotations

import time


def build_model(shape: str):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from optimus_backend.checkpoint import SHAPES

    dims = SHAPES[shape]
    config = Qwen3Config(**dims, max_position_embeddings=4096, eos_token_id=None, pad_token_id=0)
    with torch.device("cuda"):
        model = Qwen3ForCausalLM._from_config(config, dtype=torch.bfloat16)
    return model.eval()


def generate_throughput(model, batch: int, prompt_len: int, new_tokens: int, cache: str = "static") -> dict:
    """Output tokens/s of one timed ``generate`` of ``batch`` random prompts after an untimed warm-up."""
    import torch

    generator = torch.Generator(device="cuda").manual_seed(batch)
    ids = torch.randint(1, model.config.vocab_size - 1, (batch, prompt_len), device="cuda", generator=generator)
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                  do_sample=False, cache_implementation=cache)
    with torch.inference_mode():
        model.generate(ids, **kwargs)
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(ids, **kwargs)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    tokens = (out.shape[1] - prompt_len) * batch
    return {"peer": f"hf-transformers generate ({cache} cache)", "batch": batch, "prompt_len": prompt_len,
            "new_tokens": new_tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed}
