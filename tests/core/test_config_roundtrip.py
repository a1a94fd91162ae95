"""``DecodeConfig`` round-trips through JSON and YAML, builds policies equal to the originals, and takes a
user-defined policy registered in one place (here: this file) by name."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
import yaml
from pydantic import Field

import fastdllm
from conftest import mask_free_llada, random_prompts
from fastdllm import DecodeConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@fastdllm.unmask_policies.register("test-config-margin")
class MarginUnmask(fastdllm.UnmaskPolicy):
    """Commit masked positions whose top-1 minus top-2 probability is at least ``margin``."""

    class Config(fastdllm.UnmaskPolicy.Config):
        confidence: Literal["prob", "margin", "neg_entropy"] = "margin"
        margin: float = Field(0.5, gt=0.0, le=1.0)

    def select(self, proposal, step):
        return fastdllm.at_least_one(proposal.masked & (proposal.confidence >= self.config.margin), proposal)


CONFIGS = [
    dict(),
    dict(gen_length=32, block_length=8, cache={"name": "refresh-interval", "interval": 2, "reuse": "prefix"},
         unmask={"name": "factor", "factor": 1.5, "confidence": "margin"}, temperature=0.7, seed=3,
         stop_at_eos=True, max_steps_per_block=8),
    dict(gen_length=16, block_length=4, cache="prefix", unmask={"name": "fixed", "steps": 8, "remasking": "random"}),
    dict(cache="none", unmask={"name": "fixed"}),
    dict(unmask={"name": "test-config-margin", "margin": 0.25}),
    dict(unmask=MarginUnmask(margin=0.3), cache=fastdllm.cache_policies.get("dual")()),
]


@pytest.mark.parametrize("values", CONFIGS)
def test_json_and_yaml_round_trip(values):
    config = DecodeConfig(**values)
    again = DecodeConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert DecodeConfig(**yaml.safe_load(yaml.safe_dump(config.model_dump()))) == config
    cache, unmask = config.policies()
    cache2, unmask2 = again.policies()
    assert type(cache) is type(cache2) and type(unmask) is type(unmask2)
    assert cache.spec() == cache2.spec() == config.cache
    assert unmask.spec() == unmask2.spec() == config.unmask


def test_default_policies_are_normalised_like_explicit_ones():
    """The defaults record the full spec (what W&B logs), exactly as passing the same names would."""
    assert DecodeConfig().unmask == DecodeConfig(unmask="threshold").unmask == \
        {"name": "threshold", "confidence": "prob", "threshold": 0.9}
    assert DecodeConfig().cache == DecodeConfig(cache="dual").cache
    assert DecodeConfig() == DecodeConfig(cache="dual", unmask="threshold")


def test_policies_equal_the_originals():
    cache = fastdllm.cache_policies.get("refresh-interval")(interval=3, reuse="prefix")
    unmask = fastdllm.unmask_policies.get("threshold")(threshold=0.7, confidence="margin")
    config = DecodeConfig(cache=cache, unmask=unmask, gen_length=16, block_length=4)
    built_cache, built_unmask = DecodeConfig.model_validate_json(config.model_dump_json()).policies()
    assert built_cache.spec() == cache.spec() == {"name": "refresh-interval", "interval": 3, "reuse": "prefix"}
    assert built_unmask.spec() == unmask.spec() == {"name": "threshold", "threshold": 0.7, "confidence": "margin"}
    assert built_cache.config == cache.config and built_unmask.config == unmask.config


def test_spec_forms_are_the_same_policy():
    """Name, dict, config and instance all normalise to the same spec."""
    threshold = fastdllm.unmask_policies.get("threshold")
    forms = ["threshold", {"name": "threshold"}, threshold.Config(), threshold()]
    specs = {str(DecodeConfig(unmask=form).unmask) for form in forms}
    assert specs == {str({"name": "threshold", "confidence": "prob", "threshold": 0.9})}


def test_config_is_frozen():
    config = DecodeConfig()
    with pytest.raises(Exception):
        config.gen_length = 8  # type: ignore[misc]


def test_user_policy_by_name_in_generate():
    prompts = random_prompts(2, [5, 3], seed=1)
    options = dict(gen_length=8, block_length=4, cache="dual")
    loose = fastdllm.generate(mask_free_llada(), prompts, unmask={"name": "test-config-margin", "margin": 1e-6},
                              **options)
    strict = fastdllm.generate(mask_free_llada(), prompts, unmask={"name": "test-config-margin", "margin": 1.0},
                               **options)
    # margin ~0 commits the whole block at once; margin 1 only the forced most confident position
    assert loose.nfe == 2 and strict.nfe == 8
    assert loose.forced_commits == strict.forced_commits == 0
    assert not (loose.generated == mask_free_llada().mask_token_id).any()


def test_user_policy_config_round_trips_through_the_decoder():
    decoder = fastdllm.DiffusionDecoder(mask_free_llada(), unmask=MarginUnmask(margin=0.3), gen_length=8,
                                        block_length=4)
    assert isinstance(decoder.unmask, MarginUnmask)
    assert decoder.config.unmask == {"name": "test-config-margin", "confidence": "margin", "margin": 0.3}
    rebuilt = DecodeConfig.model_validate_json(decoder.config.model_dump_json())
    assert rebuilt == decoder.config
    policy = rebuilt.policies()[1]
    assert isinstance(policy, MarginUnmask) and policy.config.margin == 0.3
    with pytest.raises(ValueError, match="margin"):
        DecodeConfig(unmask={"name": "test-config-margin", "margin": 0.0})
    with pytest.raises(ValueError, match="margn"):
        DecodeConfig(unmask={"name": "test-config-margin", "margn": 0.2})


def test_registering_a_taken_name_fails():
    with pytest.raises(ValueError, match="already registered"):
        fastdllm.unmask_policies.register("threshold")(MarginUnmask)


def test_decoder_from_a_config_decodes_like_generate():
    config = DecodeConfig(gen_length=8, block_length=4, cache="prefix", unmask={"name": "factor", "factor": 2.5})
    prompts = random_prompts(2, [5, 3], seed=2)
    via_config = fastdllm.DiffusionDecoder(mask_free_llada(), config).generate(prompts)
    via_options = fastdllm.generate(mask_free_llada(), prompts, **config.model_dump())
    assert torch.equal(via_config.sequences, via_options.sequences)
    overridden = fastdllm.DiffusionDecoder(mask_free_llada(), config, cache="none")
    assert overridden.config.cache == {"name": "none"} and overridden.config.unmask == config.unmask
