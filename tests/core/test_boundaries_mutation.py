"""Boundaries the mutation run found untested: which rows an input error names, the top-p nucleus edge
(Dream's rule), the drift of an all-zero store row, and the range checks of sampling and kl-stable fields."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import MASK_ID, tiny_llada
from fastdllm.core.kv_store import _relative_change
from fastdllm.core.proposal import filter_logits


def test_an_empty_prompt_names_its_row_as_a_plain_list():
    ids = torch.tensor([[5, 6, 7], [1, 1, 1]])
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"empty prompt at batch rows \[1\]:"):
        fastdllm.generate(tiny_llada(), ids, attention_mask=mask, gen_length=8, block_length=8)


def test_a_mask_token_in_a_prompt_names_the_row_not_the_position():
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, MASK_ID]])  # row 1, position 3
    with pytest.raises(ValueError, match=r"prompt rows \[1\] contain the mask token"):
        fastdllm.generate(tiny_llada(), ids, gen_length=8, block_length=8)


def test_top_p_keeps_the_token_reached_exactly_at_the_nucleus_mass():
    """Dream's top_p_logits: a token leaves when the tokens before it hold *more* than top_p. Probabilities
    1/2, 1/4, 1/8, 1/8 (exact in binary): at top_p = 1/2 the second token (1/2 before it) stays, the third
    (3/4 before it) goes."""
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.125, 0.125]]]))  # float32: softmax reproduces them exactly
    probs = logits.softmax(-1)
    assert (probs.cumsum(-1) - probs)[0, 0, 1] == 0.5  # the edge is really hit
    kept = torch.isfinite(filter_logits(logits, top_p=0.5))[0, 0].tolist()
    assert kept == [True, True, False, False]


def test_drift_of_a_row_that_held_zeros_is_finite():
    old = torch.zeros(2, 1, 3, 4)  # [B, H_kv, n, D]: row 0 held nothing but zeros
    old[1] = 1.0
    new = torch.ones(2, 1, 3, 4)
    out = torch.empty(2)
    _relative_change(old, new, out=out)
    assert torch.isfinite(out).all() and out[0] > 1e6 and out[1] == 0.0


@pytest.mark.parametrize("field, value", [("top_k", 0), ("top_p", 0.0)])
def test_sampling_filters_refuse_empty_candidate_sets(field, value):
    with pytest.raises(fastdllm.ConfigError, match=field):
        fastdllm.core.config.decode_config(**{field: value})


def test_kl_stable_defaults_and_range():
    cls = fastdllm.unmask_policies.get("kl-stable")
    assert cls().config.history == 2  # KLASS's released setting
    with pytest.raises(fastdllm.ConfigError, match="history"):
        cls(history=0)
