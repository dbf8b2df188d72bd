"""The GPT decoder. GPT-1, GPT-2 and GPT-3 are the same module under different `GPTConfig`s.

Parameter names follow the GPT-2 release (wte, wpe, h.{i}.ln_1, attn.c_attn, attn.c_proj, ln_2,
mlp.c_fc, mlp.c_proj, ln_f) so checkpoints map one-to-one onto the published ones.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from gptlab.model.config import GPTConfig
from gptlab.model.kv_cache import KVCache
from gptlab.model.linear import Linear
from gptlab.model.local_attention import band_mask, local_attention


@dataclass
class AttentionMasks:
    """Explicit masks, built once per forward when padding or a cache rules out the fast paths."""

    dense: torch.Tensor  # [B, 1, Tq, Tk] bool
    local: torch.Tensor | None


SHORT_CONTEXT = 128
"""Up to this many positions, bf16 training on a CPU attends with plain matmuls (ShortCausalAttention)."""


class ShortCausalAttention(torch.autograd.Function):
    """Causal attention from the fused projection [B, T, 3C] to [B, T, C], written out with its backward: one
    scaled, masked score matmul, a softmax (accumulating in fp32 inside the kernel), dropout, one matmul.

    For bf16 training on a CPU over contexts up to SHORT_CONTEXT, where [T, T] scores are small. PyTorch's fused
    kernel runs bf16 backward in fp32 (about twice the time); autograd over the same ops lays out q, k and v
    one copy each, and scales the score gradients in separate passes. Here the heads are laid out in one copy
    each way and the 1/sqrt(D) scale rides in the matmuls.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, n_head: int, dropout_p: float) -> torch.Tensor:
        B, T, C3 = qkv.shape
        D = C3 // (3 * n_head)
        scale = 1.0 / math.sqrt(D)
        heads = qkv.view(B, T, 3, n_head, D).permute(2, 0, 3, 1, 4).reshape(3, B * n_head, T, D)
        q, k, v = heads.unbind(0)
        weights = torch.baddbmm(_causal_bias(T, qkv.dtype, qkv.device), q, k.transpose(1, 2), alpha=scale).softmax(-1)
        keep = torch.empty_like(weights).bernoulli_(1 - dropout_p).div_(1 - dropout_p) if dropout_p > 0 else None
        y = torch.bmm(weights if keep is None else weights * keep, v)
        ctx.save_for_backward(heads, weights, keep)
        ctx.n_head, ctx.scale = n_head, scale
        return y.view(B, n_head, T, D).transpose(1, 2).reshape(B, T, n_head * D)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        heads, weights, keep = ctx.saved_tensors
        H = ctx.n_head
        _, BH, T, D = heads.shape
        B = BH // H
        q, k, v = heads.unbind(0)
        grad_out = grad_y.reshape(B, T, H, D).transpose(1, 2).reshape(BH, T, D)
        grads = torch.empty_like(heads)
        grad_q, grad_k, grad_v = grads.unbind(0)
        torch.bmm((weights if keep is None else weights * keep).transpose(1, 2), grad_out, out=grad_v)
        grad_weights = torch.bmm(grad_out, v.transpose(1, 2))
        if keep is not None:
            grad_weights.mul_(keep)
        grad_scores = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)  # one fused kernel
        torch.baddbmm(grad_q, grad_scores, k, beta=0, alpha=ctx.scale, out=grad_q)
        torch.baddbmm(grad_k, grad_scores.transpose(1, 2), q, beta=0, alpha=ctx.scale, out=grad_k)
        return grads.view(3, B, H, T, D).permute(1, 3, 0, 2, 4).reshape(B, T, 3 * H * D), None, None


@functools.lru_cache(maxsize=8)
def _causal_bias(T: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[T, T] added to the scores: 0 where the key may be seen, -inf where it comes after the query."""
    return torch.full((T, T), float("-inf"), device=device).triu(1).to(dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.window = config.window_size if config.layer_attention(layer) == "local" else None
        self.c_attn = Linear(config.d_model, 3 * config.d_model, bias=config.qkv_bias)
        self.c_proj = Linear(config.d_model, config.d_model)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor, masks: AttentionMasks | None, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.c_attn(x)
        dropout_p = self.attn_pdrop if self.training else 0.0
        bf16_cpu_training = qkv.dtype == torch.bfloat16 and qkv.device.type == "cpu" and torch.is_grad_enabled()
        if bf16_cpu_training and cache is None and masks is None and self.window is None and T <= SHORT_CONTEXT:
            return self.resid_dropout(self.c_proj(ShortCausalAttention.apply(qkv, self.n_head, dropout_p)))
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in qkv.split(C, dim=2))
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if bf16_cpu_training:  # PyTorch's bf16 attention backward on CPU is ~4x slower than its fp32 one
            with torch.autocast("cpu", enabled=False):
                y = self._attend(q.float(), k.float(), v.float(), masks, dropout_p).to(q.dtype)
        else:
            y = self._attend(q, k, v, masks, dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masks: AttentionMasks | None,
                dropout_p: float) -> torch.Tensor:
        if masks is not None:
            mask = masks.dense if self.window is None else masks.local
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        if self.window is not None:
            return local_attention(q, k, v, self.window, dropout_p)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.d_model, config.ffn_dim)
        self.gelu = nn.GELU(approximate="tanh" if config.activation == "gelu_new" else "none")
        self.c_proj = Linear(config.ffn_dim, config.d_model)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.pre_ln = config.norm == "pre"
        self.ln_1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, masks: AttentionMasks | None, cache: KVCache | None) -> torch.Tensor:
        if self.pre_ln:  # GPT-2/3: x + f(LN(x))
            x = x + self.attn(self.ln_1(x), masks, cache)
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x, masks, cache))  # GPT-1: LN(x + f(x))
        return self.ln_2(x + self.mlp(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.n_ctx, config.d_model)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm == "pre" else nn.Identity()
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied output head
        self.activation_checkpointing = False
        """Recompute each block's activations in the backward pass: less memory, ~30% more compute."""
        self.apply(self._init_weights)
        if config.scale_residual_init:
            std = config.init_std / math.sqrt(2 * config.n_layer)
            for block in self.h:
                nn.init.normal_(block.attn.c_proj.weight, mean=0.0, std=std)
                nn.init.normal_(block.mlp.c_proj.weight, mean=0.0, std=std)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Unique parameters, embeddings included (the tied head counts once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """Map token ids [B, T] to logits [B, T, V] (or final hidden states with `return_hidden`).

        With a `cache`, each row continues its own cached sequence (the cache lays out positions and masks).
        Without, `attention_mask` [B, T] may mark real tokens (1) and left padding (0); positions count
        real tokens only, so a padded row sees the same positions as an unpadded one.
        """
        B, T = idx.shape
        if cache is not None:
            positions, dense, local = cache.layout(T, self.config.window_size if self.config.has_local_attention else None)
            masks = None if dense is None else AttentionMasks(dense, local)
        else:
            if T > self.config.n_ctx:
                raise ValueError(f"sequence length {T} exceeds the model's context of {self.config.n_ctx}")
            if attention_mask is not None:
                positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            else:
                positions = torch.arange(T, device=idx.device).unsqueeze(0)
            masks = self._masks(T, attention_mask, idx.device) if attention_mask is not None else None
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.h:
            if self.activation_checkpointing and self.training and cache is None:
                x = torch.utils.checkpoint.checkpoint(block, x, masks, cache, use_reentrant=False)
            else:
                x = block(x, masks, cache)
        if cache is not None:
            cache.advance(T)
        x = self.ln_f(x)
        return x if return_hidden else self.lm_head(x)

    def _masks(self, T: int, attention_mask: torch.Tensor, device: torch.device) -> AttentionMasks:
        def build(window: int | None) -> torch.Tensor:
            allowed = band_mask(T, T, window, device)[None, None] & attention_mask.bool()[:, None, None, :]
            # padding queries would see no key at all (NaN); let them see themselves, output unused
            return allowed | torch.eye(T, dtype=torch.bool, device=device)

        local = build(self.config.window_size) if self.config.has_local_attention else None
        return AttentionMasks(dense=build(None), local=local)
