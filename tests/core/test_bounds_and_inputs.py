"""The step bound is a hard cap, prompt ids are checked against the vocabulary, a config object names
exactly one policy, TPF counts only decoded positions, and RoPE tables stay fp32 under a dtype cast."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import RecordingModel, mask_free_llada, random_prompts, tiny_llada

pytestmark = pytest.mark.usefixtures("single_thread")

PROMPTS = random_prompts(2, [5, 3], seed=9)


@pytest.mark.parametrize("unmask", ["threshold", {"name": "fixed", "steps": 16}, "factor"])
def test_max_steps_per_block_is_a_hard_cap(unmask):
    """With a bound of 2 forwards per 4-token block and policies that commit one token per forward, the
    second forward commits every remaining mask: exactly 2 forwards per block, no mask left."""
    model = RecordingModel(mask_free_llada())
    result = fastdllm.generate(model, PROMPTS, gen_length=16, block_length=4, cache="dual", unmask=unmask,
                               max_steps_per_block=2)
    assert result.nfe == model.forwards == 2 * 4
    assert not (result.generated == model.mask_token_id).any()
    assert result.bound_flushes > 0
    assert (result.nfe_per_row == 8).all()


def test_default_bound_never_flushes():
    result = fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=16, block_length=4, cache="dual",
                               unmask="fixed")
    assert result.bound_flushes == 0 and result.nfe == 16


@pytest.mark.parametrize("bad", [[[5, -3]], [[5, 64]], [[5, 1000, 7]]])
def test_token_ids_outside_the_vocabulary(bad):
    model = RecordingModel(tiny_llada())
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 64\)"):
        fastdllm.generate(model, bad, gen_length=8, block_length=4)
    assert model.forwards == 0


def test_float_prompt_tensor_is_rejected():
    model = RecordingModel(tiny_llada())
    with pytest.raises(ValueError, match="integer token ids.*float32"):
        fastdllm.generate(model, torch.tensor([[5.0, 6.5]]), gen_length=8, block_length=4)
    assert model.forwards == 0


@pytest.mark.parametrize("registry", [fastdllm.cache_policies, fastdllm.unmask_policies], ids=["cache", "unmask"])
def test_a_config_object_names_exactly_one_policy(registry):
    key = "cache" if registry is fastdllm.cache_policies else "unmask"
    for name, cls in registry:
        config_classes = [other.Config for other_name, other in registry if other_name != name]
        assert cls.Config not in config_classes, f"{name} shares its Config class"
        decoder = fastdllm.DiffusionDecoder(tiny_llada(), **{key: cls.Config()})
        assert getattr(decoder, key).name == name


def test_tokens_per_forward_counts_decoded_positions_only():
    """One token per forward: TPF is 1 whether or not decoding stops early (pad-filled tail not counted)."""
    model = mask_free_llada()
    eos_always = _EosEverywhere(model)
    stopped = fastdllm.generate(eos_always, PROMPTS, gen_length=16, block_length=4, cache="none", unmask="fixed",
                                stop_at_eos=True)
    assert stopped.blocks_decoded == 1
    assert torch.equal(stopped.decoded_positions, torch.tensor([4, 4]))
    assert torch.allclose(stopped.tokens_per_forward, torch.ones(2))


def test_refresh_and_cached_forwards_per_row():
    result = fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=16, block_length=4, cache="dual",
                               unmask="fixed")
    assert torch.equal(result.refresh_per_row, torch.tensor([4, 4]))  # one refresh per block
    assert torch.equal(result.cached_per_row, torch.tensor([12, 12]))
    assert result.refresh_forwards == 4 and result.cached_forwards == 12


def test_rope_tables_stay_fp32_under_a_dtype_cast():
    model = tiny_llada(rope_theta=500000.0)
    cos = model.net.rope_cos.clone()
    model.to(torch.bfloat16)
    assert model.net.embed.weight.dtype == torch.bfloat16
    assert model.net.rope_cos.dtype == model.net.rope_sin.dtype == torch.float32
    assert torch.equal(model.net.rope_cos, cos)


class _EosEverywhere:
    """Logits that make EOS the most likely token everywhere (so every row ends in the first block)."""

    def __init__(self, model) -> None:
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def forward_step(self, *args):
        logits = self.model.forward_step(*args).clone()
        logits[..., self.model.pad_token_id] += 100.0
        return logits


@pytest.mark.parametrize("mask", [[[1, 1, 0]], [[0, 1, 0]], [[1, 0, 1]]])
def test_attention_mask_must_be_left_padded(mask):
    model = RecordingModel(tiny_llada())
    with pytest.raises(ValueError, match=r"rows \[0\] are not left-padded"):
        fastdllm.generate(model, torch.tensor([[5, 6, 7]]), attention_mask=torch.tensor(mask), gen_length=8,
                          block_length=4)
    assert model.forwards == 0


def test_float_ids_in_a_list_are_rejected():
    with pytest.raises(ValueError, match="non-integer"):
        fastdllm.generate(RecordingModel(tiny_llada()), [[1.7, 2.9]], gen_length=8, block_length=4)


def test_vocabulary_error_names_the_id():
    with pytest.raises(ValueError, match=r"row 1: 999"):
        fastdllm.generate(RecordingModel(tiny_llada()), [[5, 6], [7, 999]], gen_length=8, block_length=4)


def test_a_subclass_does_not_claim_its_parents_name():
    class MyPrefix(fastdllm.cache_policies.get("prefix")):
        pass

    assert MyPrefix().spec()["name"] == "unregistered"
    decoder = fastdllm.DiffusionDecoder(tiny_llada(), cache=MyPrefix(), gen_length=8, block_length=4)
    assert isinstance(decoder.cache, MyPrefix) and decoder.config.cache["name"] == "unregistered"


class _MislabelledRefresh(fastdllm.CachePolicy):
    def plan(self, step):
        return fastdllm.Plan(step.block_start, step.layout.canvas_length, refresh=True)


class _StorelessPartial(fastdllm.CachePolicy):
    uses_store = False

    def plan(self, step):
        return fastdllm.Plan(step.block_start, step.layout.canvas_length)


@pytest.mark.parametrize("policy, message", [(_MislabelledRefresh(), "refresh must be True exactly"),
                                             (_StorelessPartial(), "uses_store = False must recompute")])
def test_inconsistent_cache_plans_are_named(policy, message):
    with pytest.raises(RuntimeError, match=message):
        fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=8, block_length=4, cache=policy, unmask="fixed")


def test_decoder_reuses_and_releases_its_buffers():
    model = mask_free_llada()
    decoder = fastdllm.DiffusionDecoder(model, cache="dual", unmask="threshold", gen_length=8, block_length=4)
    first = decoder.generate(PROMPTS)
    canvas = decoder._buffers[1]
    second = decoder.generate(PROMPTS)
    assert decoder._buffers[1] is canvas  # same shape: same buffers
    assert torch.equal(first.sequences, second.sequences)
    assert first.sequences.data_ptr() != canvas.data_ptr()  # results never alias the buffers
    other = decoder.generate(random_prompts(2, [9, 2], seed=1))  # another shape: fresh buffers, still right
    alone = fastdllm.generate(model, random_prompts(2, [9, 2], seed=1), cache="dual", unmask="threshold",
                              gen_length=8, block_length=4)
    assert torch.equal(other.sequences, alone.sequences)
    decoder.release()
    assert decoder._buffers == ()
