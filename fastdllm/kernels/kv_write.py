"""Write a forward's keys and values into the KV store with one kernel launch (instead of two ``index_copy_``).

A cached step writes the block's 32 positions per layer; two ``index_copy_`` launches of ~5 µs each for
32 KB of data make 0.3 ms of a 7 ms LLaDA-8B forward. The copy is exact, so tokens do not change.
"""

from __future__ import annotations

import torch

from fastdllm.kernels import tl, triton

ROWS = 16  # positions per program: one position per program made 8192 programs of 256 bytes each for a
# 256-position LLaDA-8B window, 6.5 µs per layer where the bytes need 1.5 (round5_dev/prefix_llada.json)


if triton is not None:

    @triton.jit
    def _kv_write_kernel(STORE_K, STORE_V, K, V, INDEX, ss_b, ss_h, ss_l, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n,
                         n, n_kv_heads, D: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr):
        """Program (row tile, batch·head): rows [tile·ROWS, (tile+1)·ROWS) of k and v go to store positions
        INDEX[row] of that batch row and head."""
        tile, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // n_kv_heads, bh % n_kv_heads
        rows = tile * ROWS + tl.arange(0, ROWS)  # [ROWS]
        dims = tl.arange(0, BLOCK_D)  # [BLOCK_D]
        inside = (rows < n)[:, None] & (dims < D)[None, :]  # [ROWS, BLOCK_D]
        position = tl.load(INDEX + rows, mask=rows < n, other=0)  # [ROWS]
        dst = b * ss_b + h * ss_h + position[:, None] * ss_l + dims[None, :]
        k = tl.load(K + b * sk_b + h * sk_h + rows[:, None] * sk_n + dims[None, :], mask=inside)
        v = tl.load(V + b * sv_b + h * sv_h + rows[:, None] * sv_n + dims[None, :], mask=inside)
        tl.store(STORE_K + dst, k, mask=inside)
        tl.store(STORE_V + dst, v, mask=inside)


def use_kv_write(store_keys: torch.Tensor, keys: torch.Tensor) -> bool:
    """Whether ``kv_write`` applies: Triton present, the same dtype, unit stride over the head dim."""
    return (triton is not None and store_keys.dtype == keys.dtype and store_keys.stride(-1) == 1
            and keys.stride(-1) == 1)


def kv_write(store_keys: torch.Tensor, store_values: torch.Tensor, index: torch.Tensor, keys: torch.Tensor,
             values: torch.Tensor) -> None:
    """``store_keys.index_copy_(2, index, keys)`` and the same for values, in one launch.

    store_keys, store_values ``[B, H_kv, L, D]``; keys, values ``[B, H_kv, n, D]`` (any strides with unit stride
    over D); index ``[n]`` int64 of distinct positions in ``[0, L)`` (as ``index_copy_``, not checked here:
    the cache plans are checked where they are made).
    """
    B, H, n, D = keys.shape
    if values.shape != keys.shape or store_values.shape != store_keys.shape or store_keys.shape[:2] != (B, H) \
            or store_keys.shape[-1] != D or index.shape != (n,):
        raise ValueError(f"kv_write: store {tuple(store_keys.shape)}, keys {tuple(keys.shape)}, values "
                         f"{tuple(values.shape)}, index {tuple(index.shape)}: want store [B, H_kv, L, D], keys = "
                         "values [B, H_kv, n, D], index [n]")
    if n == 0:
        return
    if store_values.stride() != store_keys.stride():
        raise ValueError("kv_write: the key and value stores must share their strides")
    _kv_write_kernel[(triton.cdiv(n, ROWS), B * H)](store_keys, store_values, keys, values, index,
                                 store_keys.stride(0), store_keys.stride(1), store_keys.stride(2),
                                 keys.stride(0), keys.stride(1), keys.stride(2),
                                 values.stride(0), values.stride(1), values.stride(2),
                                 n, H, D=D, BLOCK_D=triton.next_power_of_2(D), ROWS=ROWS)
