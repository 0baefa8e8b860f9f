"""Trains optimus-tiny (block diffusion, SDAR-style) or its AR twin on the packed training set.

    python -m optimus_backend.training.data --out data/optimus-tiny
    python -m optimus_backend.training.train --kind bd --data data/optimus-tiny --out models/optimus-tiny
    python -m optimus_backend.training.train --kind ar --data data/optimus-tiny --out models/optimus-tiny-ar

Block diffusion: masked-diffusion loss inside each response block over BD3-style clean + noisy copies with
window truncation (see packing.py). AR: next-token loss on the response. On CUDA the attention is
FlexAttention with a block mask, under bf16 autocast and torch.compile; on CPU a dense bool mask.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import save_checkpoint
from ..model import AttentionFn, ModelConfig, Transformer, dense_mask_attention
from ..tokenizer import Tokenizer
from .data import TRAIN_FILE
from .packing import Batch, Packed, allowed, dense_mask, draw, pack

SHAPES = {  # ~10.5M parameters with the 2048-token vocabulary
    "tiny": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=64),
    "test": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
}
BLOCK_SIZE = 32


def model_config(kind: str, shape: str, tokenizer: Tokenizer) -> ModelConfig:
    """``sdar`` (block size, mask id) for "bd", causal ``qwen3`` for "ar"."""
    diffusion = kind == "bd"
    return ModelConfig(
        vocab_size=tokenizer.vocab_size, **SHAPES[shape], model_type="sdar" if diffusion else "qwen3",
        rope_theta=10_000.0, max_position_embeddings=4096, causal=not diffusion,
        block_size=BLOCK_SIZE if diffusion else 1,
        mask_token_id=tokenizer.token_id("<|mask|>") if diffusion else None,
        eos_token_ids=[tokenizer.token_id("<|eos|>")], pad_token_id=tokenizer.token_id("<|pad|>"),
    )


def init_weights(model: Transformer) -> None:
    """GPT-style: N(0, 0.02), residual output projections scaled down by depth."""
    residual_std = 0.02 / math.sqrt(2 * model.config.num_hidden_layers)
    for name, param in model.named_parameters():
        if param.dim() == 2:
            std = residual_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            nn.init.normal_(param, std=std)


def load_packed(data: Path, kind: str, row_len: int, pad_id: int, seed: int) -> Packed:
    with lzma.open(data / TRAIN_FILE) as f:
        raw = np.load(io.BytesIO(f.read()))
    return pack(raw["tokens"], raw["prompt_len"], raw["length"], kind, BLOCK_SIZE, row_len, pad_id, seed)


class FlexMask:
    """FlexAttention over [N, T] metadata buffers that each step overwrites in place (one mask_mod)."""

    def __init__(self, rows: int, row_len: int, device: torch.device):
        from torch.nn.attention.flex_attention import create_block_mask

        self.create = create_block_mask
        self.rows, self.row_len, self.device = rows, row_len, device
        self.doc = torch.zeros(rows, row_len, dtype=torch.int32, device=device)
        self.blk = torch.zeros_like(self.doc)
        self.noisy = torch.zeros(rows, row_len, dtype=torch.bool, device=device)
        self.visible = torch.zeros_like(self.noisy)
        doc, blk, noisy, visible = self.doc, self.blk, self.noisy, self.visible

        def mask_mod(b, h, q, k):
            return allowed(doc[b, q], doc[b, k], noisy[b, q], noisy[b, k], blk[b, q], blk[b, k], visible[b, k])

        self.mask_mod = mask_mod

    def block_mask(self, batch: Batch):
        for buffer, value in ((self.doc, batch.doc), (self.blk, batch.blk), (self.noisy, batch.noisy),
                              (self.visible, batch.visible)):
            buffer.copy_(value)
        return self.create(self.mask_mod, self.rows, None, self.row_len, self.row_len, device=self.device,
                           _compile=True)


def flex_attention_fn(block_mask) -> AttentionFn:
    """FlexAttention with ``block_mask`` (compiled as part of the whole training step)."""
    from torch.nn.attention.flex_attention import flex_attention

    def attend(layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k = q.to(v.dtype), k.to(v.dtype)
        out = flex_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=block_mask,
                             enable_gqa=True)
        return out.transpose(1, 2)

    return attend


def loss_of(model: Transformer, inputs: Tensor, pos: Tensor, labels: Tensor, attention: AttentionFn) -> Tensor:
    logits = model.logits(model(inputs, pos, attention)).float()
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)


def flex_loss(model: Transformer, inputs: Tensor, pos: Tensor, labels: Tensor, block_mask) -> Tensor:
    return loss_of(model, inputs, pos, labels, flex_attention_fn(block_mask))


class Schedule:
    """Progress in [0, 1] over --steps and/or the --time-budget left after the first (compiling) step;
    linear warm-up, then cosine decay to 10% of the peak learning rate."""

    def __init__(self, args: argparse.Namespace, start: float):
        self.args, self.start, self.first_done = args, start, None

    def progress(self, step: int) -> float:
        by_steps = step / self.args.steps if self.args.steps else 0.0
        if not self.args.time_budget or self.first_done is None:
            return by_steps
        end = self.start + self.args.time_budget
        return max(by_steps, (time.time() - self.first_done) / max(end - self.first_done, 1e-9))

    def lr(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.args.warmup)
        return self.args.lr * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(self.progress(step), 1.0))))


def save(model: Transformer, out: Path, data: Path) -> None:
    save_checkpoint(model, out, tokenizer_dir=data)
    generation = {"max_new_tokens": 64, "threshold": 0.9, "eos_token_id": model.config.eos_token_ids,
                  "pad_token_id": model.config.pad_token_id}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


def train(args: argparse.Namespace) -> dict:
    start = time.time()
    torch.manual_seed(args.seed)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    tokenizer = Tokenizer(args.data)
    model = Transformer(model_config(args.kind, args.shape, tokenizer))
    init_weights(model)
    model.to(device)
    packed = load_packed(args.data, args.kind, args.row_len, model.config.pad_token_id, args.seed).to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.kind}: {params / 1e6:.2f}M parameters, {packed.ids.shape[0]} rows of {args.row_len}, "
          f"{int(packed.target.sum())} scored slots, setup {time.time() - start:.1f}s", flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), fused=cuda)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    flex = FlexMask(args.rows, args.row_len, device) if cuda else None
    step_loss = torch.compile(flex_loss) if cuda else None
    mask_id = model.config.mask_token_id
    schedule, step, history, losses, timer = Schedule(args, start), 0, [], [], None
    while schedule.progress(step) < 1.0:
        lr = schedule.lr(step)
        for group in opt.param_groups:
            group["lr"] = lr
        rows = torch.randint(packed.ids.shape[0], (args.rows,), device=device, generator=generator)
        batch = draw(packed, rows, args.kind, BLOCK_SIZE, mask_id, generator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            if cuda:
                loss = step_loss(model, batch.inputs, batch.pos, batch.labels, flex.block_mask(batch))
            else:
                attention = dense_mask_attention(dense_mask(batch))
                loss = loss_of(model, batch.inputs, batch.pos, batch.labels, attention)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.detach())
        step += 1
        if schedule.first_done is None:
            schedule.first_done = time.time()
            print(f"first step (compile) done at {schedule.first_done - start:.1f}s", flush=True)
        if step == args.warmup_timing:
            if cuda:
                torch.cuda.synchronize()
            timer = (time.time(), step)
        if step % args.log_every == 0:
            rate = (step - timer[1]) / (time.time() - timer[0]) if timer and step > timer[1] else None
            record = {"step": step, "loss": round(float(torch.stack(losses).mean()), 4), "lr": round(lr, 6),
                      "elapsed_s": round(time.time() - start, 1), "steps_per_s": rate and round(rate, 2),
                      "tokens_per_s": rate and round(rate * batch.inputs.numel())}
            history.append(record)
            losses = []
            print(json.dumps(record), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    save(model.to("cpu").float(), args.out, args.data)
    summary = {"kind": args.kind, "shape": args.shape, "parameters": params, "steps": step,
               "final_loss": history[-1]["loss"] if history else None,
               "wall_s": round(time.time() - start, 1), "device": torch.cuda.get_device_name() if cuda else "cpu",
               "history": history}
    (args.out / "training_log.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train optimus-tiny (bd) or its AR twin (ar).")
    parser.add_argument("--kind", choices=("bd", "ar"), required=True)
    parser.add_argument("--data", type=Path, default=Path("data/optimus-tiny"), help="from training.data")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--rows", type=int, default=32, help="packed rows per step")
    parser.add_argument("--row-len", type=int, default=2048, help="tokens per packed row")
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    parser.add_argument("--time-budget", type=float, default=0.0,
                        help="stop this many wall seconds after start, setup included (0: no limit)")
    parser.add_argument("--device", default="auto", help="auto: cuda when available (FlexAttention, bf16, "
                        "torch.compile), else cpu (dense mask, float32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--warmup-timing", type=int, default=20, help="steps excluded from steps/s")
    args = parser.parse_args(argv)
    if not args.steps and not args.time_budget:
        parser.error("give --steps or --time-budget")
    return args


def main(argv: list[str] | None = None) -> None:
    summary = train(parse_args(argv))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))


if __name__ == "__main__":
    main()
