"""``pad_prompt_to_multiple``: prompts left-padded to a bucket length decode the same tokens, and batches whose
longest prompt falls in one bucket share the decoder's buffers and CUDA graphs (no re-capture)."""

from __future__ import annotations

import pytest
import torch
from checkpoint_helpers import FAMILIES, padded_batch, single_thread, tiny_model  # noqa: F401
from test_cuda_graphs import RecordingGraphs

import fastdllm
from fastdllm.core.policy import ConfigError

OPTIONS = dict(cache="dual", unmask={"name": "threshold", "threshold": 0.3}, gen_length=16, block_length=8)


@pytest.mark.parametrize("family", FAMILIES)
def test_bucket_padding_keeps_the_tokens(family):
    model = tiny_model(family, seed=7)
    ids, real = padded_batch([5, 9, 3], seed=8)
    plain = fastdllm.generate(model, ids, attention_mask=real, **OPTIONS)
    padded = fastdllm.generate(model, ids, attention_mask=real, pad_prompt_to_multiple=16, **OPTIONS)
    assert padded.prompt_length == 16 and plain.prompt_length == 9
    assert torch.equal(padded.generated, plain.generated) and padded.nfe == plain.nfe


def test_batches_in_one_bucket_reuse_the_graphs():
    model = tiny_model("llada", seed=7).use_cuda_graphs(backend=RecordingGraphs())
    decoder = fastdllm.DiffusionDecoder(model, pad_prompt_to_multiple=16, **OPTIONS)
    first = decoder.generate(*padded_batch([5, 9, 3], seed=8))
    captures = model.cuda_graphs.captures
    second = decoder.generate(*padded_batch([12, 4, 7], seed=9))  # longest 12: the same 16-token bucket
    assert model.cuda_graphs.captures == captures == 2
    assert first.prompt_length == second.prompt_length == 16
    third = decoder.generate(*padded_batch([17, 4, 7], seed=9))  # the next bucket: new buffers, new graphs
    assert third.prompt_length == 32 and model.cuda_graphs.captures == 4


def test_bad_bucket_refused():
    with pytest.raises(ConfigError, match="pad_prompt_to_multiple"):
        fastdllm.DiffusionDecoder(tiny_model("llada"), pad_prompt_to_multiple=0, **OPTIONS)
