"""The KV store: keys and values of every canvas position, per layer, allocated once per canvas shape
(``DiffusionDecoder`` keeps it across calls of the same shape)."""

from __future__ import annotations

import torch

from fastdllm.kernels.kv_write import kv_write, use_kv_write
from fastdllm.kernels.rope_kv_write import rope_kv_write, use_rope_kv_write


class KVStore:
    """Static buffers ``[n_layers, B, H_kv, L, D]``; keys are stored after RoPE (positions never move).

    ``update`` is the one place the buffers are written (as transformers' ``Cache.update``;
    ``update_rotating`` is the same write for keys that arrive before RoPE, fused with their rotation). With
    ``track_drift()`` it also measures, per layer and row, how far the written keys/values moved from
    what the store held (``key_drift``/``value_drift`` ``[n_layers, B]``, device tensors written in
    place: no host sync, and CUDA graphs capture the measurement with the forward).
    """

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        shape = (n_layers, batch, n_kv_heads, length, head_dim)
        # uninitialised: every decode starts with a refresh that writes all of it (the decoder checks)
        self.keys = torch.empty(shape, dtype=dtype, device=device)  # [n_layers, B, H_kv, L, D]
        self.values = torch.empty(shape, dtype=dtype, device=device)  # [n_layers, B, H_kv, L, D]
        self.key_drift: torch.Tensor | None = None  # [n_layers, B] float32 after track_drift()
        self.value_drift: torch.Tensor | None = None  # [n_layers, B] float32 after track_drift()

    def track_drift(self, enabled: bool = True) -> "KVStore":
        """Measure the drift of every later ``update`` (costs a read of the overwritten rows)."""
        if enabled and self.key_drift is None:
            n_layers, batch = self.keys.shape[:2]
            self.key_drift = torch.zeros((n_layers, batch), dtype=torch.float32, device=self.keys.device)
            self.value_drift = torch.zeros((n_layers, batch), dtype=torch.float32, device=self.keys.device)
        elif not enabled:
            self.key_drift = self.value_drift = None
        return self

    def update(self, layer: int, start: int, index: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``keys``/``values`` ``[B, H_kv, n, D]`` at canvas positions ``index`` (``[n]``; ``start`` is the
        first position of the plan's range); return the layer's full ``[B, H_kv, L, D]`` keys and values
        (fresh where written, stale elsewhere)."""
        if self.key_drift is not None:
            _relative_change(self.keys[layer].index_select(2, index), keys, out=self.key_drift[layer])
            _relative_change(self.values[layer].index_select(2, index), values, out=self.value_drift[layer])
        store_keys, store_values = self.keys[layer], self.values[layer]  # [B, H_kv, L, D] views
        if keys.is_cuda and use_kv_write(store_keys, keys):
            kv_write(store_keys, store_values, index, keys, values)  # one launch for both (exact copy)
        else:
            store_keys.index_copy_(2, index, keys)
            store_values.index_copy_(2, index, values)
        return store_keys, store_values

    def rotates(self, like: torch.Tensor) -> bool:
        """Whether ``update_rotating`` takes keys of ``like``'s dtype and device (asked before they exist): CUDA
        with Triton, the store's dtype, and no drift tracking (drift compares rotated keys)."""
        return self.key_drift is None and use_rope_kv_write(self.keys, like)

    def update_rotating(self, layer: int, start: int, index: torch.Tensor, q: torch.Tensor, keys: torch.Tensor,
                        values: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_cos: torch.Tensor,
                        q_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``update`` for queries ``[B, H, m, D]`` and keys ``[B, H_kv, n, D]`` given before RoPE (cos/sin
        ``[B, 1, n, D]``, q_cos/q_sin ``[B, 1, m, D]``, fp32): the keys are rotated as they are written, in
        one launch with the queries' rotation (``fastdllm.kernels.rope_kv_write``, equal to the eager RoPE
        and ``update`` bit for bit). The tables' two halves must be equal, as the half-split RoPE's are
        (``rope_tables``). Returns the rotated queries and the layer's keys and values. Only where
        ``rotates(keys)``."""
        store_keys, store_values = self.keys[layer], self.values[layer]  # [B, H_kv, L, D] views
        if not self.rotates(keys):
            raise RuntimeError("KVStore.update_rotating needs CUDA, Triton, keys of the store's dtype and no drift "
                               "tracking (check rotates() first); use update with rotated keys")
        # the half-split rotation's tables repeat their first half (``rope_tables``): the kernel reads one
        q = rope_kv_write(q, keys, values, cos, sin, q_cos, q_sin, store_keys, store_values, index, same_halves=True)
        return q, store_keys, store_values


def _relative_change(old: torch.Tensor, new: torch.Tensor, out: torch.Tensor) -> None:
    """``||new - old|| / ||old||`` per row over ``[H_kv, n, D]``, written into ``out`` ``[B]`` (fp32)."""
    old, new = old.float().flatten(1), new.float().flatten(1)  # [B, H_kv * n * D]
    torch.div((new - old).norm(dim=-1), old.norm(dim=-1).clamp_min(1e-12), out=out)


class NoStore:
    """No cache: every forward covers the whole canvas and attends to its own fresh keys/values."""

    key_drift = value_drift = None

    def rotates(self, like: torch.Tensor) -> bool:
        """Never: nothing is written, so there is no write to fuse the rotation into."""
        return False

    def update(self, layer: int, start: int, index: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if start != 0:
            raise RuntimeError("NoStore needs a full-canvas forward (start=0); this cache plan reuses a store")
        return keys, values
