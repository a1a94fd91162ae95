"""The optimised forward (last layer and final norm only on the rows read; compiled layer functions on
CUDA) against the plain one (every row through the whole network), on the CPU at a tiny shape."""

from __future__ import annotations

import pytest
import torch
from checkpoint_helpers import FAMILIES, padded_batch, single_thread, tiny_model  # noqa: F401

import fastdllm
from fastdllm.models import transformer

CACHES = ["none", "prefix", "dual", {"name": "refresh-interval", "interval": 3}]


def _generate(model, fast: bool, cache, ids, real):
    model.net.fast = fast
    try:
        return fastdllm.generate(model, ids, attention_mask=real, cache=cache, unmask="fixed", gen_length=16,
                                 block_length=8)
    finally:
        model.net.fast = True


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cache", CACHES, ids=str)
def test_fast_decode_equals_plain(family, cache):
    model = tiny_model(family, seed=3)
    ids, real = padded_batch([5, 9, 3], seed=4)
    fast, plain = _generate(model, True, cache, ids, real), _generate(model, False, cache, ids, real)
    assert torch.equal(fast.sequences, plain.sequences)
    assert fast.nfe == plain.nfe


def _outputs(model, flag: str, value, windows) -> tuple:
    """With ``model.net.<flag> = value``: the logits of forwards over ``windows`` ((start, end, logit rows a, b)
    each, one store, a two-row padded batch of 20 positions) and the store's keys and values after them; the
    flag back to True."""
    ids, real = padded_batch([20, 14], seed=5)
    position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)  # [B, L]
    setattr(model.net, flag, value)
    store = model.new_kv_store(2, 20)
    try:
        with torch.inference_mode():
            logits = [model.forward_step(ids, start, end, store, position_ids, real, a, b) for start, end, a, b in windows]
    finally:
        setattr(model.net, flag, True)
    return (*logits, store.keys.clone(), store.values.clone())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("window", [(0, 20, 10, 14), (6, 20, 12, 20), (0, 20, 1, 20)], ids=str)
def test_fast_step_logits_close_to_plain(family, window):
    """One forward over ``[start, end)`` reading logits ``[a, b)``: the narrowed last layer gives the plain
    path's logits (rows in the middle of the window, at its end, and all of it)."""
    model = tiny_model(family, seed=3)
    # fill the store first where the window starts later: a window forward reads the rest of the canvas from it
    windows = [(0, 20, 1, 2), window] if window[0] else [window]
    out = {fast: _outputs(model, "fast", fast, windows)[-3:] for fast in (False, True)}
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-5, atol=1e-5)
    assert out[True][0].shape == (2, window[3] - window[2], model.vocab_size)
    torch.testing.assert_close(out[True][1], out[False][1])  # every position's keys/values still stored
    torch.testing.assert_close(out[True][2], out[False][2])


@pytest.mark.parametrize("family", FAMILIES)
def test_deferred_residual_add_is_the_same_add(family):
    """Each layer's MLP output added by the next layer's function (``Transformer.defer_residual``, the default)
    or right after the layer: the same bf16 adds in the same order, so logits and the store agree bit for bit,
    through a narrowed last layer too."""
    model = tiny_model(family, seed=3).to(torch.bfloat16)
    windows = [(0, 20, 1, 20), (6, 20, 12, 20)]
    deferred, after = (_outputs(model, "defer_residual", defer, windows) for defer in (True, False))
    assert all(torch.equal(a, b) for a, b in zip(deferred, after))


def test_compiled_layers_stay_eager_on_cpu(monkeypatch):
    """``use_compile`` is CUDA-only: on the CPU the eager functions run and the tokens are the plain ones."""
    model = tiny_model("dream", seed=3)
    ids, real = padded_batch([5, 9], seed=4)
    plain = _generate(model, False, "dual", ids, real)

    def refuse():
        raise AssertionError("compiled functions requested for a CPU forward")

    monkeypatch.setattr(transformer, "compiled_functions", refuse)
    model.use_compile()
    try:
        compiled = _generate(model, True, "dual", ids, real)
    finally:
        model.use_compile(False)
    assert torch.equal(compiled.sequences, plain.sequences)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_graphed_decode_equals_eager_on_cuda(family):
    """fp32 at a tiny shape: compiled layers under CUDA graphs decode the plain eager path's tokens."""
    model = tiny_model(family, seed=3).cuda()
    ids, real = padded_batch([5, 9, 3], seed=4)
    plain = _generate(model, False, "dual", ids.cuda(), real.cuda())
    model.use_compile().use_cuda_graphs()
    try:
        fast = _generate(model, True, "dual", ids.cuda(), real.cuda())
    finally:
        model.use_compile(False).use_cuda_graphs(False)
    assert torch.equal(fast.sequences, plain.sequences)
