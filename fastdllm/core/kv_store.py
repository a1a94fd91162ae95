"""The KV store: keys and values of every canvas position, per layer, allocated once per canvas shape
(``DiffusionDecoder`` keeps it across calls of the same shape)."""

from __future__ import annotations

import torch


class KVStore:
    """Static buffers ``[n_layers, B, H_kv, L, D]``; keys are stored after RoPE (positions never move).

    ``update`` is the one place the buffers are written (as transformers' ``Cache.update``).
    """

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        shape = (n_layers, batch, n_kv_heads, length, head_dim)
        # uninitialised: every decode starts with a refresh that writes all of it (the decoder checks)
        self.keys = torch.empty(shape, dtype=dtype, device=device)  # [n_layers, B, H_kv, L, D]
        self.values = torch.empty(shape, dtype=dtype, device=device)  # [n_layers, B, H_kv, L, D]

    def update(self, layer: int, start: int, index: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``keys``/``values`` ``[B, H_kv, n, D]`` at positions ``index`` (``[n]``, = ``start + arange(n)``);
        return the layer's full ``[B, H_kv, L, D]`` keys and values (fresh where written, stale elsewhere)."""
        self.keys[layer].index_copy_(2, index, keys)
        self.values[layer].index_copy_(2, index, values)
        return self.keys[layer], self.values[layer]


class NoStore:
    """No cache: every forward covers the whole canvas and attends to its own fresh keys/values."""

    def update(self, layer: int, start: int, index: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if start != 0:
            raise RuntimeError("NoStore needs a full-canvas forward (start=0); this cache plan reuses a store")
        return keys, values
