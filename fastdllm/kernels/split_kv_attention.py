"""Split-KV attention for few query rows over a long key range (a Triton kernel, CUDA).

A cached decoding step recomputes few positions (a dual-cache step: the 32 rows of the block) that attend
to every key of the canvas (~1000). Flash-attention kernels parallelise over batch × heads × query tiles:
at batch 1 that is 32 programs on a 132-SM H100, and the attention of one layer takes ~18 µs to read the
~17 MB of keys and values it needs 6 µs for. Splitting the key range as well (flash-decoding, Dao et al.
2023) gives every SM work: each program attends its query tile to one slice of the keys and writes a partial
output with its log-sum-exp, and the last program of a query tile to finish (an atomic arrival counter per
tile) combines the slices exactly (the softmax over the union of the slices), so one launch does it all. With
grouped-query heads (Dream: 7 query heads per key/value head) a program stacks the query heads of one key/value
head as its rows (``pack_gqa``), so each slice of keys is read once for the group; SDPA's kernels read it once per
query head, so packed steps take the kernel at larger batches too, and where their grid alone fills the GPU with
one slice, each program writes its output directly (no partials, no counter). Same mathematics as
``scaled_dot_product_attention`` with a key-padding mask (scores in fp32, probabilities rounded to the value
dtype before the P·V product, as flash-attention does), different rounding: ``tests/models/test_triton_kernels.py``
compares the two, packed and unpacked, on the CPU through Triton's interpreter.

``attend`` picks the kernel for CUDA tensors when Triton is importable and the shape suits it
(``use_split_kv``), and ``scaled_dot_product_attention`` otherwise.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from fastdllm.kernels import arrival_counters, dot_precision, tl, triton

MAX_QUERY_ROWS = 128  # beyond, SDPA was as fast (prefix-cache windows, round5_dev/prefix_{llada,dream}.json)
BLOCK_N = 64  # keys per inner iteration
FP32_BLOCK_N = 32  # keys per iteration for fp32 on a GPU (16 for head dims above 128): the default tiles' shared
# memory compiled for sm_90 stays at most 164 KB (tests/models/test_triton_kernels.py); the bf16 defaults need
# 295 KB in fp32 for Dream's packed layout, more than an H100 has
PACKED_ANY_BATCH_ROWS = 64  # packed grouped-query steps of at most this many rows take the kernel at any batch: the
# 33-row dual step was measured at batch 4-32 (round12_dev/split_kv_ea728ca/); longer windows keep the grid rule


def use_split_kv(q: torch.Tensor, keys: torch.Tensor, pack_gqa: bool = True) -> bool:
    """Whether ``attend`` runs the split-KV kernel for these tensors: Triton present, at most
    ``MAX_QUERY_ROWS`` query rows, a power-of-two head dim in [16, 256], bf16 or fp16, and either grouped-query
    heads packed (``pack_gqa``) with at most ``PACKED_ANY_BATCH_ROWS`` query rows (a dual-cache step: at any
    batch), or few enough batch rows × heads × query tiles that a flash-attention grid would leave half the SMs
    idle. fp32 runs SDPA: its default tiles take twice the shared memory (Dream's packed layout would need 295 KB
    of an H100's 227 KB, compiled for sm_90), and fp32 decodes are the ones that check the others, where speed
    does not matter.

    One head per program (measured on an H100, ``experiments/bench_attention.py``): at batch 1 the split kernel
    takes 11.9 µs per LLaDA-8B layer against SDPA's 17.3; at batch 4, where SDPA's grid already fills the GPU, 46 µs
    against 30. Packed, a program reads each key/value head once for its whole group of query heads, which SDPA
    does not: on an H200 over 1024 keys (``experiments/split_kv_sweep.py``, results/speed/round12_dev/split_kv_ea728ca/,
    µs per Dream-7B layer, 33 query rows) batch 4 13.6 against SDPA's 18.1, batch 16 27.1 against 57.8, batch 32
    52.6 against 96.2 (one key slice from batch 5 at that shape, ``_layout``)."""
    B, H, m, D = q.shape
    shape_ok = (triton is not None and m <= MAX_QUERY_ROWS and 16 <= D <= 256 and D & (D - 1) == 0
                and q.dtype in (torch.bfloat16, torch.float16) and keys.dtype == q.dtype)
    if not shape_ok:
        return False
    if pack_gqa and H != keys.shape[1] and m <= PACKED_ANY_BATCH_ROWS:
        return True
    return B * H * -(-m // _block_m(m)) <= _processors(q.device) // 2


if triton is not None:

    @triton.jit
    def _split_kv_kernel(Q, K, V, KEEP, O_PART, LSE_PART, ARRIVED, OUT,
                         sq_b, sq_h, sq_m, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, skeep_b, so_b, so_h, so_m,
                         n_heads, group, m, L, scale_log2, PACKED: tl.constexpr, N_SPLITS: tl.constexpr,
                         KEYS_PER_SPLIT: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
                         PRECISION: tl.constexpr):
        """Program (split, row tile, batch·head group): softmax(q kᵀ)·v over keys [split·S, (split+1)·S), as a
        normalised partial output ``O_PART[bg, split, rows]`` (fp32) and its base-2 log-sum-exp ``LSE_PART``;
        the tile's last program to arrive (``ARRIVED``, one int32 counter per tile, zero between launches)
        combines the ``N_SPLITS`` partials (a compile-time count: the loops over them unroll, their loads overlap) into ``OUT`` and resets the counter.
        With ``N_SPLITS == 1`` the program writes ``OUT`` itself; ``O_PART``, ``LSE_PART`` and ``ARRIVED`` are not touched.

        A program's rows come from ``PACKED`` query heads (1, or ``group``: the query heads that share one
        key/value head, stacked as ``PACKED · m`` rows, so their keys and values are read once per slice)."""
        split, tile, bg = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        groups = n_heads // PACKED  # head groups per batch row
        b, first = bg // groups, (bg % groups) * PACKED  # batch row, first query head of the group
        kv_h = first // group  # grouped-query attention: ``group`` query heads share one key/value head
        packed = tile * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M] row of the stack: head offset · m + query row
        valid = packed < PACKED * m  # [BLOCK_M]
        heads = first + packed // m  # [BLOCK_M] each row's query head
        rows = packed % m  # [BLOCK_M] each row's query position
        dims = tl.arange(0, D)  # [D]
        q = tl.load(Q + b * sq_b + heads[:, None] * sq_h + rows[:, None] * sq_m + dims[None, :],
                    mask=valid[:, None], other=0.0)  # [BLOCK_M, D]
        # running max (base 2), running sum and output; -1e30 (not -inf) keeps fully masked slices NaN-free:
        # their garbage weight is exp2(-1e30 - real max) = 0 once a real key is seen, here or in the combine
        m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, D], tl.float32)
        lo = split * KEYS_PER_SPLIT
        for offset in range(0, KEYS_PER_SPLIT, BLOCK_N):  # KEYS_PER_SPLIT is a multiple of BLOCK_N
            cols = lo + offset + tl.arange(0, BLOCK_N)  # [BLOCK_N]
            inside = cols < L
            k = tl.load(K + b * sk_b + kv_h * sk_h + cols[None, :] * sk_l + dims[:, None],
                        mask=inside[None, :], other=0.0)  # [D, BLOCK_N]
            s = tl.dot(q, k, input_precision=PRECISION) * scale_log2  # [BLOCK_M, BLOCK_N] fp32, base-2 logits
            keep = inside
            if HAS_MASK:
                keep = keep & (tl.load(KEEP + b * skeep_b + cols, mask=inside, other=0) != 0)
            s = tl.where(keep[None, :], s, -1.0e30)
            m_new = tl.maximum(m_i, tl.max(s, 1))  # [BLOCK_M]
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])  # [BLOCK_M, BLOCK_N]
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + b * sv_b + kv_h * sv_h + cols[:, None] * sv_l + dims[None, :],
                        mask=inside[:, None], other=0.0)  # [BLOCK_N, D]
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        l_safe = tl.where(l_i > 0, l_i, 1.0)
        out_at = OUT + b * so_b + heads[:, None] * so_h + rows[:, None] * so_m + dims[None, :]  # [BLOCK_M, D]
        if N_SPLITS == 1:  # the whole key range in this program: the output directly, no partials to combine
            tl.store(out_at, (acc / l_safe[:, None]).to(OUT.dtype.element_ty), mask=valid[:, None])
            return
        stack = PACKED * m  # rows per head group
        part = (bg * N_SPLITS + split) * stack + packed  # [BLOCK_M] row index into the partial buffers
        tl.store(O_PART + part[:, None] * D + dims[None, :], acc / l_safe[:, None], mask=valid[:, None])
        tl.store(LSE_PART + part, m_i + tl.log2(l_safe), mask=valid)
        # arrival: the barrier orders every thread's stores before the release of the counter increment; the
        # program that sees N_SPLITS - 1 arrived before it combines (acquire; .cg loads read L2, not a stale L1)
        tl.debug_barrier()
        counter = ARRIVED + bg * tl.num_programs(1) + tile
        if tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu") == N_SPLITS - 1:
            tl.debug_barrier()
            base = bg * N_SPLITS * stack + packed  # [BLOCK_M] slice 0's partial rows
            top = tl.full([BLOCK_M], -1.0e30, tl.float32)
            for j in tl.static_range(N_SPLITS):
                top = tl.maximum(top, tl.load(LSE_PART + base + j * stack, mask=valid, other=-1.0e30, cache_modifier=".cg"))
            total = tl.zeros([BLOCK_M], tl.float32)
            out = tl.zeros([BLOCK_M, D], tl.float32)
            for j in tl.static_range(N_SPLITS):
                weight = tl.exp2(tl.load(LSE_PART + base + j * stack, mask=valid, other=-1.0e30, cache_modifier=".cg") - top)
                o = tl.load(O_PART + (base + j * stack)[:, None] * D + dims[None, :], mask=valid[:, None], other=0.0,
                            cache_modifier=".cg")  # [BLOCK_M, D]
                out += o * weight[:, None]
                total += weight
            out = out / tl.where(total > 0, total, 1.0)[:, None]
            tl.store(out_at, out.to(OUT.dtype.element_ty), mask=valid[:, None])
            tl.atomic_xchg(counter, 0)  # zero for the next launch (graph replays included)


def default_splits(m: int) -> int:
    """Key slices for ``m`` query rows: 4 up to 64 rows, 2 beyond. Measured on an H100 at batch 1 over a
    1024-key canvas with the fused combine (``experiments/bench_attention.py``,
    results/speed/round6_dev/fused_combine/): at 32 rows 4 slices take 10.2 µs per LLaDA-8B layer (Dream-7B: 9.9)
    against 13.5 for 2 and 12.4 for 8; at 64 rows 11.0 against 12.3 for 2; at 128 rows 2 slices win (13.0 against
    15.2): each slice's partial output is written and read again in fp32, a cost that grows with slices × rows."""
    return 4 if m <= 64 else 2


def _block_m(m: int) -> int:
    """Query rows per program: the smallest of 16 / 32 / 64 that holds ``m`` (64 tiles beyond)."""
    return 16 if m <= 16 else 32 if m <= 32 else 64


def _fp32_block_n(q: torch.Tensor) -> int | None:
    """Keys per iteration for fp32 on a GPU (``FP32_BLOCK_N``, half of it for head dims above 128), whose tiles
    take twice the shared memory of bf16's; None (``_layout``'s default) for every other case."""
    if q.dtype != torch.float32 or not q.is_cuda:
        return None
    return FP32_BLOCK_N if q.shape[-1] <= 128 else FP32_BLOCK_N // 2


def _layout(B: int, H: int, H_kv: int, m: int, pack_gqa: bool, block_m: int | None, n_splits: int | None,
            block_n: int | None, processors: int) -> tuple[int, int, int, int, int]:
    """(query heads per program, rows per program tile, row tiles per head group, key slices, keys per
    iteration) for B batch rows, H query heads over H_kv key/value heads and m query rows; None picks the default.

    Unpacked, a program takes one head's rows (``_block_m``, ``default_splits``, 64 keys per iteration). Packed
    (grouped-query attention only), it stacks the ``H // H_kv`` heads that share a key/value head as
    ``H // H_kv · m`` rows, and the default is the smallest row tile of 32 or 64 whose grid with 2 key slices
    fits in one wave over the ``processors`` SMs, with 4 slices where those fit too, 128 keys per iteration; where
    not even 2 slices fit (larger batches) one slice of 64 keys per iteration, which writes the output directly.
    Measured on an H200 at Dream-7B's 28 / 4 heads over 1024 keys (``experiments/split_kv_sweep.py``,
    results/speed/round9_dev/, µs per layer, against the unpacked default): 33 rows 9.3 (32-row tiles, 4 slices,
    128 programs) against 11.2; 65 rows 11.9 (32, 2, 120) against 13.6; 97 rows 13.3 (64, 2, 88) against 13.6;
    33 rows at batch 16 (results/speed/round12_dev/split_kv_ea728ca/) 27.1 with one slice of 64 keys per
    iteration, 50.5 with 2 slices of 128, SDPA 57.8."""
    packed = H // H_kv if pack_gqa else 1
    groups = B * H // packed  # programs per key slice and row tile
    if packed == 1:
        block_m = _block_m(m) if block_m is None else block_m
        n_splits = default_splits(m) if n_splits is None else n_splits
        block_n = BLOCK_N if block_n is None else block_n
    else:
        if block_m is None:
            block_m = next((size for size in (32, 64) if groups * -(-packed * m // size) * 2 <= processors), 64)
        programs = groups * -(-packed * m // block_m)  # per key slice
        if n_splits is None:
            n_splits = 4 if programs * 4 <= processors else 2 if programs * 2 <= processors else 1
        block_n = (2 * BLOCK_N if n_splits > 1 else BLOCK_N) if block_n is None else block_n
    return packed, block_m, -(-packed * m // block_m), n_splits, block_n


@functools.lru_cache(maxsize=None)
def _processors(device: torch.device) -> int:
    """SMs of a CUDA device; 8 for the CPU (Triton's interpreter, where only correctness is at stake)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 8


def split_kv_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                       key_mask: torch.Tensor | None = None, n_splits: int | None = None,
                       block_m: int | None = None, num_warps: int = 4, block_n: int | None = None,
                       num_stages: int | None = None, pack_gqa: bool = True) -> torch.Tensor:
    """softmax(q kᵀ / √D) v over the keys whose ``key_mask`` is True (every key when None).

    q ``[B, H, m, D]``; keys, values ``[B, H_kv, L, D]`` (H a multiple of H_kv; unit stride over D);
    key_mask ``[B, L]`` bool. Returns ``[B, H, m, D]`` in q's dtype, a transposed view of a contiguous
    ``[B, m, H, D]`` tensor (the layout the output projection reads). ``n_splits`` cuts the key range into that
    many slices of a multiple of ``block_n`` keys; ``block_m`` (rows per program, a power of two ≥ 16),
    ``num_warps``, ``block_n`` (keys per inner iteration, a power of two ≥ 16; the three default as ``_layout``
    says) and ``num_stages`` (Triton's software
    pipelining depth; its default when None) tune the programs (``experiments/split_kv_sweep.py`` sweeps them);
    fp32 on a GPU defaults to ``FP32_BLOCK_N`` keys per iteration and multiplies in fp32 (not TF32).
    ``pack_gqa`` (the default): with grouped-query attention, one program takes the rows of all the
    query heads that share a key/value head (``_layout``); the same result, row for row, as unpacked.
    """
    if triton is None:
        raise RuntimeError("split_kv_attention needs Triton (pip install triton); attend() falls back to SDPA")
    B, H, m, D = q.shape
    _, H_kv, L, _ = keys.shape
    if H % H_kv or values.shape != keys.shape or keys.shape[0] != B or keys.shape[-1] != D:
        raise ValueError(f"split_kv_attention: q {tuple(q.shape)}, keys {tuple(keys.shape)}, values "
                         f"{tuple(values.shape)}: want q [B, H, m, D] and keys = values [B, H_kv, L, D], H % H_kv == 0")
    q, keys, values = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, keys, values))
    block_n = _fp32_block_n(q) if block_n is None else block_n
    packed, block_m, tiles, n_splits, block_n = _layout(B, H, H_kv, m, pack_gqa, block_m, n_splits, block_n,
                                                        _processors(q.device))
    for name, value in (("block_m", block_m), ("block_n", block_n)):
        if value < 16 or value & (value - 1):
            raise ValueError(f"split_kv_attention: {name}={value}; want a power of two >= 16")
    n_splits = max(1, min(n_splits, triton.cdiv(L, block_n)))  # each slice at least one block_n of keys
    keys_per_split = triton.cdiv(triton.cdiv(L, n_splits), block_n) * block_n
    n_splits = triton.cdiv(L, keys_per_split)
    parts = B * H * n_splits * m if n_splits > 1 else 1  # one slice: written directly, the partials unused
    o_part = torch.empty(parts, D, dtype=torch.float32, device=q.device)  # [BH·splits·m, D]
    lse_part = torch.empty(parts, dtype=torch.float32, device=q.device)  # [BH·splits·m]
    out = torch.empty(B, m, H, D, dtype=q.dtype, device=q.device).transpose(1, 2)  # [B, H, m, D] view
    keep = lse_part  # any tensor: not read without HAS_MASK
    if key_mask is not None:
        if key_mask.shape != (B, L) or key_mask.dtype != torch.bool:
            raise ValueError(f"key_mask is {key_mask.dtype} {tuple(key_mask.shape)}; want bool [B, L] = [{B}, {L}]")
        keep = key_mask if key_mask.stride(-1) == 1 else key_mask.contiguous()  # [B, L]
    groups = B * H // packed  # programs per (slice, row tile)
    arrived = arrival_counters(q.device, groups * tiles if n_splits > 1 else 1)  # [≥ groups·tiles] int32, zero
    _split_kv_kernel[(n_splits, tiles, groups)](
        q, keys, values, keep, o_part, lse_part, arrived, out,
        q.stride(0), q.stride(1), q.stride(2), keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2), keep.stride(0), out.stride(0), out.stride(1), out.stride(2),
        H, H // H_kv, m, L, math.log2(math.e) / math.sqrt(D), PACKED=packed, N_SPLITS=n_splits,
        KEYS_PER_SPLIT=keys_per_split, HAS_MASK=key_mask is not None, BLOCK_M=block_m, BLOCK_N=block_n, D=D,
        PRECISION=dot_precision(q.dtype), num_warps=num_warps, **({} if num_stages is None else {"num_stages": num_stages}))
    return out


def attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_mask: torch.Tensor | None,
           split_kv: bool, pack_gqa: bool = True) -> torch.Tensor:
    """Attention of q ``[B, H, m, D]`` over keys/values ``[B, H_kv, L, D]`` (key_mask ``[B, L]`` or None):
    the split-KV kernel (layout ``pack_gqa``) when ``split_kv`` and the tensors suit it (``use_split_kv``,
    CUDA), else SDPA."""
    if split_kv and q.is_cuda and use_split_kv(q, keys, pack_gqa):
        return split_kv_attention(q, keys, values, key_mask, pack_gqa=pack_gqa)
    mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, L]
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=keys.shape[1] != q.shape[1])
