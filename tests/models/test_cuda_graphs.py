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
    model.use_cuda_graphs(False)
    assert torch.equal(graphed.sequences, eager.sequences)
    assert torch.equal(again.sequences, eager.sequences)
    assert graphed.nfe == eager.nfe


def test_cpu_forward_ignores_graphs():
    """On the CPU the switch changes nothing (graphs are CUDA-only)."""
    model = tiny_model("llada", seed=5).use_cuda_graphs()
    ids, real = padded_batch([5, 3], seed=6)
    result = fastdllm.generate(model, ids, attention_mask=real, cache="dual", unmask="fixed", gen_length=8,
                               block_length=4)
    assert result.nfe == 8 and model.cuda_graphs.captures == 0
