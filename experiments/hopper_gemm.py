"""A Hopper GEMM for a prefix window's rows, written in Gluon (Triton 3.6+): TMA loads, wgmma, split-K. Experiment.

Why: at 96-256 rows an 8B model's products sit near the H200's ridge point, and cuBLAS runs the narrow ones (4096
output columns: LLaDA-8B's output and down projections) with 64 × 96 tiles at ~58 % of the matmul rate
(docs/speed.md, rounds 5-14). Rounds 12-13 tried Triton GEMMs whose loads are what Triton's pipeliner makes of
pointer loads (cp.async); none beat cuBLAS there. This kernel is the Hopper-specific form those lacked: the
tensor memory accelerator (TMA) fills a ring of shared-memory stages behind ``mbarrier`` arrivals, asynchronous
warpgroup MMAs (wgmma) read the operands from shared memory, and optionally one warp does nothing but issue the
loads (warp specialisation), so the loads never wait behind the MMAs' issue.

The product is computed transposed ("swap AB"): a program multiplies ``BW`` weight rows (the wgmma M side, 64 per
warpgroup of 4 warps) by ``BX`` rows of x (the wgmma N side, any power of two up to 256) over one slice of K, so a
window of 224 rows is one 256-wide tile and the weight, the large operand, is read once per column of programs.
Rows of x past the end are zero-filled by the TMA and never stored. With ``SPLIT`` > 1 slices each program writes
its fp32 partial; then either the tile's last program to arrive (an arrival counter, as in ``split_k_gemm.py``)
adds the partials in slice order, adds the bias and rounds once, or, where the whole grid fits the SMs (every
program resident, so none can wait forever), every slice waits for the others and does that for its share of the
rows. Either way the output does not depend on the arrival order.

Measured on an H200 (Triton 3.6.0; docs/speed.md round 15, ``experiments/results/speed/round15_dev/``). It was
correct everywhere (bf16 rounding of F.linear in fp32). In 108 measurements of 42 (product, rows) points of both
families' prefix windows it beat the faster of PyTorch's default path and cuBLASLt twice, by 1.8 % and 0.2 %, within
the run-to-run spread and under the 3 % that ``gemm_plan.tune`` asks; elsewhere it took up to 2.6× their time. So it
is not a ``gemm_plan`` backend. ``experiments/hopper_gemm_probe.py`` shows why. The kernel is bound by its loads
(without the MMAs it is at most 0.2 µs per 1024 of K faster, 0.7 with 128 × 64 tiles).
Its largest tiles take 15-23 % less time per K step than cuBLAS, but they fill the SMs only with K split, and the
fp32 partials keep a launch's fixed cost 6-10 µs over cuBLAS's ~3.

Gluon has no CPU interpreter: on the CPU ``compile_for`` compiles the kernel for sm_90 without a GPU (what the
test does where Triton ≥ 3.6 is installed), and ``hopper_gemm_configs.py`` (``check_config``, ``plan_launch``,
``sweep_configs``) holds the host-side arithmetic;
the results on the GPU are compared with ``F.linear`` by ``tests/models/test_hopper_gemm.py`` and timed by
``experiments/split_k_sweep.py --kernel hopper``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:  # Gluon (Triton >= 3.6) and its Hopper modules; absent on the CPU wheel and on older Triton
    import triton
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    _tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared  # renamed after Triton 3.6
    _cta_barrier = getattr(gl, "thread_barrier", None) or gl.barrier  # renamed after Triton 3.6
    _PUBLIC_REINTERPRET = gl.constexpr(hasattr(gl.shared_memory_descriptor, "reinterpret"))  # 3.6: _reinterpret
except (ImportError, AttributeError):  # pragma: no cover - depends on the installed Triton
    gluon = gl = None

from hopper_gemm_configs import DEFAULT_CONFIG, check_config, launch_options, plan_launch  # noqa: E402


if gl is not None:

    @triton.constexpr_function
    def _pow2_floor(n):
        """The largest power of two at most ``n``: how many equal shares of a tile's weight rows its slices sum."""
        return 1 << (int(n).bit_length() - 1)

    @gluon.jit
    def _issue_load(w_desc, x_desc, w_bufs, x_bufs, ready, stage, off_w, off_x, k, pred):
        """TMA loads of one K step's weight and x tiles into ``stage``; ``ready[stage]`` completes with their bytes."""
        nbytes: gl.constexpr = w_desc.block_type.nbytes + x_desc.block_type.nbytes
        bar = ready.index(stage)
        mbarrier.expect(bar, nbytes, pred=pred)
        _tma_load(w_desc, [off_w, k], bar, w_bufs.index(stage), pred=pred)
        _tma_load(x_desc, [off_x, k], bar, x_bufs.index(stage), pred=pred)

    @gluon.jit
    def _loader(w_desc, x_desc, w_bufs, x_bufs, ready, empty, off_w, off_x, k_first, n_k):
        """Warp-specialised producer (one warp): fill stage i % STAGES once the MMAs have released it."""
        STAGES: gl.constexpr = w_bufs.type.shape[0]
        BK: gl.constexpr = w_desc.block_type.shape[1]
        for i in range(n_k):
            stage = i % STAGES
            mbarrier.wait(empty.index(stage), ((i // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1 at once
            _issue_load(w_desc, x_desc, w_bufs, x_bufs, ready, stage, off_w, off_x, (k_first + i) * BK, True)

    @gluon.jit
    def _mma_loop(w_desc, x_desc, w_bufs, x_bufs, ready, empty, off_w, off_x, k_first, n_k,
                  WS: gl.constexpr, MMA: gl.constexpr, layout: gl.constexpr):
        """The K loop of one program: wgmma on stage i while the loads of the next stages are in flight. Without
        WS the loads are issued here, STAGES - 1 ahead, into the stage the previous MMA has released; with WS the
        release is an ``empty`` arrival for the loader warp. Returns the fp32 ``[BW, BX]`` accumulator. ``MMA``
        False (a probe of the load path, ``hopper_gemm_probe.py``): the loads and waits only, the result zero."""
        STAGES: gl.constexpr = w_bufs.type.shape[0]
        BW: gl.constexpr = w_desc.block_type.shape[0]
        BK: gl.constexpr = w_desc.block_type.shape[1]
        BX: gl.constexpr = x_desc.block_type.shape[0]
        if not WS:
            for i in gl.static_range(STAGES - 1):
                _issue_load(w_desc, x_desc, w_bufs, x_bufs, ready, i, off_w, off_x, (k_first + i) * BK, i < n_k)
        acc = gl.zeros([BW, BX], gl.float32, layout)  # [BW, BX] weight rows × x rows
        for i in range(n_k):
            stage = i % STAGES
            mbarrier.wait(ready.index(stage), (i // STAGES) & 1)
            if MMA:
                acc = warpgroup_mma(w_bufs.index(stage), x_bufs.index(stage).permute((1, 0)), acc, is_async=True)
                # at most this MMA in flight: the previous one has read its stage, which can be refilled
                acc, _, _ = warpgroup_mma_wait(num_outstanding=1,
                                               deps=(acc, w_bufs.index(stage), x_bufs.index(stage)))
            if WS:
                mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), pred=i > 0)
            else:
                ahead = i + STAGES - 1
                _issue_load(w_desc, x_desc, w_bufs, x_bufs, ready, ahead % STAGES, off_w, off_x,
                            (k_first + ahead) * BK, ahead < n_k)
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        return acc

    @gluon.jit
    def _store_rows(total, rows, cols, dest, M, N):
        """Store a ``[CH, BW]`` chunk (x rows × weight rows) at ``dest`` (y or a slice's partial, both ``[M, N]``)."""
        inside = (rows < M)[:, None] & (cols < N)[None, :]  # [CH, BW]
        gl.store(dest + rows[:, None] * N + cols[None, :], total.to(dest.dtype.element_ty), mask=inside)

    @gluon.jit
    def _tile_index():
        """(this program's tile, the number of tiles): tiles are (weight tile, x tile) pairs, weight tiles fastest."""
        return gl.program_id(1) * gl.num_programs(0) + gl.program_id(0), gl.num_programs(0) * gl.num_programs(1)

    @gluon.jit
    def _store_partial(acc, part_ptr, layout: gl.constexpr):
        """This slice's fp32 ``[BW, BX]`` partial, straight from the MMA's registers, at its place in the partials
        ``[slices, tiles, BW, BX]`` (the tile's own order, rows past M included: no masks; a warp's store covers 8
        weight rows × 8 consecutive x rows, whole 32-byte sectors)."""
        BW: gl.constexpr = acc.type.shape[0]
        BX: gl.constexpr = acc.type.shape[1]
        w = gl.arange(0, BW, layout=gl.SliceLayout(1, layout))  # [BW]
        x = gl.arange(0, BX, layout=gl.SliceLayout(0, layout))  # [BX]
        tile, tiles = _tile_index()
        base = part_ptr + (gl.program_id(2) * tiles + tile) * (BW * BX)
        gl.store(base + w[:, None] * BX + x[None, :], acc)

    @gluon.jit
    def _sum_share(part_ptr, y_ptr, bias_ptr, share, off_w, off_x, M, N, HAS_BIAS: gl.constexpr,
                   SPLIT: gl.constexpr, SHARES: gl.constexpr, BW: gl.constexpr, BX: gl.constexpr,
                   num_warps: gl.constexpr):
        """y[x tile, weight rows of ``share``] (one of ``SHARES`` equal groups of the tile's weight rows) = the
        slices' partials summed in slice order (+ bias), rounded once: read along x (the partials' order), written
        along the weight rows (y's)."""
        RW: gl.constexpr = BW // SHARES
        SPT: gl.constexpr = 8 if RW >= 8 else RW
        TW: gl.constexpr = RW // SPT if RW // SPT <= 32 else 32
        read: gl.constexpr = gl.BlockedLayout([1, 4], [1, 32], [num_warps, 1], [1, 0])
        write: gl.constexpr = gl.BlockedLayout([SPT, 1], [TW, 32 // TW], [1, num_warps], [0, 1])
        tile, tiles = _tile_index()
        w = share * RW + gl.arange(0, RW, layout=gl.SliceLayout(1, read))  # [RW]
        x = gl.arange(0, BX, layout=gl.SliceLayout(0, read))  # [BX]
        at = w[:, None] * BX + x[None, :]  # [RW, BX] offsets in one slice's tile
        total = gl.load(part_ptr + tile * (BW * BX) + at, cache_modifier=".cg")
        for j in gl.static_range(1, SPLIT):
            total += gl.load(part_ptr + (j * tiles + tile) * (BW * BX) + at, cache_modifier=".cg")
        out = gl.convert_layout(total, write)  # [RW, BX]
        ws = off_w + share * RW + gl.arange(0, RW, layout=gl.SliceLayout(1, write))  # [RW] weight rows
        xs = off_x + gl.arange(0, BX, layout=gl.SliceLayout(0, write))  # [BX] x rows
        if HAS_BIAS:
            out += gl.load(bias_ptr + ws, mask=ws < N, other=0.0).to(gl.float32)[:, None]
        inside = (ws < N)[:, None] & (xs < M)[None, :]
        gl.store(y_ptr + xs[None, :] * N + ws[:, None], out.to(y_ptr.dtype.element_ty), mask=inside)

    @gluon.jit
    def _reduce_slices(part_ptr, y_ptr, arrived_ptr, bias_ptr, off_w, off_x, M, N, HAS_BIAS: gl.constexpr,
                       SPLIT: gl.constexpr, SPREAD: gl.constexpr, BW: gl.constexpr, BX: gl.constexpr,
                       num_warps: gl.constexpr):
        """After this slice's partial is written: the tile's y from its slices' partials, by the last slice to
        arrive or (``SPREAD``) by every slice for its share of the weight rows; the counters are left zero."""
        SHARES: gl.constexpr = _pow2_floor(SPLIT)
        split = gl.program_id(2)
        # every thread's stores before the counter's release; the partials are read from L2 after an acquire
        _cta_barrier()
        tile, tiles = _tile_index()
        counter = arrived_ptr + tile
        arrived = gl.atomic_add(counter, 1, sem="acq_rel", scope="gpu") + 1
        if SPREAD:
            # every slice of the tile is resident (the grid fits the SMs: hopper_linear checks), so each waits
            # for the others and sums its share (slices past the last share have none)
            while arrived < SPLIT:  # a compare-and-swap that never matches: a read the compiler cannot fold
                arrived = gl.atomic_cas(counter, -1, -1, sem="acquire", scope="gpu")
            departed = arrived_ptr + tiles + tile
            if gl.atomic_add(departed, 1, sem="acq_rel", scope="gpu") == SPLIT - 1:
                gl.atomic_xchg(counter, 0)  # every slice has seen them all: zero both for the next launch
                gl.atomic_xchg(departed, 0)
            _cta_barrier()
            if split < SHARES:
                _sum_share(part_ptr, y_ptr, bias_ptr, split, off_w, off_x, M, N, HAS_BIAS, SPLIT, SHARES, BW, BX,
                           num_warps)
        elif arrived == SPLIT:  # the tile's last slice to arrive sums them all
            _cta_barrier()
            for share in gl.static_range(SHARES):
                _sum_share(part_ptr, y_ptr, bias_ptr, share, off_w, off_x, M, N, HAS_BIAS, SPLIT, SHARES, BW, BX,
                           num_warps)
            gl.atomic_xchg(counter, 0)  # zero for the next launch (graph replays included)

    @gluon.jit
    def _epilogue(acc, x_bufs, bias_ptr, y_ptr, off_w, off_x, M, N, HAS_BIAS: gl.constexpr, num_warps: gl.constexpr):
        """One slice: store ``acc`` (weight rows × x rows) transposed into y ``[M, N]`` (+ bias). The tile goes
        through shared memory (the x stages, free once the MMAs are done) and out in chunks of 32 x rows, each
        thread writing 8 consecutive columns, so few registers hold addresses at a time."""
        BW: gl.constexpr = acc.type.shape[0]
        BX: gl.constexpr = acc.type.shape[1]
        CH: gl.constexpr = 32 if BX > 32 else BX
        out_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [num_warps, 1], [1, 0])  # 64 columns a warp row
        plain: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        if _PUBLIC_REINTERPRET:
            scratch = x_bufs.reinterpret(gl.float32, [BX, BW], plain)  # [BX, BW] fp32 over the x stages
        else:
            scratch = x_bufs._reinterpret(gl.float32, [BX, BW], plain)
        _cta_barrier()  # every warpgroup's MMAs have finished reading the x stages
        # stored transposed (x rows × weight rows): a warp's lanes hold 8 consecutive weight rows, so the stores
        # meet few bank conflicts, and each chunk is read back row by row, 8 consecutive columns a thread
        scratch.store(gl.permute(acc, (1, 0)))
        _cta_barrier()
        cols = off_w + gl.arange(0, BW, layout=gl.SliceLayout(0, out_layout))  # [BW]
        if HAS_BIAS:
            bias = gl.load(bias_ptr + cols, mask=cols < N, other=0.0).to(gl.float32)  # [BW]
        for c in gl.static_range(BX // CH):
            rows = off_x + c * CH + gl.arange(0, CH, layout=gl.SliceLayout(1, out_layout))  # [CH]
            chunk = scratch.slice(c * CH, CH, dim=0).load(out_layout)  # [CH, BW]
            if HAS_BIAS:
                chunk += bias[None, :]
            _store_rows(chunk, rows, cols, y_ptr, M, N)

    @gluon.jit
    def _consumer(w_desc, x_desc, w_bufs, x_bufs, ready, empty, off_w, off_x, k_first, n_k, bias_ptr, y_ptr, part_ptr,
                  arrived_ptr, M, N, HAS_BIAS: gl.constexpr, SPLIT: gl.constexpr, SPREAD: gl.constexpr,
                  WS: gl.constexpr, MMA: gl.constexpr, EPI: gl.constexpr, layout: gl.constexpr,
                  num_warps: gl.constexpr):
        """The K loop and the epilogue (Gluon 3.6's warp_specialize returns nothing from its default partition)."""
        acc = _mma_loop(w_desc, x_desc, w_bufs, x_bufs, ready, empty, off_w, off_x, k_first, n_k, WS, MMA, layout)
        if EPI == 0:  # a probe: no epilogue, one element stored so that the MMAs stay
            w = gl.arange(0, acc.type.shape[0], layout=gl.SliceLayout(1, layout))
            x = gl.arange(0, acc.type.shape[1], layout=gl.SliceLayout(0, layout))
            first = (w[:, None] + x[None, :]) == 0  # [BW, BX]
            gl.store(part_ptr + w[:, None] * 0 + x[None, :] * 0 + gl.program_id(0), acc, mask=first)
        elif SPLIT > 1:
            _store_partial(acc, part_ptr, layout)
            if EPI == 2:
                _reduce_slices(part_ptr, y_ptr, arrived_ptr, bias_ptr, off_w, off_x, M, N, HAS_BIAS, SPLIT, SPREAD,
                               acc.type.shape[0], acc.type.shape[1], num_warps)
        else:
            _epilogue(acc, x_bufs, bias_ptr, y_ptr, off_w, off_x, M, N, HAS_BIAS, num_warps)

    @gluon.jit
    def _hopper_linear_kernel(w_desc, x_desc, bias_ptr, y_ptr, part_ptr, arrived_ptr, M, N, k_steps, k_per_slice,
                              HAS_BIAS: gl.constexpr, SPLIT: gl.constexpr, SPREAD: gl.constexpr, STAGES: gl.constexpr,
                              WS: gl.constexpr, MMA: gl.constexpr, EPI: gl.constexpr, num_warps: gl.constexpr):
        """Program (weight tile, x tile, slice): y[x tile, weight tile] over K steps [slice · k_per_slice, ...)."""
        BW: gl.constexpr = w_desc.block_type.shape[0]
        BK: gl.constexpr = w_desc.block_type.shape[1]
        BX: gl.constexpr = x_desc.block_type.shape[0]
        off_w = gl.program_id(0) * BW
        off_x = gl.program_id(1) * BX
        k_first = gl.program_id(2) * k_per_slice
        n_k = gl.minimum(k_per_slice, k_steps - k_first)
        w_bufs = gl.allocate_shared_memory(w_desc.dtype, [STAGES, BW, BK], w_desc.layout)  # [STAGES, BW, BK]
        x_bufs = gl.allocate_shared_memory(x_desc.dtype, [STAGES, BX, BK], x_desc.layout)  # [STAGES, BX, BK]
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())  # loads landed
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())  # stage released (WS)
        for s in gl.static_range(STAGES):
            mbarrier.init(ready.index(s), count=1)
            mbarrier.init(empty.index(s), count=1)
        # wgmma: 16 × BX × 16 instructions, the warps stacked along the weight rows (4 per 64 rows)
        layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                         instr_shape=[16, BX, 16])
        if WS:  # the default partition (num_warps) runs the MMAs and the epilogue, one worker warp the loads
            gl.warp_specialize([
                (_consumer, (w_desc, x_desc, w_bufs, x_bufs, ready, empty, off_w, off_x, k_first, n_k, bias_ptr, y_ptr,
                             part_ptr, arrived_ptr, M, N, HAS_BIAS, SPLIT, SPREAD, WS, MMA, EPI, layout, num_warps)),
                (_loader, (w_desc, x_desc, w_bufs, x_bufs, ready, empty, off_w, off_x, k_first, n_k)),
            ], [1], [24])
        else:
            _consumer(w_desc, x_desc, w_bufs, x_bufs, ready, empty, off_w, off_x, k_first, n_k, bias_ptr, y_ptr,
                      part_ptr, arrived_ptr, M, N, HAS_BIAS, SPLIT, SPREAD, WS, MMA, EPI, layout, num_warps)


def _descriptors(x2: torch.Tensor, weight: torch.Tensor, config) -> tuple:
    """TMA descriptors of the weight ``[N, K]`` (BW × BK boxes) and x ``[M, K]`` (BX × BK boxes, rows past M
    read as zeros), 128-byte swizzled as wgmma reads them."""
    bw, bx, bk = config[:3]
    element = gl.bfloat16 if weight.dtype == torch.bfloat16 else gl.float16
    w_layout = gl.NVMMASharedLayout.get_default_for([bw, bk], element)
    x_layout = gl.NVMMASharedLayout.get_default_for([bx, bk], element)
    return (TensorDescriptor.from_tensor(weight, [bw, bk], w_layout),
            TensorDescriptor.from_tensor(x2, [bx, bk], x_layout))


def hopper_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  config=DEFAULT_CONFIG, mma: bool = True, reduce: str = "last", epilogue: int = 2) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for bf16/fp16 x ``[..., K]``, weight ``[N, K]``, bias ``[N]`` on a Hopper GPU,
    by the kernel with ``config`` = (BW, BX, BK, SPLIT, STAGES, WS): ``[..., N]`` in x's dtype. ``mma=False``
    probes the load path: the same loads, waits and stores, no MMA (the output is the bias, or zero).
    ``reduce`` (with slices): "last" (the tile's last slice sums them all), "spread" (every slice waits for the
    others and sums its share of the tile; the grid must fit the SMs, one program each, or the waits could never
    end), "auto" (spread where the grid fits: what the sweep and the probe ran). "spread" assumes every program of
    the launch is resident at once: not so under an MPS or green-context limit on the SMs, or beside another
    spread launch on a second stream, where its waits would never end. ``epilogue`` 0 or 1 (probes; the output is
    then not the product): no epilogue (one element stored), or the slices' partials written and not summed."""
    if gl is None:
        raise RuntimeError("hopper_linear needs Triton >= 3.6 (Gluon); use torch.nn.functional.linear")
    config = check_config(config)
    K = x.shape[-1]
    N = weight.shape[0]
    if (x.device.type != "cuda" or x.dtype not in (torch.bfloat16, torch.float16) or weight.dtype != x.dtype
            or weight.shape != (N, K) or (bias is not None and bias.shape != (N,)) or K % 8):
        raise ValueError(f"hopper_linear: x {tuple(x.shape)} {x.dtype} on {x.device}, weight {tuple(weight.shape)} "
                         f"{weight.dtype}, bias {None if bias is None else tuple(bias.shape)}: want CUDA bf16/fp16 "
                         "operands of one dtype, weight [N, K], bias [N], K a multiple of 8 (16-byte TMA rows)")
    x2 = x.reshape(-1, K)
    if x2.stride(-1) != 1 or x2.stride(0) != K:
        x2 = x2.contiguous()
    weight = weight if weight.stride() == (K, 1) else weight.contiguous()
    if bias is not None:
        if bias.device != x.device or bias.dtype != x.dtype:
            raise ValueError(f"hopper_linear: bias {bias.dtype} on {bias.device}: want x's dtype {x.dtype} on "
                             f"{x.device}")
        bias = bias.contiguous()
    M = x2.shape[0]
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)  # [M, N]
    if M == 0:
        return y.view(*x.shape[:-1], N)
    launch = plan_launch(M, N, K, config)
    slices = launch["slices"]
    grid = launch["grid"]
    fits = grid[0] * grid[1] * grid[2] <= torch.cuda.get_device_properties(x.device).multi_processor_count
    if reduce not in ("auto", "last", "spread") or (reduce == "spread" and not fits):
        raise ValueError(f"hopper_linear: reduce={reduce!r} with grid {grid}: want 'auto', 'last' or 'spread', "
                         "and 'spread' only where the grid has at most one program per SM")
    spread = slices > 1 and (reduce == "spread" or (reduce == "auto" and fits))
    tiles = grid[0] * grid[1]
    part = (torch.empty(slices, tiles, config[0], config[1], dtype=torch.float32, device=x.device)  # [S, T, BW, BX]
            if slices > 1 else y)
    from fastdllm.kernels import arrival_counters
    arrived = arrival_counters(x.device, 2 * grid[0] * grid[1]) if slices > 1 else y  # arrivals, departures
    w_desc, x_desc = _descriptors(x2, weight, config)
    bias_arg = weight if bias is None else bias
    _hopper_linear_kernel[grid](w_desc, x_desc, bias_arg, y, part, arrived, M, N, -(-K // config[2]),
                                launch["k_steps_per_slice"], HAS_BIAS=bias is not None, SPLIT=slices, SPREAD=spread,
                                STAGES=config[4], WS=config[5], MMA=mma, EPI=epilogue, num_warps=launch["num_warps"],
                                **launch_options(config, launch["num_warps"]))
    return y.view(*x.shape[:-1], N)


def compile_for(M: int, N: int, K: int, config=DEFAULT_CONFIG, bias: bool = False, capability: int = 90,
                mma: bool = True, spread: bool = False, epilogue: int = 2):
    """Compile the kernel for ``config`` and a product's shape for sm_``capability`` without a GPU (no launch):
    Triton's compiled kernel (``.asm`` holds its PTX and cubin, ``.metadata.shared`` its shared memory)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import mangle_type

    config = check_config(config)
    launch = plan_launch(M, N, K, config)
    x2 = torch.empty(M, K, dtype=torch.bfloat16)  # host tensors only give the descriptors' shapes and dtypes
    weight = torch.empty(N, K, dtype=torch.bfloat16)
    w_desc, x_desc = _descriptors(x2, weight, config)
    args = {"w_desc": w_desc, "x_desc": x_desc, "bias_ptr": weight, "y_ptr": weight,
            "part_ptr": torch.empty(1, dtype=torch.float32), "arrived_ptr": torch.empty(1, dtype=torch.int32),
            "M": M, "N": N, "k_steps": -(-K // config[2]), "k_per_slice": launch["k_steps_per_slice"]}
    signature = {name: mangle_type(value) for name, value in args.items()}
    constants = {"HAS_BIAS": bias, "SPLIT": launch["slices"], "STAGES": config[4], "WS": config[5], "MMA": mma,
                 "EPI": epilogue,
                 "SPREAD": spread and launch["slices"] > 1,
                 "num_warps": launch["num_warps"]}
    names = list(_hopper_linear_kernel.arg_names)
    signature.update({name: "constexpr" for name in constants})
    # as a launch specialises them: torch's allocations are 16-byte aligned, integers divisible by 16 are marked
    aligned = [n for n, v in args.items() if isinstance(v, torch.Tensor) or (isinstance(v, int) and v % 16 == 0)]
    source = GluonASTSource(_hopper_linear_kernel, {n: signature[n] for n in names},
                            constexprs={(names.index(n),): v for n, v in constants.items()},
                            attrs={(names.index(n),): [["tt.divisibility", 16]] for n in aligned})
    options = {"num_warps": launch["num_warps"], **launch_options(config, launch["num_warps"])}
    return triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)
