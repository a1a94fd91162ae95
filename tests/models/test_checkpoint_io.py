"""``save_checkpoint`` / ``load_model``: sharded round trips, the HF index layout, streaming, dtypes,
repo ids, and the errors a broken folder gets."""

from __future__ import annotations

import json
import weakref

import pytest
import torch
from checkpoint_helpers import (FAMILIES, random_hf_weights, single_thread, tiny_config,  # noqa: F401
                                tiny_model, tiny_tokenizer, write_hf_folder)

import fastdllm
from fastdllm.models import checkpoint

SMALL_SHARDS = 20_000  # bytes: the tiny models (~120 KB in fp32) get several shards


@pytest.mark.parametrize("family", FAMILIES)
def test_sharded_round_trip(family, tmp_path):
    model = tiny_model(family, seed=2)
    folder = fastdllm.save_checkpoint(model, tmp_path / "ckpt", tokenizer=tiny_tokenizer(family),
                                      max_shard_bytes=SMALL_SHARDS)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    n = len(shards)
    assert n >= 2 and shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert not (folder / "model.safetensors").exists()
    assert set(index["weight_map"]) == set(type(model).hf_key_map(2))
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(p.numel() * 4 for p in model.parameters())
    config = json.loads((folder / "config.json").read_text())
    assert config["torch_dtype"] == "float32" and config["model_type"] == model.hf_config["model_type"]

    loaded = fastdllm.load_model(folder, device="cpu")
    assert type(loaded) is type(model) and loaded.dtype == torch.float32 and not loaded.training
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.testing.assert_close(loaded.net.rope_cos, model.net.rope_cos)  # re-created, not left empty
    assert (loaded.mask_token_id, loaded.pad_token_id, loaded.end_token_ids) == (
        model.mask_token_id, model.pad_token_id, model.end_token_ids)
    ids = torch.randint(6, 60, (2, 9))
    torch.testing.assert_close(loaded.forward(ids), model.forward(ids), atol=0, rtol=0)
    assert loaded.tokenizer is not None and loaded.tokenizer.convert_ids_to_tokens(model.mask_token_id) in (
        "<|mdm_mask|>", "<|mask|>")

    # saved again as one file into the same folder: the stale shards and index go away
    fastdllm.save_checkpoint(loaded, folder, dtype=torch.bfloat16)
    assert sorted(p.name for p in folder.glob("model*")) == ["model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["torch_dtype"] == "bfloat16"
    half = fastdllm.load_model(folder, device="cpu")  # default dtype: the config's
    assert half.dtype == torch.bfloat16 and half.net.rope_cos.dtype == torch.float32
    assert torch.equal(half.net.embed.weight, model.net.embed.weight.to(torch.bfloat16))
    assert fastdllm.load_model(folder, device="cpu", dtype="float32").dtype == torch.float32


def test_end_tokens_from_generation_config(tmp_path):
    model = tiny_model("dream")
    folder = fastdllm.save_checkpoint(model, tmp_path)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 5], "pad_token_id": 1}))
    assert fastdllm.load_model(folder, device="cpu").end_token_ids == (1, 2, 5)


def test_loader_streams_one_shard_and_one_tensor_at_a_time(tmp_path, monkeypatch):
    """Spy on ``safe_open``: shards are opened one at a time and closed before the next, and no tensor
    read from a shard is still alive when the next one is read (host memory ~ one tensor)."""
    folder = fastdllm.save_checkpoint(tiny_model("llada"), tmp_path, max_shard_bytes=SMALL_SHARDS)
    real_open, state = checkpoint.safe_open, {"open": 0, "max_open": 0, "reads": 0, "alive": []}

    class SpyOpen:
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def __enter__(self):
            state["open"] += 1
            state["max_open"] = max(state["max_open"], state["open"])
            self.handle = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            state["open"] -= 1
            return self.inner.__exit__(*exc)

        def get_tensor(self, key):
            assert not [r for r in state["alive"] if r() is not None], "an earlier tensor is still held"
            tensor = self.handle.get_tensor(key)
            state["alive"].append(weakref.ref(tensor))
            state["reads"] += 1
            return tensor

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(checkpoint, "safe_open", SpyOpen)
    model = fastdllm.load_model(folder, device="cpu")
    assert state["max_open"] == 1 and state["open"] == 0
    assert state["reads"] == len(model.state_dict())


def test_repo_id_goes_through_snapshot_download(tmp_path, monkeypatch):
    import huggingface_hub

    folder = fastdllm.save_checkpoint(tiny_model("dream"), tmp_path / "snap")
    calls = []

    def fake_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert isinstance(fastdllm.load_model("someone/tiny-dream", device="cpu"), fastdllm.Dream)
    (repo_id, patterns), = calls
    assert repo_id == "someone/tiny-dream" and "*.safetensors" in patterns and "*.json" in patterns
    assert "*.py" not in patterns

    def offline(repo_id, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="someone/other.*no network"):
        fastdllm.load_model("someone/other", device="cpu")


# ---- broken folders -----------------------------------------------------------------------------
@pytest.fixture
def hand_folder(tmp_path):
    """A hand-written Dream folder (real key names, 2 shards) and its tensors."""
    cfg = tiny_config("dream")
    weights = random_hf_weights("dream", cfg)
    return write_hf_folder(tmp_path / "dream", "dream", weights, cfg), cfg, weights


def test_hand_written_single_file_loads(tmp_path):
    cfg = tiny_config("llada")
    weights = random_hf_weights("llada", cfg)
    folder = write_hf_folder(tmp_path, "llada", weights, cfg, shards=1)
    model = fastdllm.load_model(str(folder), device="cpu")
    assert isinstance(model, fastdllm.LLaDA) and model.tokenizer is None
    assert torch.equal(model.net.layers[1].mlp.down_proj.weight, weights["model.transformer.blocks.1.ff_out.weight"])
    assert torch.equal(model.net.lm_head.weight, weights["model.transformer.ff_out.weight"])


def test_missing_folder(tmp_path):
    for path in (tmp_path / "nope", str(tmp_path / "nope"), "./no/such/folder", "~/no-such-fastdllm-ckpt"):
        with pytest.raises(FileNotFoundError, match="no"):
            fastdllm.load_model(path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="file.txt"):
        fastdllm.load_model(tmp_path / "file.txt")


def test_missing_config(hand_folder):
    folder, _, _ = hand_folder
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        fastdllm.load_model(folder)


@pytest.mark.parametrize("model_type", [None, "gpt2"])
def test_unknown_family_lists_supported(hand_folder, model_type):
    folder, cfg, _ = hand_folder
    cfg = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}
    if model_type:
        cfg["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"(no model_type|'gpt2').*Supported: dream .*DreamModel.*llada"):
        fastdllm.load_model(folder)


def test_family_from_architectures(hand_folder):
    folder, cfg, _ = hand_folder
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2-dream-variant"}))
    assert isinstance(fastdllm.load_model(folder, device="cpu"), fastdllm.Dream)


def test_missing_shard_is_named(hand_folder):
    folder, _, _ = hand_folder
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        fastdllm.load_model(folder)


def test_no_weights(hand_folder):
    folder, _, _ = hand_folder
    for p in folder.glob("model*"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        fastdllm.load_model(folder)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    cfg = tiny_config("dream")
    weights = random_hf_weights("dream", cfg)
    weights.pop("model.layers.1.self_attn.k_proj.bias")
    weights["model.layers.0.self_attn.o_proj.bias"] = torch.zeros(32)
    weights["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # derived buffer: ignored
    write_hf_folder(tmp_path, "dream", weights, cfg)
    with pytest.raises(ValueError) as err:
        fastdllm.load_model(tmp_path)
    text = str(err.value)
    assert "1 missing keys: model.layers.1.self_attn.k_proj.bias" in text
    assert "1 unexpected keys: model.layers.0.self_attn.o_proj.bias" in text and "inv_freq" not in text


def test_shape_mismatch_names_key_and_shapes(hand_folder):
    folder, cfg, weights = hand_folder
    weights["model.layers.0.mlp.up_proj.weight"] = torch.zeros(65, 32)
    write_hf_folder(folder, "dream", weights, cfg)
    expected = r"model.layers.0.mlp.up_proj.weight \(checkpoint \[65, 32\], model \[64, 32\]\)"
    with pytest.raises(ValueError, match=expected):
        fastdllm.load_model(folder)


def test_bad_dtype_and_device(hand_folder):
    folder, _, _ = hand_folder
    for bad in (torch.int64, torch.bool, torch.complex64, "float7", 3):
        with pytest.raises(ValueError, match="dtype"):
            fastdllm.load_model(folder, dtype=bad, device="cpu")
    with pytest.raises(ValueError, match="cannot run on cpu"):
        fastdllm.load_model(folder, dtype=torch.float8_e4m3fn, device="cpu")
    with pytest.raises(ValueError, match="device 'nodevice'"):
        fastdllm.load_model(folder, device="nodevice")


def test_config_problems_are_reported(hand_folder):
    folder, cfg, _ = hand_folder
    (folder / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        fastdllm.load_model(folder)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "hidden_size"}))
    with pytest.raises(ValueError, match="hidden_size"):
        fastdllm.load_model(folder)
