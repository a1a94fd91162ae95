"""The decoder's commit of one step: the progress rule, the step bound, the canvas write and the per-row tallies.

After the unmask policy has chosen, every step of ``DiffusionDecoder.generate`` (Fast-dLLM Algorithm 1) must
- keep only still-masked positions and, in a row that chose none, commit its most confident masked position
  (``at_least_one``: the progress rule that bounds every block; counted in ``forced``);
- at the last step the bound allows, commit every remaining mask (counted in ``flushes``);
- write the committed candidates into the canvas (into the unconditional copies too, under guidance);
- count the forward in each active row (``nfe_per_row``, ``refresh_per_row``) and stamp each committed
  position with that count (``commit_forward``).

In PyTorch ops that is about 27 small kernels per step; on CUDA with Triton it is one launch of
``fastdllm.kernels.commit_step`` with the same integers (tested against this module's PyTorch ops, which run
everywhere else).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdllm.core.policy import at_least_one
from fastdllm.core.proposal import Proposal


@dataclass(frozen=True)
class Tallies:
    """A decode's per-row counters, device tensors updated in place by every commit."""

    nfe_per_row: torch.Tensor  # [B] long: forwards while the row still had masks
    refresh_per_row: torch.Tensor  # [B] long: of those, refreshes
    commit_forward: torch.Tensor  # [B, G] long: the row's forward count when each generated position was committed
    forced: torch.Tensor  # [] long: rows whose commit came from the progress rule alone
    flushes: torch.Tensor  # [] long: rows whose remaining masks the step bound committed

    @staticmethod
    def zeros(batch: int, gen_length: int, device: torch.device) -> "Tallies":
        long = {"dtype": torch.long, "device": device}
        return Tallies(torch.zeros(batch, **long), torch.zeros(batch, **long), torch.zeros((batch, gen_length), **long),
                       torch.zeros((), **long), torch.zeros((), **long))


def commit_step(chosen: torch.Tensor, proposal: Proposal, masked: torch.Tensor, canvas: torch.Tensor, start: int,
                gen_start: int, tallies: Tallies, refresh: bool, last: bool) -> torch.Tensor:
    """Commit one step; returns what it committed, ``[B, block]`` bool.

    ``chosen`` ``[B, block]`` bool: the policy's selection (already checked); ``masked`` ``[B, block]``: the
    block's masks before this step; ``canvas`` ``[copies · B, L]`` (copies 2 under classifier-free guidance, the
    unconditional rows last); the block starts at canvas column ``start`` and generated column ``gen_start``;
    ``refresh``: the forward rewrote the whole store; ``last``: the step bound's last allowed forward."""
    if _fused(chosen, proposal, masked, canvas, tallies):
        from fastdllm.kernels.commit_step import fused_commit_step

        return fused_commit_step(chosen, proposal, masked, canvas, start, gen_start, tallies, refresh, last)
    batch, block = masked.shape
    chosen = chosen & masked
    commit = at_least_one(chosen, proposal)  # progress, enforced here only
    tallies.forced.add_((commit.any(-1) & ~chosen.any(-1)).sum())
    if last:  # the bound: the last allowed forward commits every mask
        tallies.flushes.add_((masked & ~commit).any(-1).sum())
        commit = masked
    copies = canvas.shape[0] // batch
    write, tokens = (commit.repeat(copies, 1), proposal.tokens.repeat(copies, 1)) if copies > 1 else (commit, proposal.tokens)
    window = canvas[:, start:start + block]  # [copies · B, block] view
    window.copy_(torch.where(write, tokens, window))  # the one canvas write
    active = masked.any(-1)  # [B]
    tallies.nfe_per_row.add_(active)
    if refresh:
        tallies.refresh_per_row.add_(active)
    stamps = tallies.commit_forward[:, gen_start:gen_start + block]  # [B, block] view
    stamps.copy_(torch.where(commit, tallies.nfe_per_row[:, None], stamps))
    return commit


def _fused(chosen, proposal: Proposal, masked, canvas, tallies: Tallies) -> bool:
    """Whether the one-launch kernel serves this step: a CUDA canvas, Triton, the dtypes it reads exactly
    (float32/16 confidence, int64 tokens and counters, bool masks) and unit stride over the block (a policy's
    strided or expanded tensors take the PyTorch ops)."""
    if not canvas.is_cuda:  # the CPU (and CI) never imports the kernels
        return False
    from fastdllm.kernels import triton

    batch = masked.shape[0]
    counters = (tallies.nfe_per_row, tallies.refresh_per_row, tallies.commit_forward, tallies.forced, tallies.flushes)
    return (triton is not None and proposal.confidence.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and canvas.shape[0] in (batch, 2 * batch) and all(t.dtype == torch.long and t.is_contiguous()
                                                             and t.device == canvas.device for t in counters)
            and proposal.tokens.dtype == canvas.dtype == torch.long
            and chosen.dtype == masked.dtype == proposal.masked.dtype == torch.bool
            and proposal.masked.shape == masked.shape == chosen.shape == proposal.confidence.shape == proposal.tokens.shape
            and all(t.is_cuda and t.stride(-1) == 1 for t in (chosen, masked, proposal.masked, proposal.confidence,
                                                              proposal.tokens, canvas, tallies.commit_forward)))
