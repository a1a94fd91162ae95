"""Fused projection weights: one storage per group (q/k/v, gate/up), the checkpoint's parameters as row views
into it, so the weights stay in memory once and ``state_dict`` keeps the checkpoint's names."""

from __future__ import annotations

import torch
from torch import nn


def _views_of(fused: torch.Tensor | None, parts: list[torch.Tensor]) -> bool:
    """Whether ``parts`` are, in order, the consecutive row blocks of ``fused`` (nothing to re-fuse)."""
    if fused is None or fused.device.type == "meta":
        return False
    offset = 0
    for p in parts:
        if (p.device != fused.device or p.dtype != fused.dtype or p.shape[1:] != fused.shape[1:]
                or p.stride() != fused.stride()
                or p.data_ptr() != fused.data_ptr() + offset * fused.stride(0) * fused.element_size()):
            return False
        offset += p.shape[0]
    return offset == fused.shape[0]


def _point_into(fused: torch.Tensor, parts: list[torch.Tensor]) -> None:
    """Make each parameter of ``parts`` the view of its rows of ``fused`` (the old storage is freed)."""
    offset = 0
    with torch.no_grad():
        for p in parts:
            p.data = fused[offset:offset + p.shape[0]]
            offset += p.shape[0]


class FusedProjections(nn.Module):
    """A module whose projections can share one fused weight (a non-persistent buffer per group).

    Fused, the checkpoint's parameters (``q_proj.weight``, ...) are row views into the fused tensor: the
    weights are in memory once, ``state_dict``/``load_state_dict`` keep the checkpoint names, and an in-place
    update of a parameter (``copy_``, the loader) is an update of the fused weight. The forward reads the
    fused tensor, so gradients do not reach the parameters: train an unfused model (``fuse(False)``).
    Replacing a parameter object after fusing leaves the fused copy stale until ``fuse()`` runs again
    (it re-fuses every group whose parameters are no longer its views).
    """

    def fused_groups(self) -> dict[str, list[torch.Tensor]]:
        """Buffer name → the parameters it concatenates (row order), e.g. ``{"qkv_weight": [q, k, v]}``."""
        raise NotImplementedError

    def fuse(self, enabled: bool = True) -> bool:
        """Fuse (or unfuse) every group; idempotent. Returns whether anything changed."""
        changed = False
        for name, parts in self.fused_groups().items():
            fused = getattr(self, name)
            if enabled and not _views_of(fused, parts):
                with torch.no_grad():
                    fused = torch.cat([p.detach() for p in parts])  # [sum of rows, ...]
                setattr(self, name, fused)
                _point_into(fused, parts)
                changed = True
            elif not enabled and fused is not None:
                with torch.no_grad():
                    for p in parts:
                        p.data = p.detach().clone()  # its own storage again
                setattr(self, name, None)
                changed = True
        return changed

    def _apply(self, fn, recurse=True):
        """``to``/``half``/``cuda``/``to_empty``: convert, then point the parameters back into the converted
        fused tensors (the separately converted copies are freed), so the weights stay in memory once."""
        super()._apply(fn, recurse)
        for name, parts in self.fused_groups().items():
            fused = getattr(self, name)
            if fused is not None and not _views_of(fused, parts):
                _point_into(fused, parts)
        return self
