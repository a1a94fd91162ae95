"""The per-layer work of the transformer around its attention, as pure functions of tensors.

RMSNorm, the half-split RoPE, the residual add, the q/k/v projections with their RoPE, and the output
projection with the SwiGLU MLP. ``Block`` (``fastdllm.models.transformer``) calls them eagerly, or compiled
(``compiled_functions``, CUDA only): weights are arguments, not module attributes, so one compiled graph
serves every layer and fuses the elementwise kernels around the GEMMs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm in fp32, cast back, then scaled by ``weight`` in ``x``'s dtype (LLaDA's and Qwen2's order)."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


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


# ---- the per-layer work around the attention, as pure functions of tensors ----------------------
# ``Block`` calls them eagerly, or compiled (``Transformer.compiled``, CUDA only): one compiled graph
# then serves every layer (weights are arguments, not module attributes) and fuses the norm, RoPE,
# SiLU-gate and residual elementwise kernels that otherwise cost ~40 % of a forward's GPU time.

def residual(x: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
    """The residual stream ``x + delta``: ``delta`` is the previous layer's MLP output, added at the start of the
    next layer (or before the final norm) instead of at the end of its own, so that a compiled layer function
    computes the add and the RMSNorm after it in one kernel (the same bf16 add, one launch fewer per layer)."""
    return x if delta is None else x + delta


def attention_inputs(x, delta, norm_w, eps: float, wq, bq, wk, bk, wv, bv, cos, sin, q_rows,
                     n_heads: int, n_kv_heads: int, head_dim: int, linear=F.linear, rope: bool = True):
    """Residual add, pre-norm, q/k/v projections, RoPE. x ``[B, n, d]`` and delta (``[B, n, d]`` or None) as in
    ``residual``, cos/sin ``[B, 1, n, D]``; ``q_rows`` ``[m]`` (or None: every row) picks the rows that need
    queries. Returns q ``[B, H, m, D]``, k and v ``[B, H_kv, n, D]``, and the residual stream ``[B, n, d]``;
    with ``rope=False`` q and k before RoPE (``KVStore.update_rotating`` rotates them)."""
    B, n, _ = x.shape
    x = residual(x, delta)  # [B, n, d]
    h = rms_norm(x, norm_w, eps)  # [B, n, d]
    hq, cq, sq = h, cos, sin
    if q_rows is not None:
        hq, cq, sq = h.index_select(1, q_rows), cos.index_select(2, q_rows), sin.index_select(2, q_rows)
    q = linear(hq, wq, bq).view(B, hq.shape[1], n_heads, head_dim).transpose(1, 2)  # [B, H, m, D]
    k = linear(h, wk, bk).view(B, n, n_kv_heads, head_dim).transpose(1, 2)  # [B, H_kv, n, D]
    v = linear(h, wv, bv).view(B, n, n_kv_heads, head_dim).transpose(1, 2)  # [B, H_kv, n, D]
    if not rope:
        return q, k, v, x
    return apply_rope(q, cq, sq), apply_rope(k, cos, sin), v, x


def attention_output_and_mlp(x, attn, wo, norm_w, eps: float, w_gate, w_up, w_down, linear=F.linear):
    """Output projection + residual, then the SwiGLU MLP. x ``[B, m, d]``, attn ``[B, H, m, D]``. Returns the
    residual stream after the attention ``[B, m, d]`` and the MLP's output ``[B, m, d]``, which the next layer
    adds (``residual``)."""
    B, H, m, D = attn.shape
    h = x + linear(attn.transpose(1, 2).reshape(B, m, H * D), wo)  # [B, m, d]
    g = rms_norm(h, norm_w, eps)
    return h, linear(F.silu(linear(g, w_gate)) * linear(g, w_up), w_down)


def fused_attention_inputs(x, delta, norm_w, eps: float, w_qkv, b_qkv, cos, sin, q_rows,
                           n_heads: int, n_kv_heads: int, head_dim: int, linear=F.linear, rope: bool = True):
    """``attention_inputs`` with the q/k/v weights fused: ``w_qkv`` ``[(H + 2·H_kv)·D, d]`` (rows q, then k,
    then v), ``b_qkv`` ``[(H + 2·H_kv)·D]`` or None. One GEMM for every row; with ``q_rows`` (the last
    layer) the queries of those rows and the keys/values of every row, two GEMMs on row slices of ``w_qkv``."""
    B, n, _ = x.shape
    q_size, kv_size = n_heads * head_dim, n_kv_heads * head_dim
    x = residual(x, delta)  # [B, n, d]
    h = rms_norm(x, norm_w, eps)  # [B, n, d]
    if q_rows is None:
        q, kv = linear(h, w_qkv, b_qkv).split([q_size, 2 * kv_size], dim=-1)  # [B, n, H·D], [B, n, 2·H_kv·D]
        cq, sq = cos, sin
    else:
        bq, bkv = (None, None) if b_qkv is None else (b_qkv[:q_size], b_qkv[q_size:])
        q = linear(h.index_select(1, q_rows), w_qkv[:q_size], bq)  # [B, m, H·D]
        kv = linear(h, w_qkv[q_size:], bkv)  # [B, n, 2·H_kv·D]
        cq, sq = cos.index_select(2, q_rows), sin.index_select(2, q_rows)
    k, v = kv.split(kv_size, dim=-1)  # [B, n, H_kv·D] each
    q = q.unflatten(-1, (n_heads, head_dim)).transpose(1, 2)  # [B, H, m, D]
    k = k.unflatten(-1, (n_kv_heads, head_dim)).transpose(1, 2)  # [B, H_kv, n, D]
    v = v.unflatten(-1, (n_kv_heads, head_dim)).transpose(1, 2)  # [B, H_kv, n, D]
    if not rope:
        return q, k, v, x
    return apply_rope(q, cq, sq), apply_rope(k, cos, sin), v, x


def fused_attention_output_and_mlp(x, attn, wo, norm_w, eps: float, w_gate_up, w_down, linear=F.linear):
    """``attention_output_and_mlp`` with ``w_gate_up`` ``[2·F, d]`` (gate rows, then up rows): one GEMM."""
    B, H, m, D = attn.shape
    h = x + linear(attn.transpose(1, 2).reshape(B, m, H * D), wo)  # [B, m, d]
    gate, up = linear(rms_norm(h, norm_w, eps), w_gate_up).chunk(2, dim=-1)  # [B, m, F] each
    return h, linear(F.silu(gate) * up, w_down)


class LayerFunctions:
    """The per-layer functions (separate and fused projections), eager or compiled."""

    def __init__(self, compiled: bool) -> None:
        fns = (attention_inputs, attention_output_and_mlp, fused_attention_inputs, fused_attention_output_and_mlp)
        if compiled:  # automatic dynamic shapes: one recompile when a size first changes, then symbolic sizes;
            # emulate_precision_casts: round to bf16 where the eager ops do, so the fused kernels stay close
            fns = tuple(torch.compile(f, dynamic=None, options={"emulate_precision_casts": True}) for f in fns)
            # each function is one code object for dynamo, compiled per linear (cuBLAS or few-row kernel), per
            # last-layer variant and per static/dynamic size: torch's default of 8 entries ran out in one
            # benchmark process, after which dynamo runs the function eagerly (a forward 20 % slower)
            limits = torch._dynamo.config
            limits.recompile_limit = max(limits.recompile_limit, 64)
        (self.attention_inputs, self.attention_output_and_mlp, self.fused_attention_inputs,
         self.fused_attention_output_and_mlp) = fns


EAGER = LayerFunctions(compiled=False)
_compiled: LayerFunctions | None = None


def compiled_functions() -> LayerFunctions:
    global _compiled
    if _compiled is None:
        _compiled = LayerFunctions(compiled=True)
    return _compiled
