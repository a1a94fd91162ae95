"""Edge values the input checks must accept (the smallest token id, the largest non-mask id) and the
suggestions their errors make."""

from __future__ import annotations

import re

import pytest

import fastdllm
from conftest import MASK_ID, VOCAB, RecordingModel, tiny_llada
from fastdllm.core.registry import Registry

pytestmark = pytest.mark.usefixtures("single_thread")


def test_token_ids_at_both_ends_of_the_vocabulary_are_accepted():
    model = RecordingModel(tiny_llada(), forbid_mask=True)
    top = VOCAB - 1 if MASK_ID != VOCAB - 1 else VOCAB - 2  # the largest id that is not the mask
    result = fastdllm.generate(model, [[0, 5, 0], [top, 0, top]], gen_length=4, block_length=4)
    assert result.sequences[:, :3].tolist() == [[0, 5, 0], [top, 0, top]]


@pytest.mark.parametrize("bad, row", [([[3, 4], [5, -1]], 1), ([[VOCAB, 4]], 0)])
def test_ids_outside_the_vocabulary_name_the_row(bad, row):
    model = RecordingModel(tiny_llada(), forbid_mask=True)
    with pytest.raises(ValueError, match=rf"prompt rows \[{row}\] hold token ids outside the vocabulary"):
        fastdllm.generate(model, bad, gen_length=4, block_length=4)
    assert model.forwards == 0


@pytest.mark.parametrize("gen, block, suggestion", [(70, 32, "gen_length=64"), (20, 32, "gen_length=32")])
def test_block_length_that_does_not_divide_suggests_a_gen_length(gen, block, suggestion):
    with pytest.raises(ValueError, match=suggestion):
        fastdllm.DecodeConfig(gen_length=gen, block_length=block)


def test_did_you_mean_lists_at_most_three_close_names():
    registry: Registry[type] = Registry("widget")
    for name in ("alpha1", "alpha2", "alpha3", "alpha4", "beta"):
        registry.register(name)(type(name, (), {}))
    with pytest.raises(KeyError) as info:
        registry.get("alpha")
    message = str(info.value)
    suggested = re.search(r"Did you mean (.*?)\?", message).group(1).split(" or ")
    assert sorted(suggested) == ["'alpha2'", "'alpha3'", "'alpha4'"]  # the three closest, not all four
    assert "alpha1, alpha2, alpha3, alpha4, beta" in message  # then every registered name
