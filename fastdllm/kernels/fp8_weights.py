"""Weight-only fp8 (e4m3) for few-row products: half the bytes of a bf16 weight read.

A batch-1 cached step is a weight read (``skinny_matmul``): storing a weight in ``float8_e4m3fn`` with one fp32
scale per output row halves the bytes the step must read, and so its floor. ``quantize_rows`` makes that copy
(scale = row max |w| / 448, e4m3's largest finite value); ``fp8_linear`` multiplies few rows of x (bf16 or fp16)
by it with the few-row Triton kernel, which widens each weight tile to x's dtype in registers, accumulates in
fp32 and applies the row scales in its epilogue: ``x · (w8 · scale)ᵀ``, the product with the dequantized
weight (``dequantize_rows``), up to summation order.

This is the kernel and its measurement (``experiments/bench_kernels.py --fp8``), not a model mode: a model
would keep the bf16 weights for refreshes and long windows (cuBLAS) next to the fp8 copies, +50 % weight
memory. What the rounding costs a trained model: ``experiments/fp8_weight_accuracy.py`` (the shipped tiny
models with every projection and the LM head through ``quantize_rows``/``dequantize_rows``).
"""

from __future__ import annotations

import torch

from fastdllm.kernels import triton
from fastdllm.kernels.skinny_matmul import ONE_TILE_ROWS, _launch

E4M3_MAX = 448.0  # the largest finite float8_e4m3fn
FP8_CONFIG = (64, 256, 3, 4)  # (BLOCK_N, BLOCK_K, num_stages, num_warps): a tile of 64 × 256 fp8 = 16 KB, as bf16's 64 × 128


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` ``[N, K]`` as (``float8_e4m3fn`` ``[N, K]``, fp32 scale ``[N]``): each row divided by its max |w| / 448
    (rows of zeros get scale 1e-12 / 448: they stay zero) and rounded to nearest e4m3."""
    if weight.dim() != 2:
        raise ValueError(f"quantize_rows takes a matrix [N, K], got shape {tuple(weight.shape)}")
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / E4M3_MAX  # [N]
    return (w / scale[:, None]).to(torch.float8_e4m3fn), scale


def dequantize_rows(w8: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``w8 · scale`` back in ``dtype``: ``[N, K]``."""
    return (w8.float() * scale[:, None]).to(dtype)


def fp8_linear(x: torch.Tensor, w8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None,
               config=FP8_CONFIG) -> torch.Tensor:
    """``F.linear(x, dequantize_rows(w8, scale), bias)`` for x ``[..., K]`` (bf16/fp16, at most ``ONE_TILE_ROWS``
    rows, or any number with a BLOCK_M in ``config``) through the few-row Triton kernel: ``[..., N]`` in x's dtype."""
    if triton is None:
        raise RuntimeError("fp8_linear needs Triton (pip install triton)")
    K, N = x.shape[-1], w8.shape[0]
    if w8.dtype != torch.float8_e4m3fn or w8.shape != (N, K) or scale.shape != (N,) or scale.dtype != torch.float32:
        raise ValueError(f"fp8_linear: x {tuple(x.shape)}, w8 {w8.dtype} {tuple(w8.shape)}, scale {scale.dtype} "
                         f"{tuple(scale.shape)}: want w8 float8_e4m3fn [N, K] and scale float32 [N] (quantize_rows)")
    if x.dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"fp8_linear: x is {x.dtype}; want bfloat16 or float16")
    x2 = x.reshape(-1, K)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if x2.shape[0] > ONE_TILE_ROWS and len(config) < 5:
        raise ValueError(f"fp8_linear takes at most {ONE_TILE_ROWS} rows without a BLOCK_M in its config, got "
                         f"{x2.shape[0]}")
    return _launch(x2, w8, bias, config, scale).view(*x.shape[:-1], N)
