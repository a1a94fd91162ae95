"""``x @ weight.T`` for few rows (a Triton kernel, CUDA): the weight read split over every SM.

A batch-1 cached step multiplies 32 (Dream: 33) rows by each weight matrix: the GEMM is a read of the
weight, and its time is the weight's bytes over the memory bandwidth when enough programs stream it.
cuBLAS's choice for these shapes leaves part of the GPU idle on the smaller matrices (an H100 profile:
the 4096 × 4096 output projection at 1.42× its read time, q/k/v 1.22×, the MLP down projection 1.21×).
Here each program owns a tile of ``BLOCK_N`` output columns and one of ``SPLIT_K`` slices of the reduction;
with ``SPLIT_K > 1`` each writes an fp32 partial and the last program of a column tile to finish sums the
partials in slice order (a fixed order: the result does not depend on which program finishes last).

Same mathematics as ``torch.nn.functional.linear`` (fp32 accumulation, one rounding to the output dtype),
different summation order: tested on the CPU through Triton's interpreter.
"""

from __future__ import annotations

import torch

from fastdllm.kernels import tl, triton

MAX_ROWS = 64  # above this many rows cuBLAS's tiles fill the GPU


if triton is not None:

    @triton.jit
    def _skinny_kernel(X, W, BIAS, Y, PART, ARRIVED, M, N, K, k_per_split, sx_m, sw_n, sy_m,
                       SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_K: tl.constexpr):
        """Program (column tile, slice): Y[:, tile] (or its fp32 partial) over reduction indices
        [slice·k_per_split, (slice+1)·k_per_split)."""
        tile, split = tl.program_id(0), tl.program_id(1)
        rows = tl.arange(0, BLOCK_M)  # [BLOCK_M]
        cols = tile * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        lo = split * k_per_split
        for offset in range(0, k_per_split, BLOCK_K):
            ks = lo + offset + tl.arange(0, BLOCK_K)  # [BLOCK_K]
            inside_k = ks < K
            x = tl.load(X + rows[:, None] * sx_m + ks[None, :], mask=(rows < M)[:, None] & inside_k[None, :],
                        other=0.0)  # [BLOCK_M, BLOCK_K]
            w = tl.load(W + cols[:, None] * sw_n + ks[None, :], mask=(cols < N)[:, None] & inside_k[None, :],
                        other=0.0)  # [BLOCK_N, BLOCK_K]
            acc = tl.dot(x, tl.trans(w), acc)
        out_mask = (rows < M)[:, None] & (cols < N)[None, :]
        if SPLIT_K == 1:
            if HAS_BIAS:
                acc += tl.load(BIAS + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
            tl.store(Y + rows[:, None] * sy_m + cols[None, :], acc.to(Y.dtype.element_ty), mask=out_mask)
        else:
            tl.store(PART + (split * M + rows[:, None]) * N + cols[None, :], acc, mask=out_mask)
            tl.debug_barrier()  # every thread's partial stored before the arrival is counted (release)
            counter = ARRIVED + tile
            if tl.atomic_add(counter, 1) == SPLIT_K - 1:  # the last slice of this column tile: sum them all
                total = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
                for s in range(0, SPLIT_K):
                    total += tl.load(PART + (s * M + rows[:, None]) * N + cols[None, :], mask=out_mask, other=0.0,
                                     cache_modifier=".cg")
                if HAS_BIAS:
                    total += tl.load(BIAS + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
                tl.store(Y + rows[:, None] * sy_m + cols[None, :], total.to(Y.dtype.element_ty), mask=out_mask)
                tl.atomic_xchg(counter, 0)


_counters: dict[torch.device, list[torch.Tensor]] = {}


def _arrival_counters(device: torch.device, n: int) -> torch.Tensor:
    """``n`` zeroed int32 counters, shared by every launch (each leaves them at zero); kept for the process,
    since CUDA graphs hold their address (a larger request adds a buffer and keeps the old one)."""
    held = _counters.setdefault(device, [])
    if not held or held[-1].numel() < n:
        held.append(torch.zeros(max(n, 4096), dtype=torch.int32, device=device))
    return held[-1]


def use_skinny_matmul(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``skinny_linear`` serves ``F.linear(x, weight)``: Triton present, CUDA, at most ``MAX_ROWS``
    rows, half-precision operands of one dtype with unit stride over the reduction."""
    rows = x.numel() // max(x.shape[-1], 1)
    return (triton is not None and x.is_cuda and 0 < rows <= MAX_ROWS and x.dtype == weight.dtype
            and x.dtype in (torch.bfloat16, torch.float16) and weight.stride(-1) == 1)


def _config(M: int, N: int, K: int, processors: int) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages): enough programs for two per SM."""
    block_m = 16 if M <= 16 else 32 if M <= 32 else 64
    block_n, block_k = 64, 128
    tiles = triton.cdiv(N, block_n)
    split_k = 1
    while tiles * split_k < 2 * processors and K // (split_k * 2) >= 4 * block_k:
        split_k *= 2
    return block_m, block_n, block_k, split_k, 4


def skinny_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  config: tuple[int, int, int, int, int] | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for x ``[..., K]`` with at most ``MAX_ROWS`` rows, weight ``[N, K]``:
    ``[..., N]`` in x's dtype. ``config`` = (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages) overrides the
    default choice (benchmarks sweep it)."""
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
    if M > MAX_ROWS:
        raise ValueError(f"skinny_linear takes at most {MAX_ROWS} rows, got {M}; use torch.nn.functional.linear")
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)  # [M, N]
    processors = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 8
    block_m, block_n, block_k, split_k, stages = config or _config(M, N, K, processors)
    block_m = max(block_m, 16 if M <= 16 else 32 if M <= 32 else 64)
    k_per_split = triton.cdiv(triton.cdiv(K, split_k), block_k) * block_k
    split_k = triton.cdiv(K, k_per_split)
    tiles = triton.cdiv(N, block_n)
    part = torch.empty(split_k * M * N if split_k > 1 else 1, dtype=torch.float32, device=x.device)  # [S·M·N]
    arrived = _arrival_counters(x.device, tiles) if split_k > 1 else part
    _skinny_kernel[(tiles, split_k)](
        x2, weight, weight if bias is None else bias, y, part, arrived, M, N, K, k_per_split,
        x2.stride(0), weight.stride(0), y.stride(0),
        SPLIT_K=split_k, HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        num_stages=stages)
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
