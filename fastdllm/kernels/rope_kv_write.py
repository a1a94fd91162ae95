"""RoPE of a forward's queries and keys, and the keys' and values' write into the KV store, in one launch.

Each layer of a cached step otherwise runs a compiled RoPE kernel (queries and keys) and then ``kv_write``:
two launches for the 64 KB a 32-row LLaDA-8B step rotates: graph-timed on an H200 (``experiments/
rope_write_sweep.py``, results/speed/round8_dev/sweep_d8d9414/), a compiled RoPE and the copy take 3.12 µs per
layer, this kernel 2.08 (Dream-7B's 33 rows: 4.62 against 1.99; 256 rows: 14.17 against 3.63). Here one program per (row tile, batch row, head) rotates a query head's rows into a new tensor, or a
key head's rows straight into the store (with the value rows beside them). The rotation is
``fastdllm.models.layer_functions.apply_rope``'s, in fp32 and with its roundings (the kernel is compiled without
fused multiply-adds: ``x₁·cos − x₂·sin`` rounds each product, as PyTorch does), so the result equals the eager
RoPE followed by ``index_copy_`` bit for bit (``tests/models/test_rope_kv_write.py``, through Triton's
interpreter).
"""

from __future__ import annotations

import torch

from fastdllm.kernels import tl, triton

ROWS = 8  # positions per program: the fastest of 8, 16, 32 (× 1, 2, 4 warps) at every shape swept on an H200
# (experiments/rope_write_sweep.py, results/speed/round8_dev/sweep_d8d9414/: LLaDA-8B 32 rows 2.08 µs per layer
# against 2.68 for 16 rows, reading one half of the tables; 256 rows 3.63 against 4.36)


if triton is not None:

    @triton.jit
    def _rotate_half(X, COS, SIN, x_row, c_row, dims, inside, HALF: tl.constexpr, SAME_HALVES: tl.constexpr):
        """(x₁·c₁ − x₂·s₁, x₂·c₂ + x₁·s₂) in fp32 for row offsets ``x_row``/``c_row`` [ROWS, 1] and the first-half
        dims ``dims`` [1, BLOCK_H]: ``apply_rope`` with the half-split rotation. ``SAME_HALVES``: the tables'
        two halves are equal (``rope_tables`` makes them so), and only the first is read."""
        x1 = tl.load(X + x_row + dims, mask=inside, other=0.0).to(tl.float32)  # [ROWS, BLOCK_H]
        x2 = tl.load(X + x_row + HALF + dims, mask=inside, other=0.0).to(tl.float32)
        c1 = tl.load(COS + c_row + dims, mask=inside, other=0.0)
        s1 = tl.load(SIN + c_row + dims, mask=inside, other=0.0)
        if SAME_HALVES:
            c2, s2 = c1, s1
        else:
            c2 = tl.load(COS + c_row + HALF + dims, mask=inside, other=0.0)
            s2 = tl.load(SIN + c_row + HALF + dims, mask=inside, other=0.0)
        return x1 * c1 - x2 * s1, x2 * c2 + x1 * s2

    @triton.jit
    def _rope_kv_write_kernel(Q, K, V, COS, SIN, Q_COS, Q_SIN, INDEX, STORE_K, STORE_V, Q_OUT,
                              sq_b, sq_h, sq_m, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n, sc_b, sc_n, sqc_b, sqc_m,
                              ss_b, ss_h, ss_l, so_b, so_h, so_m, m, n, n_heads, n_kv_heads,
                              HALF: tl.constexpr, BLOCK_H: tl.constexpr, ROWS: tl.constexpr, SAME_HALVES: tl.constexpr):
        """Program (row tile, batch·(query heads + key/value heads)): a query head's rows [tile·ROWS, +ROWS) rotated
        into Q_OUT; a key/value head's rows rotated (keys) or copied (values) to store positions INDEX[row]."""
        tile, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // (n_heads + n_kv_heads), bh % (n_heads + n_kv_heads)
        rows = tile * ROWS + tl.arange(0, ROWS)  # [ROWS]
        dims = tl.arange(0, BLOCK_H)[None, :]  # [1, BLOCK_H]
        if h < n_heads:
            inside = (rows < m)[:, None] & (dims < HALF)  # [ROWS, BLOCK_H]
            o1, o2 = _rotate_half(Q + b * sq_b + h * sq_h, Q_COS + b * sqc_b, Q_SIN + b * sqc_b,
                                  rows[:, None] * sq_m, rows[:, None] * sqc_m, dims, inside, HALF, SAME_HALVES)
            q_dst = Q_OUT + b * so_b + h * so_h + rows[:, None] * so_m + dims  # [ROWS, BLOCK_H] pointers
            tl.store(q_dst, o1.to(Q_OUT.dtype.element_ty, fp_downcast_rounding="rtne"), mask=inside)
            tl.store(q_dst + HALF, o2.to(Q_OUT.dtype.element_ty, fp_downcast_rounding="rtne"), mask=inside)
        else:
            hk = h - n_heads
            inside = (rows < n)[:, None] & (dims < HALF)  # [ROWS, BLOCK_H]
            position = tl.load(INDEX + rows, mask=rows < n, other=0)  # [ROWS]
            o1, o2 = _rotate_half(K + b * sk_b + hk * sk_h, COS + b * sc_b, SIN + b * sc_b,
                                  rows[:, None] * sk_n, rows[:, None] * sc_n, dims, inside, HALF, SAME_HALVES)
            slot = b * ss_b + hk * ss_h + position[:, None] * ss_l + dims  # [ROWS, BLOCK_H] offsets in the store
            tl.store(STORE_K + slot, o1.to(STORE_K.dtype.element_ty, fp_downcast_rounding="rtne"), mask=inside)
            tl.store(STORE_K + slot + HALF, o2.to(STORE_K.dtype.element_ty, fp_downcast_rounding="rtne"), mask=inside)
            src = V + b * sv_b + hk * sv_h + rows[:, None] * sv_n + dims
            tl.store(STORE_V + slot, tl.load(src, mask=inside), mask=inside)
            tl.store(STORE_V + slot + HALF, tl.load(src + HALF, mask=inside), mask=inside)


def use_rope_kv_write(store_keys: torch.Tensor, like: torch.Tensor) -> bool:
    """Whether ``rope_kv_write`` applies to keys of ``like``'s dtype and device: Triton present, CUDA, the
    store's dtype, unit stride over the head dim in the store."""
    return triton is not None and like.is_cuda and store_keys.dtype == like.dtype and store_keys.stride(-1) == 1


def rope_kv_write(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  q_cos: torch.Tensor, q_sin: torch.Tensor, store_keys: torch.Tensor, store_values: torch.Tensor,
                  index: torch.Tensor, same_halves: bool = False, rows_per_program: int = ROWS,
                  num_warps: int = 4) -> torch.Tensor:
    """``apply_rope(keys, cos, sin)`` and ``values`` written at store positions ``index``, and
    ``apply_rope(q, q_cos, q_sin)`` returned, in one launch.

    q ``[B, H, m, D]``, keys and values ``[B, H_kv, n, D]`` (any strides with unit stride over D: views of the
    projection's output); cos/sin ``[B, 1, n, D]`` and q_cos/q_sin ``[B, 1, m, D]`` fp32 tables (unit stride
    over D); store_keys/store_values ``[B, H_kv, L, D]`` sharing strides; index ``[n]`` int64 of distinct
    positions in ``[0, L)`` (as ``index_copy_``). Returns the rotated queries ``[B, H, m, D]`` (contiguous).
    ``same_halves``: the tables' two halves are equal (as ``rope_tables`` makes them: not checked), so only the
    first is read. ``rows_per_program`` (a power of two) and ``num_warps`` shape the programs
    (``experiments/rope_write_sweep.py``).
    """
    B, H, m, D = q.shape
    _, H_kv, n, _ = keys.shape
    if (values.shape != keys.shape or keys.shape[0] != B or keys.shape[-1] != D or D % 2
            or store_keys.shape[:2] != (B, H_kv) or store_keys.shape[-1] != D or store_values.shape != store_keys.shape
            or index.shape != (n,) or cos.shape != (B, 1, n, D) or sin.shape != cos.shape
            or q_cos.shape != (B, 1, m, D) or q_sin.shape != q_cos.shape):
        raise ValueError(f"rope_kv_write: q {tuple(q.shape)}, keys {tuple(keys.shape)}, values {tuple(values.shape)}, "
                         f"cos {tuple(cos.shape)}, q_cos {tuple(q_cos.shape)}, store {tuple(store_keys.shape)}, index "
                         f"{tuple(index.shape)}: want q [B, H, m, D], keys = values [B, H_kv, n, D] with D even, cos = "
                         "sin [B, 1, n, D], q_cos = q_sin [B, 1, m, D], store [B, H_kv, L, D], index [n]")
    if store_values.stride() != store_keys.stride():
        raise ValueError("rope_kv_write: the key and value stores must share their strides")
    tables = (cos, sin, q_cos, q_sin)
    if any(t.dtype != torch.float32 for t in tables) or cos.stride() != sin.stride() or q_cos.stride() != q_sin.stride():
        raise ValueError("rope_kv_write: cos/sin tables must be float32, each pair with one layout")
    q, keys, values, cos, sin, q_cos, q_sin = (t if t.stride(-1) == 1 else t.contiguous()
                                               for t in (q, keys, values, cos, sin, q_cos, q_sin))
    q_out = torch.empty(B, H, m, D, dtype=q.dtype, device=q.device)  # [B, H, m, D]
    if max(m, n) == 0:
        return q_out
    half = D // 2
    _rope_kv_write_kernel[(triton.cdiv(max(m, n), rows_per_program), B * (H + H_kv))](
        q, keys, values, cos, sin, q_cos, q_sin, index, store_keys, store_values, q_out,
        q.stride(0), q.stride(1), q.stride(2), keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2), cos.stride(0), cos.stride(2),
        q_cos.stride(0), q_cos.stride(2), store_keys.stride(0), store_keys.stride(1), store_keys.stride(2),
        q_out.stride(0), q_out.stride(1), q_out.stride(2), m, n, H, H_kv,
        HALF=half, BLOCK_H=triton.next_power_of_2(half), ROWS=rows_per_program, SAME_HALVES=same_halves,
        num_warps=num_warps, enable_fp_fusion=False)  # round x₁·c₁ and x₂·s₁ each, as PyTorch's RoPE does: bit-equal to it
    return q_out
