"""Bad input fails before any model work, with a message that names the field or value."""

from __future__ import annotations

import re

import pytest
import torch

import fastdllm
from conftest import MASK_ID, RecordingModel, random_prompts, tiny_llada

pytestmark = pytest.mark.usefixtures("single_thread")

PROMPTS = random_prompts(2, [5, 3], seed=9)
GOOD = dict(gen_length=16, block_length=4, cache="dual", unmask="threshold")


@pytest.fixture
def model():
    return RecordingModel(tiny_llada())


def raises_before_forward(model, *patterns, prompts=PROMPTS, exc=(ValueError, KeyError), **options):
    with pytest.raises(exc) as info:
        fastdllm.generate(model, prompts, **{**GOOD, **options})
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert model.forwards == 0, "the model ran before the input was rejected"
    return message


def test_good_options_do_run(model):
    """The baseline the cases below break one field of."""
    result = fastdllm.generate(RecordingModel(tiny_llada(), forbid_mask=True), PROMPTS, **GOOD)
    assert result.nfe > 0


def test_block_length_must_divide_gen_length(model):
    raises_before_forward(model, "block_length=6", "gen_length=16", gen_length=16, block_length=6)


@pytest.mark.parametrize("field, value", [("gen_length", 0), ("gen_length", -4), ("block_length", 0),
                                          ("block_length", -2)])
def test_lengths_must_be_positive(model, field, value):
    raises_before_forward(model, field, str(value), **{field: value})


@pytest.mark.parametrize("value", [0, 0.0, 1.5, -0.3])
def test_threshold_outside_0_1(model, value):
    raises_before_forward(model, "threshold", re.escape(repr(value)), unmask={"name": "threshold", "threshold": value})


@pytest.mark.parametrize("value", [0, -1.0])
def test_factor_must_be_positive(model, value):
    raises_before_forward(model, "factor", re.escape(repr(value)), unmask={"name": "factor", "factor": value})


@pytest.mark.parametrize("steps", [3, 6, 17, 32])
def test_fixed_steps_multiple_of_blocks_and_at_most_gen_length(model, steps):
    """gen_length 16 in 4 blocks: steps must be one of 4, 8, 12, 16."""
    raises_before_forward(model, "steps", f"steps={steps}", unmask={"name": "fixed", "steps": steps})


def test_negative_temperature(model):
    raises_before_forward(model, "temperature", "-0.5", temperature=-0.5)


def test_max_steps_per_block_must_be_positive(model):
    raises_before_forward(model, "max_steps_per_block", max_steps_per_block=0)


def test_prompt_holding_the_mask_token(model):
    raises_before_forward(model, "mask token", str(MASK_ID), r"\[1\]", prompts=[[5, 6, 7], [8, MASK_ID, 9]])


def test_mask_token_under_padding_is_fine():
    """A masked-out (padding) position may hold any id, the mask id included."""
    model = RecordingModel(tiny_llada(), forbid_mask=True)
    ids = torch.tensor([[MASK_ID, 5, 6], [7, 8, 9]])
    result = fastdllm.generate(model, ids, attention_mask=torch.tensor([[0, 1, 1], [1, 1, 1]]), **GOOD)
    assert result.nfe > 0


@pytest.mark.parametrize("prompts", [[[5, 6], []], [[]]], ids=["one-empty-row", "all-empty"])
def test_empty_prompt(model, prompts):
    raises_before_forward(model, "empty prompt", prompts=prompts)


def test_no_prompts(model):
    raises_before_forward(model, "no prompts", prompts=[])


def test_canvas_longer_than_the_model_allows(model):
    long_prompt = [[5] * (model.max_sequence_length - 8)]
    raises_before_forward(model, "max_sequence_length", str(model.max_sequence_length), "gen_length 16",
                          prompts=long_prompt)


def test_canvas_exactly_at_the_limit_runs():
    model = RecordingModel(tiny_llada(), forbid_mask=True)
    result = fastdllm.generate(model, [[5] * (model.max_sequence_length - 16)], **GOOD)
    assert result.sequences.shape[1] == model.max_sequence_length


@pytest.mark.parametrize("option, typo, fix", [("cache", "dul", "dual"), ("unmask", "treshold", "threshold"),
                                               ("unmask", "factr", "factor"), ("cache", "prefx", "prefix")])
def test_unknown_policy_name_suggests_the_close_one(model, option, typo, fix):
    message = raises_before_forward(model, f"Did you mean '{fix}'", repr(typo), **{option: typo})
    assert "Registered" in message


def test_unknown_policy_name_in_a_dict(model):
    raises_before_forward(model, "Did you mean 'refresh-interval'", cache={"name": "refresh-interva", "interval": 2})


def test_unknown_policy_field(model):
    raises_before_forward(model, "treshold", unmask={"name": "threshold", "treshold": 0.8})


def test_policy_dict_without_a_name(model):
    raises_before_forward(model, "name", unmask={"threshold": 0.8})


def test_unknown_generate_option(model):
    with pytest.raises(ValueError, match="gen_lenght"):
        fastdllm.generate(model, PROMPTS, gen_lenght=8, block_length=4)
    assert model.forwards == 0


def test_unknown_decoder_option(model):
    with pytest.raises(ValueError, match="temprature"):
        fastdllm.DiffusionDecoder(model, temprature=0.5)


def test_policy_instance_rejects_bad_values():
    with pytest.raises(ValueError, match="threshold"):
        fastdllm.unmask_policies.get("threshold")(threshold=1.5)
    with pytest.raises(ValueError, match="interval"):
        fastdllm.cache_policies.get("refresh-interval")(interval=0)
    with pytest.raises(ValueError, match="reuse"):
        fastdllm.cache_policies.get("refresh-interval")(reuse="suffix")
    with pytest.raises(ValueError, match="remasking"):
        fastdllm.unmask_policies.get("fixed")(remasking="lowest")


@pytest.mark.parametrize("case", ["3d", "mask-shape", "list-with-mask"])
def test_malformed_prompt_tensors(model, case):
    if case == "3d":
        raises_before_forward(model, "shape", prompts=torch.ones((1, 2, 3), dtype=torch.long))
    elif case == "mask-shape":
        with pytest.raises(ValueError, match="attention_mask"):
            fastdllm.generate(model, torch.ones((2, 3), dtype=torch.long), attention_mask=torch.ones(2, 4), **GOOD)
    else:
        with pytest.raises(ValueError, match="attention_mask"):
            fastdllm.generate(model, PROMPTS, attention_mask=torch.ones(2, 5), **GOOD)
    assert model.forwards == 0
