"""Locally banded causal attention (Sparse Transformer "local" mode) in O(T·w) time and memory.

Query q sees key k iff q - w < k <= q. The sequence is cut into blocks of `bs` queries; each query
block only meets the keys of its own block and the `nk` blocks before it, gathered by concatenating
shifted views (cheap to differentiate, unlike unfold/as_strided). Scores therefore have shape
[.., T/bs, bs, (nk+1)·bs]: linear in T. A hand-written backward (the FlashAttention identity
dS = P ⊙ (dP - rowsum(dO ⊙ O))) avoids the extra passes autograd would make over that tensor.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

_MAX_BLOCK = 128


def block_size(window: int) -> int:
    """Split w into equal blocks of at most 128: small enough to waste little, big enough for fast matmuls."""
    n = math.ceil(window / _MAX_BLOCK)
    return math.ceil(window / n)


@functools.lru_cache(maxsize=32)
def _band_mask(n_blocks: int, bs: int, window: int, device: torch.device) -> torch.Tensor:
    """Which of the (nk+1)·bs gathered keys each query of each block may see."""
    nk = math.ceil(window / bs)
    a = torch.arange(bs, device=device).view(bs, 1)
    c = torch.arange((nk + 1) * bs, device=device).view(1, -1)
    offset = nk * bs  # key slot c is absolute position block_start - offset + c
    in_band = (c <= a + offset) & (c > a + offset - window)
    starts = torch.arange(n_blocks, device=device).view(n_blocks, 1, 1) * bs
    return in_band & (starts - offset + c >= 0)


def _windows(x: torch.Tensor, nk: int) -> torch.Tensor:
    """[B,H,nb,bs,D] -> [B,H,nb,(nk+1)·bs,D]: each block preceded by its nk predecessors."""
    nb = x.shape[2]
    padded = F.pad(x, (0, 0, 0, 0, nk, 0))
    return torch.cat([padded[:, :, j : j + nb] for j in range(nk + 1)], dim=-2)


def _fold(xw: torch.Tensor, nk: int, bs: int) -> torch.Tensor:
    """Adjoint of _windows: add each window slice back onto the block it was copied from."""
    nb = xw.shape[2]
    out = xw[:, :, :, nk * bs :].clone()
    for j in range(nk):
        shift = nk - j
        out[:, :, : nb - shift] += xw[:, :, shift:, j * bs : (j + 1) * bs]
    return out


class _LocalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, window: int, bs: int, scale: float, dropout_p: float):  # type: ignore[override]
        nk = math.ceil(window / bs)
        B, H, nb, _, D = q.shape
        mask = _band_mask(nb, bs, window, q.device)
        scores = torch.matmul(q * scale, _windows(k, nk).transpose(-1, -2))
        scores.masked_fill_(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        del scores
        keep = None
        weights = probs
        if dropout_p > 0.0:
            keep = torch.rand_like(probs) >= dropout_p
            weights = probs * keep / (1.0 - dropout_p)
        out = torch.matmul(weights, _windows(v, nk))
        ctx.save_for_backward(q, k, v, probs, out, keep)
        ctx.meta = (nk, bs, scale, dropout_p)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, probs, out, keep = ctx.saved_tensors
        nk, bs, scale, dropout_p = ctx.meta
        grad_out = grad_out.contiguous()
        weights = probs if keep is None else probs * keep / (1.0 - dropout_p)
        grad_vw = torch.matmul(weights.transpose(-1, -2), grad_out)
        del weights
        grad_p = torch.matmul(grad_out, _windows(v, nk).transpose(-1, -2))
        if keep is not None:
            grad_p.mul_(keep).div_(1.0 - dropout_p)
        row = (grad_out * out).sum(-1, keepdim=True)
        grad_s = grad_p.sub_(row).mul_(probs)
        grad_q = torch.matmul(grad_s, _windows(k, nk)).mul_(scale)
        grad_kw = torch.matmul(grad_s.transpose(-1, -2), q).mul_(scale)
        return grad_q, _fold(grad_kw, nk, bs), _fold(grad_vw, nk, bs), None, None, None, None


def local_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, dropout_p: float = 0.0
) -> torch.Tensor:
    """Banded causal attention over [B, H, T, D] tensors; equal to dense attention with the band mask."""
    B, H, T, D = q.shape
    if T <= window:  # the band covers every earlier key: plain causal attention is the same thing
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
    bs = block_size(window)
    nb = math.ceil(T / bs)
    pad = nb * bs - T  # queries/keys appended at the end are never visible to real queries

    def blocks(x: torch.Tensor) -> torch.Tensor:
        return (F.pad(x, (0, 0, 0, pad)) if pad else x).reshape(B, H, nb, bs, D)

    out = _LocalAttention.apply(blocks(q), blocks(k), blocks(v), window, bs, D**-0.5, dropout_p)
    return out.reshape(B, H, nb * bs, D)[:, :, :T]


def band_mask(n_query: int, n_key: int, window: int | None, device: torch.device | None = None) -> torch.Tensor:
    """Dense [n_query, n_key] boolean mask for queries at the last n_query positions: the reference
    that the blocked kernel must equal, and the mask used when decoding with a KV cache."""
    q = torch.arange(n_key - n_query, n_key, device=device).view(-1, 1)
    k = torch.arange(n_key, device=device).view(1, -1)
    allowed = k <= q
    if window is not None:
        allowed &= k > q - window
    return allowed
