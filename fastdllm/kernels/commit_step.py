"""The decoder's commit of one step in one launch (a Triton kernel, CUDA): ``fastdllm.core.commit.commit_step``.

Between two forwards a step runs the unmask policy, then the decoder's commit: the progress rule (the most
confident masked position of a row that chose none), the step bound's flush, the canvas write and the per-row
tallies. In PyTorch ops the commit alone is ~27 kernels of a few µs each; at batch 1 the GPU idles between
forwards for ~120 µs of such kernels (``experiments/decode_timeline.py --trace-blocks``). Here one program walks
the batch in tiles of rows, each a ``[rows, block]`` tile in registers, and writes the same integers as the
PyTorch ops: ``torch.argmax``'s choice (a NaN first, else the first maximum) for the progress rule, the counts
summed in the program (no atomics, so the result does not depend on scheduling).
"""

from __future__ import annotations

import torch

from fastdllm.kernels import tl, triton

TILE = 1024  # positions per row tile (rows × the block's power-of-two width)

if triton is not None:

    @triton.jit
    def _commit_kernel(CHOSEN, MASKED, PMASKED, CONF, TOKENS, CANVAS, NFE, REFRESHES, STAMPS, FORCED, FLUSHES, COMMIT,
                       B, n, start, gen_start, s_chosen, s_masked, s_pmasked, s_conf, s_tokens, s_canvas, s_stamps,
                       REFRESH: tl.constexpr, LAST: tl.constexpr, COPIES: tl.constexpr, ROWS: tl.constexpr,
                       BLOCK: tl.constexpr):
        """One program: every row tile of the batch in turn (a decode's batch is small; the tile sums stay exact)."""
        cols = tl.arange(0, BLOCK)[None, :]  # [1, BLOCK]
        forced = tl.zeros([ROWS], tl.int64)
        flushed = tl.zeros([ROWS], tl.int64)
        forced_before = tl.load(FORCED)  # read by every thread before the barrier that precedes the write
        flushed_before = tl.load(FLUSHES)
        for first in range(0, B, ROWS):
            row = first + tl.arange(0, ROWS)  # [ROWS]
            row_ok = row < B
            rows = row[:, None]  # [ROWS, 1]
            inside = (rows < B) & (cols < n)  # [ROWS, BLOCK]
            masked = (tl.load(MASKED + rows * s_masked + cols, mask=inside, other=0) != 0) & inside
            pmasked = (tl.load(PMASKED + rows * s_pmasked + cols, mask=inside, other=0) != 0) & inside
            chosen = (tl.load(CHOSEN + rows * s_chosen + cols, mask=inside, other=0) != 0) & masked
            conf = tl.load(CONF + rows * s_conf + cols, mask=inside, other=0.0).to(tl.float32)
            # the progress rule (fastdllm.core.policy.at_least_one): argmax of the masked confidence
            scored = tl.where(pmasked, conf, -float("inf"))
            nan = (scored != scored) & inside
            first_nan = tl.min(tl.where(nan, cols, BLOCK), 1)  # [ROWS]; BLOCK when none (torch.argmax: NaN wins)
            clean = tl.where(nan | (cols >= n), -float("inf"), scored)
            top = tl.max(clean, 1)  # [ROWS]
            first_top = tl.min(tl.where((clean == top[:, None]) & (cols < n), cols, BLOCK), 1)  # first maximum
            best = tl.where(first_nan < BLOCK, first_nan, first_top)
            pick = (cols == best[:, None]) & pmasked
            commit = chosen & pmasked
            stalled = tl.sum(commit.to(tl.int32), 1) == 0  # [ROWS]
            commit = commit | (pick & stalled[:, None])
            any_commit = tl.sum(commit.to(tl.int32), 1) > 0
            any_chosen = tl.sum(chosen.to(tl.int32), 1) > 0
            forced += (any_commit & ~any_chosen & row_ok).to(tl.int64)
            if LAST:  # the bound: every remaining mask
                flushed += ((tl.sum((masked & ~commit).to(tl.int32), 1) > 0) & row_ok).to(tl.int64)
                commit = masked
            tokens = tl.load(TOKENS + rows * s_tokens + cols, mask=inside, other=0)
            for copy in tl.static_range(COPIES):  # the conditional rows, then the unconditional copies
                where = CANVAS + (rows + copy * B) * s_canvas + start + cols
                old = tl.load(where, mask=inside, other=0)
                tl.store(where, tl.where(commit, tokens, old), mask=inside)
            active = (tl.sum(masked.to(tl.int32), 1) > 0).to(tl.int64)  # [ROWS]
            nfe = tl.load(NFE + row, mask=row_ok, other=0) + active
            refreshes = tl.load(REFRESHES + row, mask=row_ok, other=0) + active
            stamps = STAMPS + rows * s_stamps + gen_start + cols
            tl.store(stamps, tl.where(commit, nfe[:, None], tl.load(stamps, mask=inside, other=0)), mask=inside)
            tl.store(COMMIT + rows * n + cols, commit.to(tl.int8), mask=inside)
            # The counters are read-modify-written: the compiler may read them once per layout (here the row
            # vector and its [ROWS, 1] broadcast, in different threads), so no thread may write one before every
            # thread has read it. (The canvas and stamp writes are idempotent: rewriting them from a value
            # another thread already wrote gives the same value.)
            tl.debug_barrier()
            tl.store(NFE + row, nfe, mask=row_ok)
            if REFRESH:
                tl.store(REFRESHES + row, refreshes, mask=row_ok)
        tl.debug_barrier()
        tl.store(FORCED, forced_before + tl.sum(forced, 0))
        if LAST:
            tl.store(FLUSHES, flushed_before + tl.sum(flushed, 0))


def fused_commit_step(chosen: torch.Tensor, proposal, masked: torch.Tensor, canvas: torch.Tensor, start: int,
                      gen_start: int, tallies, refresh: bool, last: bool) -> torch.Tensor:
    """``fastdllm.core.commit.commit_step`` in one launch (same arguments, same result and side effects), for the
    inputs ``fastdllm.core.commit._fused`` accepts (``commit_step`` checks them once per step: unit stride over the
    block, the dtypes the kernel reads, counters on the canvas's device)."""
    if triton is None:
        raise RuntimeError("fused_commit_step needs Triton; fastdllm.core.commit.commit_step runs the PyTorch ops")
    batch, n = masked.shape
    copies = canvas.shape[0] // batch
    block = triton.next_power_of_2(max(n, 1))
    rows = max(1, min(triton.next_power_of_2(batch), TILE // block))
    commit = torch.empty((batch, n), dtype=torch.bool, device=canvas.device)  # [B, block]
    as_bytes = lambda t: t.view(torch.uint8)  # noqa: E731 - bool tensors read as bytes
    chosen_b, masked_b, pmasked_b = as_bytes(chosen), as_bytes(masked), as_bytes(proposal.masked)
    _commit_kernel[(1,)](
        chosen_b, masked_b, pmasked_b, proposal.confidence, proposal.tokens, canvas, tallies.nfe_per_row,
        tallies.refresh_per_row, tallies.commit_forward, tallies.forced, tallies.flushes, as_bytes(commit),
        batch, n, start, gen_start, chosen_b.stride(0), masked_b.stride(0), pmasked_b.stride(0),
        proposal.confidence.stride(0), proposal.tokens.stride(0), canvas.stride(0), tallies.commit_forward.stride(0),
        REFRESH=bool(refresh), LAST=bool(last), COPIES=copies, ROWS=rows, BLOCK=block, num_warps=4)
    return commit
