"""``stop_at_eos``: stop after the block in which every row has an end token; the answer is unchanged."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import EOS_ID, mask_free_llada, random_prompts

pytestmark = pytest.mark.usefixtures("single_thread")

GEN, BLOCK = 16, 4
PROMPTS = random_prompts(2, [6, 3], seed=8)


class EndsAt:
    """Wraps a model so its logits strongly favour EOS at generated positions >= ``after`` in ``rows`` (all
    rows by default); with ``others_never_end`` the other rows never predict an end token."""

    def __init__(self, model, after: int, rows=None, others_never_end: bool = False) -> None:
        self.model, self.after, self.rows, self.others_never_end = model, after, rows, others_never_end

    def __getattr__(self, name):
        return getattr(self.model, name)

    def forward_step(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        logits = self.model.forward_step(canvas, start, end, store, position_ids, key_mask, logits_start,
                                         logits_end).clone()
        first_gen = canvas.shape[1] - GEN
        gen_index = torch.arange(logits_start, logits_end) - first_gen  # [block]
        rows = torch.zeros(canvas.shape[0], dtype=torch.bool)
        rows[self.rows if self.rows is not None else slice(None)] = True
        boost = rows[:, None] & (gen_index >= self.after)[None, :]  # [B, block]
        logits[..., EOS_ID] += 50.0 * boost
        if self.others_never_end:
            for end_id in self.model.end_token_ids:
                logits[~rows, :, end_id] = float("-inf")
        return logits


@pytest.mark.parametrize("cache", ["none", "dual", "prefix"])
@pytest.mark.parametrize("unmask", ["fixed", {"name": "threshold", "threshold": 0.2}])
def test_stop_at_eos_keeps_the_answer_and_decodes_fewer_blocks(cache, unmask):
    options = dict(gen_length=GEN, block_length=BLOCK, cache=cache, unmask=unmask)
    full = fastdllm.generate(EndsAt(mask_free_llada(), after=5), PROMPTS, **options)
    stopped = fastdllm.generate(EndsAt(mask_free_llada(), after=5), PROMPTS, stop_at_eos=True, **options)

    assert full.blocks_decoded == GEN // BLOCK
    assert stopped.blocks_decoded == 2  # EOS at generated position 5 lies in block 1
    assert stopped.nfe < full.nfe
    assert torch.equal(stopped.first_end, full.first_end)
    assert (full.first_end <= 5).all()
    for row in range(len(PROMPTS)):
        n = int(full.first_end[row])
        assert stopped.generated[row, :n + 1].tolist() == full.generated[row, :n + 1].tolist()
    decoded = 2 * BLOCK
    assert torch.equal(stopped.generated[:, :decoded], full.generated[:, :decoded])  # the decoded blocks
    rest = stopped.generated[:, decoded:]
    assert (rest == mask_free_llada().pad_token_id).all()  # filled with pad, no mask token left
    assert (stopped.commit_forward[:, decoded:] == 0).all()  # 0 = filled at stop
    assert (stopped.commit_forward[:, :decoded] >= 1).all()
    assert torch.equal(stopped.answer_nfe, full.answer_nfe)


def test_no_stop_until_every_row_has_an_end_token():
    """Only row 0 ends early: the batch decodes every block, exactly as without stop_at_eos."""
    options = dict(gen_length=GEN, block_length=BLOCK, cache="dual", unmask="threshold")
    model = mask_free_llada()
    ends_in_row_0 = EndsAt(model, after=2, rows=[0], others_never_end=True)
    full = fastdllm.generate(ends_in_row_0, PROMPTS, **options)
    stopped = fastdllm.generate(ends_in_row_0, PROMPTS, stop_at_eos=True, **options)
    assert int(full.first_end[0]) <= 2
    assert not torch.isin(full.generated[1], torch.tensor(model.end_token_ids)).any()  # row 1 never ends
    assert stopped.blocks_decoded == full.blocks_decoded == GEN // BLOCK
    assert torch.equal(stopped.sequences, full.sequences)
