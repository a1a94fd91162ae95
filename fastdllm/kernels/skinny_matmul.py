"""``x @ weight.T`` for few rows and many output columns (a Triton kernel, CUDA).

A batch-1 cached step multiplies 32 (Dream: 33) rows by each weight matrix: the GEMM is a read of the
weight, and its time is the weight's bytes over the memory bandwidth when the read streams at full rate.
Each program here owns ``BLOCK_N`` output columns and reads their weight rows once, ``BLOCK_K`` at a time,
with ``num_stages`` loads in flight; the rows of x (tens of KB) come from L2. Measured on an H100 with CUDA
graphs (``experiments/results/speed/round4_dev/kernels_sweep_9674870.json``, 48 configurations per shape):
LLaDA-8B's LM head 355 µs against cuBLAS's 390, Dream-7B's 373 against 402, the gate/up projections and
LLaDA's q/k/v 3-4 % faster; on matrices with fewer output columns (the output and down projections, Dream's
q/k/v) cuBLAS was as fast or faster. So ``config_for`` picks the kernel, with a fixed configuration, only for
weights of at least ``MIN_COLUMNS`` output columns, and cuBLAS otherwise: a fixed rule, so a given shape
rounds the same way in every process. (Choosing by timing each shape at its first call was tried: on
kernels of 10-50 µs the timings were too noisy to rank, and one run chose configurations that made the
whole forward 18 % slower, ``round4_dev/gpu_all_f5183a1/``.) The kernel serves at most ``MAX_ROWS`` = 32 rows:
with 33-64 rows it lost to cuBLAS on some shapes, and with row tiles (a configuration naming BLOCK_M) on
every shape from 128 rows, by 5-60 % (``experiments/gemm_sweep.py``, round5_dev/r5a/).

Same mathematics as ``torch.nn.functional.linear`` (fp32 accumulation, one rounding to the output dtype),
different summation order: tested on the CPU through Triton's interpreter.
"""

from __future__ import annotations

import torch

from fastdllm.kernels import dot_precision, tl, triton

MAX_ROWS = 32  # rows ``use_skinny_matmul`` sends here: at 64 rows the kernel lost to cuBLAS on LLaDA's q/k/v (44.2
# against 40.5 µs, round5_dev/r5a/gemm_llada.json), at 33 on Dream's gate/up (101.7 against 99.4, final_07e59ce/
# kernels.json), and from 128 rows on every shape and configuration (round5_dev/r5a/gemm_{llada,dream}.json)
ONE_TILE_ROWS = 64  # the most rows one program holds; beyond, a configuration must name BLOCK_M (row tiles)
MIN_COLUMNS = 12288  # fewer output columns: cuBLAS (too few column tiles to keep every SM streaming)
# (BLOCK_N, BLOCK_K, num_stages, num_warps): candidates that won the sweep for some shape; the first two are
# what ``config_for`` uses (tests run them all through the interpreter)
CANDIDATES = ((32, 256, 3, 4), (64, 128, 3, 4), (32, 256, 5, 4), (64, 128, 4, 4), (64, 256, 3, 4), (32, 128, 3, 4))
CUBLAS = "cublas"


if triton is not None:

    @triton.jit
    def _skinny_kernel(X, W, BIAS, SCALE, Y, M, N, K, sx_m, sw_n, sy_m, HAS_BIAS: tl.constexpr,
                       HAS_SCALE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       PRECISION: tl.constexpr):
        """Program (row tile, column tile): Y[rows, tile] = X[rows] · W[tile]ᵀ (· SCALE[tile]) (+ bias), accumulated
        in fp32 over the whole K. Row tiles vary fastest, so the programs sharing a weight tile run together (one
        DRAM read). W may be stored narrower than X (fp8 with a per-row SCALE, ``fastdllm.kernels.fp8_weights``):
        each tile is widened to X's dtype in registers."""
        row_tile, tile = tl.program_id(0), tl.program_id(1)
        rows = row_tile * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M]
        cols = tile * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)  # [BLOCK_K]
            x = tl.load(X + rows[:, None] * sx_m + ks[None, :], mask=(rows < M)[:, None] & (ks < K)[None, :],
                        other=0.0)  # [BLOCK_M, BLOCK_K]
            w = tl.load(W + cols[:, None] * sw_n + ks[None, :], mask=(cols < N)[:, None] & (ks < K)[None, :],
                        other=0.0)  # [BLOCK_N, BLOCK_K]
            acc = tl.dot(x, tl.trans(w.to(x.dtype)), acc, input_precision=PRECISION)  # fp32: no TF32 rounding
        if HAS_SCALE:
            acc *= tl.load(SCALE + cols, mask=cols < N, other=0.0)[None, :]
        if HAS_BIAS:
            acc += tl.load(BIAS + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
        tl.store(Y + rows[:, None] * sy_m + cols[None, :], acc.to(Y.dtype.element_ty),
                 mask=(rows < M)[:, None] & (cols < N)[None, :])


def use_skinny_matmul(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``skinny_linear`` serves ``F.linear(x, weight)``: Triton present, CUDA, at most ``MAX_ROWS``
    rows, at least ``MIN_COLUMNS`` output columns, half-precision operands of one dtype with unit stride over
    the reduction."""
    rows = x.numel() // max(x.shape[-1], 1)
    return (triton is not None and x.is_cuda and 0 < rows <= MAX_ROWS and weight.shape[0] >= MIN_COLUMNS
            and x.dtype == weight.dtype
            and x.dtype in (torch.bfloat16, torch.float16) and weight.stride(-1) == 1
            and weight.numel() < 2 ** 31)  # the kernel's offsets are 32-bit


def _block_m(M: int) -> int:
    """Rows per program: the smallest power of two from 16 that holds all ``M`` rows (at most ``ONE_TILE_ROWS``)."""
    return 16 if M <= 16 else 32 if M <= 32 else 64


def _launch(x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, config,
            scale: torch.Tensor | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Run the kernel with ``config`` = (BLOCK_N, BLOCK_K, num_stages, num_warps[, BLOCK_M]); without BLOCK_M one
    row tile holds every row. ``scale`` ``[N]`` fp32 multiplies each output column (fp8 weights); the fp32
    result is rounded once to ``out_dtype`` (x's dtype by default)."""
    M, K = x2.shape
    N = weight.shape[0]
    block_n, block_k, stages, warps = config[:4]
    block_m = config[4] if len(config) > 4 else _block_m(M)
    y = torch.empty(M, N, dtype=out_dtype or x2.dtype, device=x2.device)  # [M, N]
    _skinny_kernel[(triton.cdiv(M, block_m), triton.cdiv(N, block_n))](
        x2, weight, weight if bias is None else bias, weight if scale is None else scale, y, M, N, K, x2.stride(0),
        weight.stride(0), y.stride(0), HAS_BIAS=bias is not None, HAS_SCALE=scale is not None, BLOCK_M=block_m,
        BLOCK_N=block_n, BLOCK_K=block_k, PRECISION=dot_precision(x2.dtype), num_stages=stages, num_warps=warps)
    return y


def config_for(N: int, K: int):
    """The configuration for a weight ``[N, K]``: ``CUBLAS`` below ``MIN_COLUMNS`` output columns; up to 16384
    columns (LLaDA's q/k/v) 32-column tiles reading 256 of K per step, beyond (gate/up, LM heads) 64-column
    tiles reading 128 (the sweep's winners for those shapes)."""
    if N < MIN_COLUMNS:
        return CUBLAS
    return CANDIDATES[0] if N <= 16384 else CANDIDATES[1]


def skinny_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  config=None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for x ``[..., K]`` with at most ``ONE_TILE_ROWS`` rows, weight ``[N, K]``:
    ``[..., N]`` in x's dtype. ``config`` = (BLOCK_N, BLOCK_K, num_stages, num_warps) runs the Triton kernel
    with it (a fifth entry, BLOCK_M, tiles the rows: then any number of rows), ``CUBLAS`` runs ``F.linear``; by
    default ``config_for(N, K)``."""
    if triton is None:
        raise RuntimeError("skinny_linear needs Triton (pip install triton); use torch.nn.functional.linear")
    K = x.shape[-1]
    N = weight.shape[0]
    if weight.shape != (N, K) or (bias is not None and bias.shape != (N,)):
        raise ValueError(f"skinny_linear: x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias "
                         f"{None if bias is None else tuple(bias.shape)}: want weight [N, K] and bias [N]")
    x2 = x.reshape(-1, K)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    M = x2.shape[0]
    if M > ONE_TILE_ROWS and not (config is not None and config != CUBLAS and len(config) > 4):
        raise ValueError(f"skinny_linear takes at most {ONE_TILE_ROWS} rows without a BLOCK_M in its config, got {M}; "
                         "use torch.nn.functional.linear")
    config = config or config_for(N, K)
    y = torch.nn.functional.linear(x2, weight, bias) if config == CUBLAS else _launch(x2, weight, bias, config)
    return y.view(*x.shape[:-1], N)


@torch.library.custom_op("fastdllm::skinny_linear", mutates_args=())
def _skinny_linear_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return skinny_linear(x, weight, bias)


@_skinny_linear_op.register_fake
def _(x, weight, bias):
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through ``skinny_linear`` where it applies (``use_skinny_matmul``); an opaque custom op,
    so ``torch.compile``'d callers keep the kernel (and fuse the elementwise work around it as before)."""
    if use_skinny_matmul(x, weight):
        return _skinny_linear_op(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)
