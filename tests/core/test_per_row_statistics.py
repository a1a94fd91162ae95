"""Per-row statistics when the rows of a batch finish a block at different steps.

A scripted model makes row 0 commit its whole block at the first step, row 1 one token per step and
row 2 two per step (threshold 0.9); the cache refreshes every 3 steps. A row counts a forward (and a
refresh) only while it still had masks in the block: the recount from the callbacks, and the counts
the script implies, must both equal ``nfe_per_row``, ``refresh_per_row`` and ``commit_forward``.
"""

from __future__ import annotations

import math

import pytest
import torch

import fastdllm
from fastdllm.core.kv_store import NoStore

V = 4  # real tokens 0..3; 4 = mask, 5 = pad/end
MASK, PAD = V, V + 1
PROMPT = [[1, 2], [2, 3], [3, 1]]
GEN, BLOCK, INTERVAL = 16, 8, 3
CONFIDENT_PER_STEP = [BLOCK, 1, 2]  # row b: its k leftmost masked positions get confidence 0.95, the rest 0.3


class ScriptedRows:
    """Decoder-contract model: for each row, the ``CONFIDENT_PER_STEP[row]`` leftmost masked positions of the
    current block (the leftmost block that still holds masks) predict token 3 with probability 0.95, every
    other position with probability 0.3. Ignores the store; any ``forward_step`` signature with the canvas
    first works."""

    logit_shift = 0
    max_sequence_length = 64
    device = torch.device("cpu")
    mask_token_id, pad_token_id, end_token_ids = MASK, PAD, (PAD,)

    def new_kv_store(self, batch, length):
        return NoStore()

    def forward_step(self, canvas, *args, **kwargs):
        P = len(PROMPT[0])
        gen = canvas[:, P:].view(canvas.shape[0], GEN // BLOCK, BLOCK)  # [B, blocks, block]
        block = int((gen == MASK).any(-1).any(0).long().argmax())  # the leftmost block with a mask
        masked = gen[:, block] == MASK  # [B, block]
        rank = masked.long().cumsum(-1)  # 1 for the leftmost masked position, ...
        confident = masked & (rank <= torch.tensor(CONFIDENT_PER_STEP)[:, None])  # [B, block]
        conf = torch.where(confident, 0.95, 0.3)  # [B, block]
        logits = torch.full((canvas.shape[0], BLOCK, V + 2), -1e4)  # [B, block, V + 2]
        logits[..., 3] = conf.log()
        logits[..., :3] = ((1 - conf) / 3).log()[..., None]
        return logits


class Recount:
    """Per row: forwards and refresh forwards while the row had masks, and the forward committing each position."""

    def __init__(self) -> None:
        B = len(PROMPT)
        self.nfe, self.refresh = [0] * B, [0] * B
        self.commit_forward = [[0] * GEN for _ in range(B)]
        self.idle_refreshes = 0  # refreshes during which some row had no masks left (the case under test)

    def __call__(self, event) -> None:
        start = event.step.block_start - len(PROMPT[0])
        active = event.proposal.masked.any(-1).tolist()
        if event.plan.refresh and not all(active):
            self.idle_refreshes += 1
        for row, is_active in enumerate(active):
            self.nfe[row] += is_active
            self.refresh[row] += is_active and bool(event.plan.refresh)
            for j in event.commit[row].nonzero().flatten().tolist():
                self.commit_forward[row][start + j] = self.nfe[row]


@pytest.mark.parametrize("reuse", ["dual", "prefix"])
def test_rows_finishing_at_different_steps(reuse):
    recount = Recount()
    result = fastdllm.generate(ScriptedRows(), PROMPT, gen_length=GEN, block_length=BLOCK,
                               cache={"name": "refresh-interval", "interval": INTERVAL, "reuse": reuse},
                               unmask={"name": "threshold", "threshold": 0.9}, callbacks=[recount])
    assert recount.idle_refreshes > 0  # some refresh happened while a row was already done: the case is exercised
    steps = [math.ceil(BLOCK / k) for k in CONFIDENT_PER_STEP]  # forwards per block for each row: 1, 8, 4
    refreshes = [len(range(0, s, INTERVAL)) for s in steps]  # refreshes among them: steps 0, 3, 6
    blocks = GEN // BLOCK
    assert result.nfe_per_row.tolist() == recount.nfe == [blocks * s for s in steps]
    assert result.refresh_per_row.tolist() == recount.refresh == [blocks * r for r in refreshes]
    assert result.cached_per_row.tolist() == [blocks * (s - r) for s, r in zip(steps, refreshes)]
    assert result.nfe == blocks * max(steps) and result.refresh_forwards == blocks * refreshes[1]
    assert result.commit_forward.tolist() == recount.commit_forward
    assert (result.generated == 3).all() and result.bound_flushes == 0 and result.forced_commits == 0
    expected_tpf = [GEN / (blocks * s) for s in steps]
    torch.testing.assert_close(result.tokens_per_forward, torch.tensor(expected_tpf))


class CommitsNothing(fastdllm.UnmaskPolicy):
    """A policy that breaks progress: it never selects anything."""

    def select(self, proposal, step):
        return torch.zeros_like(proposal.masked)  # [B, block] bool


def test_forced_commit_is_counted_per_stalled_row():
    """The decoder forces one commit (the most confident position) in every active row at every step."""
    result = fastdllm.generate(ScriptedRows(), PROMPT, gen_length=GEN, block_length=BLOCK, cache="none",
                               unmask=CommitsNothing())
    assert result.nfe_per_row.tolist() == [GEN] * len(PROMPT)
    assert result.forced_commits == len(PROMPT) * GEN
    assert result.bound_flushes == 0 and (result.generated == 3).all()


def test_bound_flush_is_counted_per_row():
    """max_steps_per_block 2 with one token per step: rows 1 and 2 still have masks at the bound and are
    flushed (row 0 finished at its first step), in each of the two blocks."""
    result = fastdllm.generate(ScriptedRows(), PROMPT, gen_length=GEN, block_length=BLOCK, cache="none",
                               unmask={"name": "threshold", "threshold": 0.9}, max_steps_per_block=2)
    assert result.bound_flushes == 2 * 2
    assert result.nfe_per_row.tolist() == [2, 4, 4]
    assert (result.generated == 3).all()
