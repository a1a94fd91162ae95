"""Seeds: sampling (temperature > 0) and random remasking are reproducible from ``seed`` alone."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import mask_free_llada, random_prompts

pytestmark = pytest.mark.usefixtures("single_thread")

PROMPTS = random_prompts(2, [6, 4], seed=7)
OPTIONS = dict(gen_length=12, block_length=4)


def decode(seed, global_seed=0, **options):
    torch.manual_seed(global_seed)  # the global RNG must not matter once a seed is given
    return fastdllm.generate(mask_free_llada(), PROMPTS, seed=seed, **{**OPTIONS, **options})


@pytest.mark.parametrize("cache", ["none", "dual"])
@pytest.mark.parametrize("unmask", ["threshold", "fixed", {"name": "factor", "factor": 2.5}])
def test_sampling_is_seeded(cache, unmask):
    a = decode(11, global_seed=0, temperature=0.8, cache=cache, unmask=unmask)
    b = decode(11, global_seed=123, temperature=0.8, cache=cache, unmask=unmask)
    c = decode(12, global_seed=0, temperature=0.8, cache=cache, unmask=unmask)
    greedy = decode(None, temperature=0.0, cache=cache, unmask=unmask)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.commit_forward, b.commit_forward)
    assert not torch.equal(a.generated, c.generated)  # 24 sampled tokens: equal only by a fluke
    assert not torch.equal(a.generated, greedy.generated)  # temperature 0.8 does sample


def test_temperature_zero_ignores_the_seed():
    a = decode(1, cache="dual", unmask="threshold")
    b = decode(2, cache="dual", unmask="threshold")
    assert torch.equal(a.sequences, b.sequences)


def test_random_remasking_is_seeded():
    unmask = {"name": "fixed", "steps": 12, "remasking": "random"}
    a = decode(5, global_seed=0, cache="dual", unmask=unmask)
    b = decode(5, global_seed=99, cache="dual", unmask=unmask)
    c = decode(6, global_seed=0, cache="dual", unmask=unmask)
    low_conf = decode(5, cache="dual", unmask={"name": "fixed", "steps": 12})
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.commit_forward, b.commit_forward)
    assert not torch.equal(a.commit_forward, c.commit_forward)  # another seed, another order
    assert not torch.equal(a.commit_forward, low_conf.commit_forward)  # the order is not by confidence


def test_same_decoder_twice_is_identical():
    """A ``DiffusionDecoder`` reused for two calls restarts its generator from the seed each time."""
    decoder = fastdllm.DiffusionDecoder(mask_free_llada(), temperature=0.8, seed=3, cache="prefix",
                                        unmask="threshold", **OPTIONS)
    assert torch.equal(decoder.generate(PROMPTS).sequences, decoder.generate(PROMPTS).sequences)
