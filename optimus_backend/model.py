"""A Qwen3/Qwen2/Llama-architecture transformer whose attention is supplied by the caller.

The same definition serves training (dense or FlexAttention masks), the reference decoder (a dense KV
tensor) and the engine (paged KV cache + chunk-attention kernel): each passes its own ``AttentionFn``.
Module names follow Hugging Face's so checkpoints load without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kernels.activation_ref import silu_mul_reference
from kernels.rms_norm_ref import add_rms_norm_reference, rms_norm_reference
from kernels.rope_ref import qk_norm_rope_reference, rope_cos_sin

if TYPE_CHECKING:
    from kernels import Kernels

# (layer index, q [N,T,Hq,D], k [N,T,Hkv,D], v [N,T,Hkv,D]) -> [N,T,Hq,D]
AttentionFn = Callable[[int, Tensor, Tensor, Tensor], Tensor]


@dataclass
class ModelConfig:
    """Architecture and decoding facts read from a checkpoint's config.json."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    model_type: str = "qwen3"
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    qk_norm: bool = True  # Qwen3 / SDAR
    qkv_bias: bool = False  # Qwen2 / Fast-dLLM v2
    logits_shift: bool = False  # AR twins and Fast-dLLM v2: the logits of position p predict p + 1
    causal: bool = False  # AR checkpoints: decode with c = 1 and causal attention
    block_size: int = 32  # 1 for causal checkpoints
    mask_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int | None = None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.impl = rms_norm_reference  # swapped by Transformer.use_kernels
        self.add_impl = add_rms_norm_reference

    def forward(self, x: Tensor) -> Tensor:
        return self.impl(x, self.weight, self.eps)

    def add(self, x: Tensor, residual: Tensor) -> tuple[Tensor, Tensor]:
        """(norm(x + residual), x + residual): the residual add fused into the norm."""
        return self.add_impl(x, residual, self.weight, self.eps)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.num_heads * self.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, cfg.hidden_size, bias=False)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.qk_norm = cfg.qk_norm
        self.eps = cfg.rms_norm_eps
        self.qk_norm_rope = qk_norm_rope_reference  # swapped by Transformer.use_kernels
        self.qkv_weight: Tensor | None = None  # set by fuse_projections
        self.qkv_bias: Tensor | None = None

    def fuse_projections(self) -> None:
        """One [q; k; v] GEMM instead of three; the separate weights become views of the fused one."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        self.qkv_weight = _fuse([linear.weight for linear in projections])
        if self.q_proj.bias is not None:
            self.qkv_bias = _fuse([linear.bias for linear in projections])

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attention: AttentionFn) -> Tensor:
        n, t, _ = x.shape
        if self.qkv_weight is not None:
            qkv = F.linear(x, self.qkv_weight, self.qkv_bias).view(n, t, -1, self.head_dim)
            q, k, v = qkv.split([self.num_heads, self.num_kv_heads, self.num_kv_heads], dim=2)
        else:
            q = self.q_proj(x).view(n, t, self.num_heads, self.head_dim)
            k = self.k_proj(x).view(n, t, self.num_kv_heads, self.head_dim)
            v = self.v_proj(x).view(n, t, self.num_kv_heads, self.head_dim)
        q_weight, k_weight = (self.q_norm.weight, self.k_norm.weight) if self.qk_norm else (None, None)
        q, k = self.qk_norm_rope(q, k, cos, sin, q_weight, k_weight, self.eps)
        out = attention(self.layer, q, k, v)
        return self.o_proj(out.reshape(n, t, self.num_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.silu_mul = silu_mul_reference  # swapped by Transformer.use_kernels
        self.gate_up_weight: Tensor | None = None  # set by fuse_projections

    def fuse_projections(self) -> None:
        """One [gate; up] GEMM instead of two; the separate weights become views of the fused one."""
        self.gate_up_weight = _fuse([self.gate_proj.weight, self.up_proj.weight])

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_up_weight is not None:
            gate_up = F.linear(x, self.gate_up_weight)
        else:
            gate_up = torch.cat((self.gate_proj(x), self.up_proj(x)), dim=-1)
        return self.down_proj(self.silu_mul(gate_up))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.self_attn = SelfAttention(cfg, layer)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: Tensor, residual: Tensor | None, cos: Tensor, sin: Tensor,
                attention: AttentionFn) -> tuple[Tensor, Tensor]:
        """(this layer's MLP output, the residual stream before it); the caller adds the two, fused into the
        next norm. ``residual`` is None for the first layer, whose input is the residual stream itself."""
        if residual is None:
            h, residual = self.input_layernorm(x), x
        else:
            h, residual = self.input_layernorm.add(x, residual)
        h, residual = self.post_attention_layernorm.add(self.self_attn(h, cos, sin, attention), residual)
        return self.mlp(h), residual


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Transformer(nn.Module):
    """Decoder-only transformer; ``forward`` returns final hidden states, ``logits`` applies the LM head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: Tensor, positions: Tensor, attention: AttentionFn) -> Tensor:
        """input_ids, positions: [N, T] -> hidden [N, T, hidden_size] (after the final norm)."""
        x = self.model.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype)
        residual = None
        for layer in self.model.layers:
            x, residual = layer(x, residual, cos, sin, attention)
        return self.model.norm.add(x, residual)[0] if residual is not None else self.model.norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden)

    def use_kernels(self, kernels: Kernels) -> None:
        """Swaps the elementwise pieces (norms, q/k norm + RoPE, SiLU-and-multiply) for ``kernels``' versions."""
        for module in self.modules():
            if isinstance(module, RMSNorm):
                module.impl, module.add_impl = kernels.rms_norm, kernels.add_rms_norm
            elif isinstance(module, SelfAttention):
                module.qk_norm_rope = kernels.qk_norm_rope
            elif isinstance(module, MLP):
                module.silu_mul = kernels.silu_mul

    def fuse_projections(self) -> None:
        """Fuses q/k/v and gate/up into single GEMMs (inference only; no extra memory)."""
        for module in self.modules():
            if isinstance(module, (SelfAttention, MLP)):
                module.fuse_projections()


def _fuse(params: list[nn.Parameter]) -> Tensor:
    """Concatenates parameters along dim 0 and turns each into a view of the result (no extra memory)."""
    fused = torch.cat([param.data for param in params])
    for param, view in zip(params, fused.split([param.shape[0] for param in params])):
        param.data = view
    return fused


def repeat_kv(x: Tensor, num_heads: int) -> Tensor:
    """[N, S, Hkv, D] -> [N, S, num_heads, D] for grouped-query attention."""
    groups = num_heads // x.shape[2]
    return x if groups == 1 else x.repeat_interleave(groups, dim=2)


def masked_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """Plain SDPA: q [N,T,Hq,D], k/v [N,S,Hkv,D], allowed bool [N or 1, T, S] -> [N,T,Hq,D]."""
    k, v = repeat_kv(k, q.shape[2]), repeat_kv(v, q.shape[2])
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed.unsqueeze(1)
    )
    return out.transpose(1, 2)


def dense_mask_attention(allowed: Tensor) -> AttentionFn:
    """An AttentionFn over the fed tokens only, with a fixed bool mask [N or 1, T, T] (True = may attend)."""
    return lambda layer, q, k, v: masked_attention(q, k, v, allowed)
