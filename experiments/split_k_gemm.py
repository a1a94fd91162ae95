"""A split-K tensor-core GEMM for a prefix window's rows (a Triton kernel, CUDA): an experiment, not in the library.

A prefix-cache step recomputes the block and everything after it, 32-256 rows at batch 1, and at 128-256 rows a
product of an 8B model's weight sits near the GPU's ridge point: its floor is the larger of the weight read and
the matmul time. cuBLAS runs the narrow products there (4096 output columns: LLaDA-8B's output and down
projections) with 64 × 96 tiles at ~58 % of the matmul rate on an H200 (docs/speed.md, round 9). This kernel
tried larger tiles with the reduction split across programs (split-K), so that few large tiles still fill the
SMs: program (row tile, column tile, slice) multiplies ``BLOCK_M`` rows by ``BLOCK_N`` weight rows over one slice
of K and writes its fp32 partial product; the last program of a tile to arrive (an atomic arrival counter per
tile, as in ``fastdllm.kernels.split_kv_attention``'s combine) adds the slices' partials in slice order, adds the
bias, rounds once to the output dtype and resets the counter. The sum's order does not depend on which program
arrives last, so the output is the same on every run.

Measured on an H200 (``experiments/split_k_sweep.py``, docs/speed.md round 13,
``experiments/results/speed/round13_dev/split_k_d8184a6/``): 17-34 configurations per product shape and row count
of both families' prefix windows. The fastest configuration beat PyTorch's default path at 4 of the 52 (shape,
rows) points, by 0.3-15 %, and the faster of the two cuBLAS paths by at most 1.1 % (LLaDA-8B's output projection
at 256 rows), under the 3 % margin ``fastdllm.kernels.gemm_plan.tune`` asks of a backend; elsewhere it took
1.01-2.3× the default's time. So it is not a ``gemm_plan`` backend: it stays here with its sweep, the record of
that measurement.

Same mathematics as ``torch.nn.functional.linear`` (fp32 accumulation, one rounding), another summation order:
``tests/models/test_split_k_gemm.py`` compares the two on the CPU through Triton's interpreter.
"""

from __future__ import annotations

import torch

from fastdllm.kernels import arrival_counters, dot_precision, tl, triton

# (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages, num_warps): the first configuration the sweep's --pick chose
DEFAULT_CONFIG = (64, 128, 128, 1, 4, 4)


if triton is not None:

    @triton.jit(do_not_specialize=["M"])
    def _split_k_kernel(X, W, BIAS, Y, PART, ARRIVED, M, N, K, sx_m, sw_n, sy_m, k_per_split,
                        HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
        """Program (row tile, column tile, slice): the fp32 product of BLOCK_M rows of X and BLOCK_N rows of W over
        K[slice · k_per_split, (slice + 1) · k_per_split). One slice: Y directly (+ bias). Several: the partial
        goes to ``PART[slice, M, N]``; the tile's last program to arrive sums the partials in slice order (+ bias)
        into Y and zeroes the tile's counter in ``ARRIVED`` (zero between launches)."""
        row_tile, col_tile, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        rows = row_tile * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M]
        cols = col_tile * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
        # loads read clamped rows and columns (valid addresses, no mask: the loads stay vectorised); the
        # duplicates land in rows and columns of the tile that are never stored
        x_rows = tl.minimum(rows, M - 1)
        w_rows = tl.minimum(cols, N - 1)
        k_lo = split * k_per_split
        k_hi = tl.minimum(K, k_lo + k_per_split)
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for k0 in range(k_lo, k_hi, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)  # [BLOCK_K]
            if EVEN_K:  # every slice is whole BLOCK_K steps
                x = tl.load(X + x_rows[:, None] * sx_m + ks[None, :])  # [BLOCK_M, BLOCK_K]
                w = tl.load(W + w_rows[:, None] * sw_n + ks[None, :])  # [BLOCK_N, BLOCK_K]
            else:
                x = tl.load(X + x_rows[:, None] * sx_m + ks[None, :], mask=(ks < k_hi)[None, :], other=0.0)
                w = tl.load(W + w_rows[:, None] * sw_n + ks[None, :], mask=(ks < k_hi)[None, :], other=0.0)
            acc = tl.dot(x, tl.trans(w), acc, input_precision=PRECISION)
        inside = (rows < M)[:, None] & (cols < N)[None, :]  # [BLOCK_M, BLOCK_N]
        y_at = Y + rows[:, None] * sy_m + cols[None, :]
        if SPLIT_K > 1:
            tile_at = rows[:, None] * N + cols[None, :]  # [BLOCK_M, BLOCK_N] offsets into one slice's partial
            tl.store(PART + split * M * N + tile_at, acc, mask=inside)
            # arrival: the barrier orders every thread's stores before the release of the counter increment; the
            # program that sees SPLIT_K - 1 arrived before it sums (acquire; .cg loads read L2, not a stale L1)
            tl.debug_barrier()
            counter = ARRIVED + row_tile * tl.num_programs(1) + col_tile
            if tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu") == SPLIT_K - 1:
                tl.debug_barrier()
                acc = tl.load(PART + tile_at, mask=inside, other=0.0, cache_modifier=".cg")
                for j in tl.static_range(1, SPLIT_K):
                    acc += tl.load(PART + j * M * N + tile_at, mask=inside, other=0.0, cache_modifier=".cg")
                if HAS_BIAS:
                    acc += tl.load(BIAS + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
                tl.store(y_at, acc.to(Y.dtype.element_ty), mask=inside)
                tl.atomic_xchg(counter, 0)  # zero for the next launch (graph replays included)
        else:
            if HAS_BIAS:
                acc += tl.load(BIAS + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
            tl.store(y_at, acc.to(Y.dtype.element_ty), mask=inside)


def check_config(config) -> tuple[int, ...]:
    """``config`` as a tuple (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages, num_warps), or a ValueError naming
    what is wrong (tile sides powers of two from 16, at least one slice, stages and warps positive)."""
    config = tuple(int(c) for c in config)
    if len(config) != 6:
        raise ValueError(f"split_k_linear: config {config} must be (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages, "
                         "num_warps)")
    block_m, block_n, block_k, split_k, stages, warps = config
    if any(b < 16 or b & (b - 1) for b in (block_m, block_n, block_k)) or split_k < 1 or stages < 1 or warps < 1:
        raise ValueError(f"split_k_linear: config {config}: tile sides must be powers of two of at least 16, "
                         "SPLIT_K, num_stages and num_warps at least 1")
    return config


def slices(K: int, block_k: int, split_k: int) -> tuple[int, int]:
    """(K per slice, slices) for ``split_k`` slices asked: each slice is whole ``block_k`` steps, so fewer slices
    run when K is short (K = 100 in steps of 64 has two steps: at most two slices)."""
    per = triton.cdiv(triton.cdiv(K, split_k), block_k) * block_k
    return per, triton.cdiv(K, per)


def split_k_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   config=DEFAULT_CONFIG) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for x ``[..., K]``, weight ``[N, K]`` (unit stride over K), bias ``[N]``:
    ``[..., N]`` in x's dtype, by the kernel with ``config`` = (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages,
    num_warps). Any number of rows; operands of one dtype."""
    if triton is None:
        raise RuntimeError("split_k_linear needs Triton (pip install triton); use torch.nn.functional.linear")
    block_m, block_n, block_k, split_k, stages, warps = check_config(config)
    K = x.shape[-1]
    N = weight.shape[0]
    if weight.shape != (N, K) or (bias is not None and bias.shape != (N,)) or weight.dtype != x.dtype:
        raise ValueError(f"split_k_linear: x {tuple(x.shape)} {x.dtype}, weight {tuple(weight.shape)} {weight.dtype}, "
                         f"bias {None if bias is None else tuple(bias.shape)}: want weight [N, K] and bias [N] in "
                         "x's dtype")
    x2 = x.reshape(-1, K)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    M = x2.shape[0]
    per, n_slices = slices(K, block_k, split_k)
    if weight.stride(-1) != 1 or max(weight.numel(), n_slices * M * N, M * x2.stride(0)) >= 2 ** 31:
        raise ValueError(f"split_k_linear: x {tuple(x.shape)}, weight {tuple(weight.shape)} with strides "
                         f"{weight.stride()} in config {config}: the weight needs unit stride over K, and the "
                         "rows, the weight and the slices' partials must fit 32-bit offsets; use "
                         "torch.nn.functional.linear")
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)  # [M, N]
    if M == 0:
        return y.view(*x.shape[:-1], N)
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n), n_slices)
    part = torch.empty(n_slices, M, N, dtype=torch.float32, device=x.device) if n_slices > 1 else y  # [S, M, N]
    arrived = arrival_counters(x.device, grid[0] * grid[1]) if n_slices > 1 else y
    _split_k_kernel[grid](x2, weight, weight if bias is None else bias, y, part, arrived, M, N, K, x2.stride(0),
                          weight.stride(0), y.stride(0), per, HAS_BIAS=bias is not None, SPLIT_K=n_slices,
                          EVEN_K=K % block_k == 0, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                          PRECISION=dot_precision(x.dtype), num_stages=stages, num_warps=warps)
    return y.view(*x.shape[:-1], N)
