"""A bidirectional pre-norm transformer (RMSNorm, RoPE, SwiGLU, GQA) that runs over a KV store.

One network serves every family; the adapters (``llada.py``, ``dream.py``) map their config fields
and checkpoint keys onto it. ``forward_step`` computes hidden states only at the requested canvas
positions, writes their keys/values into the store, attends over every canvas key (padding masked)
and applies the LM head only to the rows whose logits are read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ArchConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    mlp_hidden: int
    max_sequence_length: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for the half-split RoPE")

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``[length, head_dim]`` in fp32 for the half-split rotation."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # [D/2]
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)  # [length, D/2]
    angles = torch.cat([angles, angles], dim=-1)  # [length, D]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x ``[B, H, n, D]``; cos/sin ``[B, 1, n, D]`` fp32. Rotation computed in fp32."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, layer: int, start: int, index, store, attn_mask) -> torch.Tensor:
        B, n, _ = x.shape
        q = self.q_proj(x).view(B, n, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, n, D]
        k = self.k_proj(x).view(B, n, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, n, D]
        v = self.v_proj(x).view(B, n, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, n, D]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values = store.update(layer, start, index, k, v)  # [B, Hkv, L, D] each
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask,
                                             enable_gqa=self.n_kv_heads != self.n_heads)  # [B, H, n, D]
        return self.o_proj(out.transpose(1, 2).reshape(B, n, self.n_heads * self.head_dim))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin, layer, start, index, store, attn_mask) -> torch.Tensor:
        h = x + self.attn(self.attn_norm(x), cos, sin, layer, start, index, store, attn_mask)
        return h + self.mlp(self.mlp_norm(h))


class Transformer(nn.Module):
    """The network: embeddings, ``n_layers`` blocks, final norm, LM head."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.arch = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_sequence_length, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # [max_len, D] fp32
        self.register_buffer("rope_sin", sin, persistent=False)  # [max_len, D] fp32

    def reset_rope(self) -> None:
        """Recompute the RoPE tables in fp32 on the module's device (after ``to_empty`` or a dtype cast)."""
        cfg, device = self.arch, self.rope_cos.device
        cos, sin = rope_tables(cfg.head_dim, cfg.max_sequence_length, cfg.rope_theta)
        self.rope_cos, self.rope_sin = cos.to(device), sin.to(device)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.rope_cos.dtype != torch.float32 and self.rope_cos.device.type != "meta":
            self.reset_rope()  # ``model.to(torch.bfloat16)`` must not round the rotation angles
        return self

    def hidden(self, canvas: torch.Tensor, start: int, end: int, store, position_ids: torch.Tensor,
               key_mask: torch.Tensor | None, index: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states of canvas positions ``[start, end)``: ``[B, end-start, d_model]``.

        The positions are read and written through ``index`` (``arange(start, end)`` on the device, made
        here when not given), never through slices at ``start``: a CUDA graph captured for one window
        then serves every window of the same size, the caller refilling ``index`` before each replay.
        """
        if index is None:
            index = torch.arange(start, end, device=canvas.device)  # [n]
        x = self.embed(canvas.index_select(1, index))  # [B, n, d]
        pos = position_ids.index_select(1, index)  # [B, n]
        cos, sin = self.rope_cos[pos].unsqueeze(1), self.rope_sin[pos].unsqueeze(1)  # [B, 1, n, D]
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, L]
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, i, start, index, store, attn_mask)
        return self.norm(x)
