"""CUDA-graph replay decodes exactly what the eager forward decodes (runs where a GPU is present; CI has
none, the device run of experiments/bench_gpu.py records the same check at full model shape)."""

from __future__ import annotations

import pytest
import torch
from checkpoint_helpers import FAMILIES, padded_batch, tiny_model

import fastdllm

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cache", ["none", "prefix", "dual", {"name": "refresh-interval", "interval": 3}], ids=str)
@pytest.mark.parametrize("unmask", ["fixed", {"name": "threshold", "threshold": 0.3}], ids=str)
def test_graphed_tokens_equal_eager(family, cache, unmask):
    model = tiny_model(family, seed=5).cuda()
    ids, real = padded_batch([5, 9, 3], seed=6)
    options = dict(cache=cache, unmask=unmask, gen_length=16, block_length=8)
    eager = fastdllm.generate(model, ids.cuda(), attention_mask=real.cuda(), **options)
    model.use_cuda_graphs()
    graphed = fastdllm.generate(model, ids.cuda(), attention_mask=real.cuda(), **options)
    again = fastdllm.generate(model, ids.cuda(), attention_mask=real.cuda(), **options)  # fresh buffers, recapture
    decoder = fastdllm.DiffusionDecoder(model, **options)  # static buffers: graphs replay across its calls
    first = decoder.generate(ids.cuda(), real.cuda())
    captures = model.cuda_graphs.captures
    second = decoder.generate(ids.cuda(), real.cuda())
    model.use_cuda_graphs(False)
    assert torch.equal(graphed.sequences, eager.sequences)
    assert torch.equal(again.sequences, eager.sequences)
    assert torch.equal(first.sequences, eager.sequences) and torch.equal(second.sequences, eager.sequences)
    assert model.cuda_graphs is None and captures > 0
    assert graphed.nfe == eager.nfe


@cuda
def test_a_decoder_reuses_its_graphs():
    model = tiny_model("llada", seed=5).cuda().use_cuda_graphs()
    ids, real = padded_batch([5, 9, 3], seed=6)
    decoder = fastdllm.DiffusionDecoder(model, cache="prefix", unmask="fixed", gen_length=16, block_length=8)
    decoder.generate(ids.cuda(), real.cuda())
    captures = model.cuda_graphs.captures
    decoder.generate(ids.cuda(), real.cuda())
    assert model.cuda_graphs.captures == captures == 3  # refresh + one window per block


def test_cpu_forward_ignores_graphs():
    """On the CPU the switch changes nothing (graphs are CUDA-only)."""
    model = tiny_model("llada", seed=5).use_cuda_graphs()
    ids, real = padded_batch([5, 3], seed=6)
    result = fastdllm.generate(model, ids, attention_mask=real, cache="dual", unmask="fixed", gen_length=8,
                               block_length=4)
    assert result.nfe == 8 and model.cuda_graphs.captures == 0


@cuda
def test_graphs_follow_a_change_of_prompt_length():
    """Buffers of a new shape may reuse freed addresses: graphs must be keyed by shape, not address only."""
    model = tiny_model("llada", seed=5).cuda()
    decoder = fastdllm.DiffusionDecoder(model, cache="dual", unmask="fixed", gen_length=16, block_length=8)
    batches = [padded_batch(lengths, seed=i) for i, lengths in enumerate([[5, 9], [4, 3], [12, 6], [5, 9]])]
    eager = [decoder.generate(ids.cuda(), real.cuda()).sequences for ids, real in batches]
    model.use_cuda_graphs()
    graphed = [decoder.generate(ids.cuda(), real.cuda()).sequences for ids, real in batches]
    model.use_cuda_graphs(False)
    assert all(torch.equal(a, b) for a, b in zip(eager, graphed))
