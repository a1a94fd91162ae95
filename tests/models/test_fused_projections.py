"""Fused q/k/v and gate/up projections (``DiffusionLM.fuse_projections``) on the CPU at a tiny shape, every
registered family: the same logits and tokens as the separate projections, one copy of the weights in
memory (also after a dtype cast), checkpoints still written and read under the HF key names."""

from __future__ import annotations

import json

import pytest
import torch
from checkpoint_helpers import FAMILIES, hf_shapes, padded_batch, single_thread, tiny_config, tiny_model  # noqa: F401
from safetensors import safe_open
from safetensors.torch import save_file

import fastdllm
from fastdllm.models import checkpoint

CACHES = ["none", "prefix", "dual", {"name": "refresh-interval", "interval": 3}]


def _storage_bytes(model) -> int:
    """Bytes of the distinct storages behind every parameter and buffer (shared storage counted once)."""
    storages = {}
    for t in [*model.parameters(), *model.buffers()]:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def _one_copy_bytes(model) -> int:
    """The parameters' bytes plus the RoPE tables': what the model holds with every weight stored once."""
    tables = (model.net.rope_cos, model.net.rope_sin)
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *tables])


def _fused_buffers(model) -> list:
    return [t for layer in model.net.layers for t in (layer.attn.qkv_weight, layer.attn.qkv_bias,
                                                       layer.mlp.gate_up_weight)]


def _window_logits(model, ids, real):
    """A full forward and a window step reading a few rows (the last layer's narrowed q path)."""
    position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)  # [B, L]
    B, L = ids.shape
    store = model.new_kv_store(B, L)
    with torch.inference_mode():
        full = model(ids, real)  # [B, L, V]
        model.forward_step(ids, 0, L, store, position_ids, real, 1, 2)
        window = model.forward_step(ids, 6, L, store, position_ids, real, 12, 16)  # [B, 4, V]
    return full, window, store.keys.clone(), store.values.clone()


def test_every_registered_family_is_covered():
    """A new adapter needs a tiny config here (checkpoint_helpers.tiny_config) to be tested fused."""
    assert set(fastdllm.model_adapters.names()) <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_logits_equal_unfused(family):
    model = tiny_model(family, seed=3)
    ids, real = padded_batch([16, 11], seed=5)
    unfused = _window_logits(model, ids, real)
    model.fuse_projections()
    layer = model.net.layers[0]
    a = model.arch
    assert layer.attn.qkv_weight.shape == ((a.n_heads + 2 * a.n_kv_heads) * a.head_dim, a.d_model)
    assert layer.mlp.gate_up_weight.shape == (2 * a.mlp_hidden, a.d_model)
    assert (layer.attn.qkv_bias is not None) == a.qkv_bias  # Dream's q/k/v biases are fused too
    fused = _window_logits(model, ids, real)
    for got, want in zip(fused, unfused):  # logits, window logits, keys and values written to the store
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cache", CACHES, ids=str)
def test_fused_decode_is_token_identical(family, cache):
    model = tiny_model(family, seed=3)
    ids, real = padded_batch([5, 9, 3], seed=4)
    options = dict(cache=cache, unmask={"name": "threshold", "threshold": 0.3}, gen_length=16, block_length=8)
    unfused = fastdllm.generate(model, ids, attention_mask=real, **options)
    fused = fastdllm.generate(model.fuse_projections(), ids, attention_mask=real, **options)
    assert torch.equal(fused.sequences, unfused.sequences) and fused.nfe == unfused.nfe


def _strict_save_file(tensors, path, metadata=None):
    """safetensors' writer as its stricter versions behave: any two tensors on one storage are refused
    (0.8 accepts disjoint views of one storage; the checkpoint must not depend on that)."""
    storages = [t.untyped_storage().data_ptr() for t in tensors.values()]
    if len(set(storages)) != len(storages):
        raise RuntimeError("Some tensors share memory, this will lead to duplicate memory on disk")
    save_file(tensors, path, metadata=metadata)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_after_fusing_round_trips_under_hf_names(tmp_path, family, monkeypatch):
    model = tiny_model(family, seed=3)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    model.fuse_projections()
    monkeypatch.setattr(checkpoint, "save_file", _strict_save_file)
    fastdllm.save_checkpoint(model, tmp_path, tokenizer=False)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as f:
        keys = set(f.keys())
    assert keys == set(hf_shapes(family, tiny_config(family)))  # the real checkpoint names, spelled out by hand
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "float32"
    loaded = fastdllm.load_model(tmp_path, device="cpu")
    assert loaded.net.layers[0].attn.qkv_weight is None  # loaded unfused
    assert loaded.state_dict().keys() == original.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert model.net.layers[0].attn.q_proj.weight.data_ptr() == model.net.layers[0].attn.qkv_weight.data_ptr()


@pytest.mark.parametrize("family", FAMILIES)
def test_fusing_twice_is_a_no_op(family):
    model = tiny_model(family, seed=3)
    assert model.net.fuse_projections() is True
    buffers = [t.data_ptr() if t is not None else None for t in _fused_buffers(model)]
    params = [p.data_ptr() for p in model.parameters()]
    assert model.net.fuse_projections() is False
    assert model.fuse_projections() is model
    assert [t.data_ptr() if t is not None else None for t in _fused_buffers(model)] == buffers
    assert [p.data_ptr() for p in model.parameters()] == params


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_stay_in_memory_once(family):
    """Fused, the q/k/v/gate/up parameters are views of the fused tensors: no second copy, also after a
    dtype cast (``_apply``), and unfusing gives every parameter its own storage again."""
    model = tiny_model(family, seed=3)
    assert _storage_bytes(model) == _one_copy_bytes(model)
    model.fuse_projections()
    assert _storage_bytes(model) == _one_copy_bytes(model)
    model.to(torch.float64)
    assert model.net.layers[0].attn.qkv_weight.dtype == torch.float64
    assert _storage_bytes(model) == _one_copy_bytes(model)
    layer = model.net.layers[1]
    assert layer.mlp.up_proj.weight.data_ptr() == (layer.mlp.gate_up_weight.data_ptr()
                                                   + layer.mlp.gate_proj.weight.numel() * 8)
    model.fuse_projections(False)
    assert all(t is None for t in _fused_buffers(model))
    storages = [p.untyped_storage().data_ptr() for p in model.parameters()]
    assert len(set(storages)) == len(storages)


@pytest.mark.parametrize("family", FAMILIES)
def test_in_place_updates_reach_the_fused_forward(family):
    """``load_state_dict`` on a fused model (after a dtype cast, too) writes into the fused weights: the
    forward then gives the loaded model's logits, not the stale ones."""
    ids, real = padded_batch([10, 7], seed=5)
    donor = tiny_model(family, seed=8)
    with torch.inference_mode():
        want = donor(ids, real)
    model = tiny_model(family, seed=3).fuse_projections().to(torch.float64).to(torch.float32)
    model.load_state_dict(donor.state_dict())
    with torch.inference_mode():
        got = model(ids, real)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_unfusing_restores_training(family):
    """A fused forward reads the fused buffers (no gradient to the parameters); unfused, gradients flow."""
    model = tiny_model(family, seed=3).fuse_projections().fuse_projections(False)
    ids, real = padded_batch([6, 6], seed=5)
    model(ids, real).logsumexp(-1).mean().backward()
    for layer in model.net.layers:
        for p in (layer.attn.q_proj.weight, layer.attn.v_proj.weight, layer.mlp.up_proj.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_use_compile_fuses():
    model = tiny_model("dream", seed=3)
    model.use_compile(fuse=False)
    assert all(t is None for t in _fused_buffers(model))
    model.use_compile()
    assert all(t is not None for t in _fused_buffers(model))
    model.use_compile(False)  # leaves the projections fused
    assert all(t is not None for t in _fused_buffers(model))


class _ReplayByRerun:
    """A CPU graph backend: replay re-runs the captured forward (see test_cuda_graphs.RecordingGraphs)."""

    def supports(self, canvas):
        return True

    def capture(self, forward, device, pool):
        output = forward()
        return (lambda: output.copy_(forward())), output, pool


def test_fusing_drops_captured_graphs():
    """Graphs hold the addresses of the weights they read: fusing frees the separate ones, so the graphs
    are dropped and captured again; a fuse that changes nothing keeps them."""
    model = tiny_model("llada", seed=3)
    ids, real = padded_batch([5, 9], seed=4)
    options = dict(cache="dual", unmask="fixed", gen_length=16, block_length=8)
    eager = fastdllm.generate(model, ids, attention_mask=real, **options)
    backend = _ReplayByRerun()
    model.use_cuda_graphs(backend=backend)
    fastdllm.generate(model, ids, attention_mask=real, **options)
    assert model.cuda_graphs.graphs
    model.fuse_projections()
    assert not model.cuda_graphs.graphs and model.cuda_graphs.backend is backend
    fused = fastdllm.generate(model, ids, attention_mask=real, **options)
    graphs = dict(model.cuda_graphs.graphs)
    assert graphs and torch.equal(fused.sequences, eager.sequences)
    model.fuse_projections()
    assert model.cuda_graphs.graphs == graphs
