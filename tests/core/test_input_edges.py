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


# the bad id's column differs from its row, so a check reducing over the wrong dimension names the wrong row
@pytest.mark.parametrize("bad, row", [([[3, 4, 5], [-1, 6, 7]], 1), ([[5, VOCAB, 4]], 0)])
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


def test_a_zero_step_bound_is_refused():
    with pytest.raises(ValueError, match="max_steps_per_block"):
        fastdllm.DecodeConfig(max_steps_per_block=0)
    assert fastdllm.DecodeConfig(max_steps_per_block=1, gen_length=8, block_length=4).steps_bound == 1
    assert fastdllm.DecodeConfig(gen_length=8, block_length=4).steps_bound == 4


def test_sampling_defaults():
    """Deterministic, no early stop and no extra bound unless asked for."""
    cfg = fastdllm.DecodeConfig(gen_length=8, block_length=4)
    assert (cfg.temperature, cfg.seed, cfg.stop_at_eos, cfg.max_steps_per_block) == (0.0, None, False, None)


def test_policy_field_errors_list_the_valid_fields():
    with pytest.raises(ValueError) as info:
        fastdllm.unmask_policies.get("threshold")(treshold=0.8)
    message = str(info.value)
    assert "unknown field 'treshold'" in message
    valid = message.split("Valid fields:")[1]
    assert "confidence" in valid and "threshold" in valid


def test_policy_configs_are_frozen():
    """A policy's config is its identity (spec, configs, W&B): it cannot change after construction."""
    import pydantic

    policy = fastdllm.unmask_policies.get("threshold")(threshold=0.8)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        policy.config.threshold = 0.5
    assert policy.config.threshold == 0.8


def test_describe_fields_for_ls():
    from fastdllm.core.registry import describe_fields

    rows = {name: (kind, default) for name, kind, default in describe_fields(fastdllm.unmask_policies.get("threshold").Config)}
    assert rows["threshold"] == ("float", 0.9)
    assert rows["confidence"] == ("str", "prob")  # a confidence-measure name, validated against its registry
    fixed = {name: (kind, default) for name, kind, default in describe_fields(fastdllm.unmask_policies.get("fixed").Config)}
    assert fixed["remasking"][1] == "low_confidence"
    assert "Literal" in fixed["remasking"][0] and "typing." not in fixed["remasking"][0]


def test_registering_the_same_class_twice_is_allowed():
    """A module imported twice (a notebook cell run again) re-registers the same class: that is not a clash."""
    registry: Registry[type] = Registry("widget")
    cls = type("Widget", (), {})
    registry.register("w")(cls)
    registry.register("w")(cls)
    assert registry.get("w") is cls and registry.names() == ["w"]
