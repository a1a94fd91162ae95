"""The positions the model sees: for a left-padded row with k pads, canvas position j has position id
j - k (0 on the pads), i.e. cumsum(real) - 1 clipped at 0, and the key mask hides exactly the pads.
Under RoPE a shift of every position by the same amount leaves the outputs unchanged, so only a direct
look at the arguments of the model's forward can see a wrong offset."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import random_prompts, tiny_llada

pytestmark = pytest.mark.usefixtures("single_thread")

GEN, BLOCK = 8, 4


def recording_model():
    """A tiny LLaDA whose ``step_logits`` (the pinned inner forward) records its positions and key mask."""
    model = tiny_llada()
    seen = []
    inner = model.step_logits

    def step_logits(canvas, start, index, store, position_ids, key_mask, rows):
        seen.append((position_ids.clone(), None if key_mask is None else key_mask.clone(), index.clone()))
        return inner(canvas, start, index, store, position_ids, key_mask, rows)

    model.step_logits = step_logits
    return model, seen


def expected_positions(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Written out row by row: pads get 0, the first real token 0, then 1, 2, ... to the canvas end."""
    P = max(lengths)
    positions, real = [], []
    for n in lengths:
        pads = P - n
        positions.append([0] * pads + list(range(n + GEN)))
        real.append([False] * pads + [True] * (n + GEN))
    return torch.tensor(positions), torch.tensor(real)


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("lengths", [[3, 6, 1], [5, 5]])
def test_positions_and_key_mask_of_left_padded_rows(cache, lengths):
    model, seen = recording_model()
    result = fastdllm.generate(model, random_prompts(len(lengths), lengths, seed=2), gen_length=GEN,
                               block_length=BLOCK, cache=cache, unmask="threshold")
    positions, real = expected_positions(lengths)
    assert len(seen) == result.nfe > 0
    for position_ids, key_mask, index in seen:
        assert torch.equal(position_ids, positions)
        if len(set(lengths)) == 1:
            assert key_mask is None or bool(key_mask.all())
        else:
            assert key_mask is not None and torch.equal(key_mask, real)
        assert index.numel() > 0 and int(index.max()) < positions.shape[1]



def test_full_forward_positions_of_left_padded_rows():
    """``DiffusionLM.forward`` (no cache, used for scoring) gives the network the same positions."""
    model = tiny_llada()
    seen = []
    inner = model.net.hidden

    def hidden(ids, start, end, store, position_ids, key_mask, *rest, **kw):
        seen.append((position_ids.clone(), None if key_mask is None else key_mask.clone()))
        return inner(ids, start, end, store, position_ids, key_mask, *rest, **kw)

    model.net.hidden = hidden
    lengths = [2, 5]
    ids = torch.tensor([[1, 1, 1, 7, 8], [4, 5, 6, 7, 8]])  # [2, 5], row 0 left-padded by 3
    mask = torch.tensor([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1]])
    model.forward(ids, attention_mask=mask)
    positions = torch.tensor([[0, 0, 0, 0, 1], [0, 1, 2, 3, 4]])
    assert torch.equal(seen[0][0], positions) and torch.equal(seen[0][1], mask.bool())
    model.forward(ids[1:])
    assert torch.equal(seen[1][0], positions[1:]) and seen[1][1] is None
    assert lengths == [int(m.sum()) for m in mask]
