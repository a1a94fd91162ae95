"""CPU smoke runs of ``experiments/train_tiny.py`` (the script that trains the shipped tiny models).

Each family trains for three steps at toy sizes; the tests check the folder it writes is an HF-format
checkpoint under the real models' key names that ``fastdllm.load_model`` loads and decodes with, and that
the run was tracked offline with W&B. ``diffusion_loss`` is unit-tested on its own.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import fastdllm

pytestmark = pytest.mark.usefixtures("single_thread")

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "train_tiny.py"
SIZES = ["--max-steps", "3", "--examples", "300", "--batch", "16", "--device", "cpu", "--workers", "1",
         "--eval-problems", "4", "--d-model", "32", "--heads", "4", "--mlp", "64", "--layers", "2",
         "--gen-length", "64", "--wandb-mode", "offline"]


@pytest.fixture(scope="module")
def train_tiny():
    spec = importlib.util.spec_from_file_location("train_tiny_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses / pickling look the module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def smoke_run(train_tiny, tmp_path_factory, family: str) -> tuple[dict, Path, Path]:
    root = tmp_path_factory.mktemp(f"train-{family}")
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(root),
                           "WANDB_CONFIG_DIR": str(root / "wandb-config"), "WANDB_CACHE_DIR": str(root / "wandb-cache"),
                           "WANDB_CONSOLE": "off"}.items():
            mp.setenv(key, value)
        mp.delenv("WANDB_API_KEY", raising=False)
        summary = train_tiny.main(["--out", str(out), "--family", family, *SIZES])
    return summary, out, root


@pytest.fixture(scope="module")
def llada_run(train_tiny, tmp_path_factory, single_thread):
    return smoke_run(train_tiny, tmp_path_factory, "llada")


@pytest.fixture(scope="module")
def dream_run(train_tiny, tmp_path_factory, single_thread):
    return smoke_run(train_tiny, tmp_path_factory, "dream")


def safetensor_keys(folder: Path) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        return set(f.keys())


def decode_once(folder: Path):
    model = fastdllm.load_model(folder, device="cpu")
    ids, mask = model.encode(["Mia has 2 apples. She finds 5 more. How many apples now?", "What is 2 plus 3?"])
    result = fastdllm.generate(model, ids, attention_mask=mask, cache="dual", unmask="threshold", gen_length=16,
                               block_length=8)
    return model, result


# ---- llada ---------------------------------------------------------------------------------------------


def test_llada_summary(llada_run):
    summary, out, _ = llada_run
    assert summary["steps"] == 3
    assert 0 < summary["examples"] <= 300
    assert summary["params"] > 0
    assert set(summary["final"]) == {"eval/accuracy", "eval/scorer", "eval/accuracy_lenient", "eval/accuracy_chain",
                                     "eval/answer_tokens"}
    assert summary["final"]["eval/scorer"] == "strict"
    assert len(summary["data_sha256"]) == 64 and "commit" in summary
    assert 0.0 <= summary["final"]["eval/accuracy"] <= 1.0
    saved = json.loads((out / "training_summary.json").read_text())
    assert saved["steps"] == 3 and saved["params"] == summary["params"]
    assert saved["args"]["family"] == "llada"


def test_llada_folder_uses_llada_config_fields(llada_run):
    _, out, _ = llada_run
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llada"
    assert config["architectures"] == ["LLaDAModelLM"]
    assert (config["d_model"], config["n_layers"], config["n_heads"], config["mlp_hidden_size"]) == (32, 2, 4, 64)
    assert not {"hidden_size", "num_hidden_layers"} & set(config)
    for field in ("mask_token_id", "eos_token_id", "vocab_size"):
        assert field in config
    assert (out / "tokenizer.json").is_file()
    assert (out / "chat_template.jinja").is_file() or "chat_template" in json.loads(
        (out / "tokenizer_config.json").read_text())


def test_llada_safetensors_use_llada_8b_key_names(llada_run):
    _, out, _ = llada_run
    keys = safetensor_keys(out)
    expected = {"model.transformer.wte.weight", "model.transformer.ln_f.weight", "model.transformer.ff_out.weight"}
    for layer in range(2):
        expected |= {f"model.transformer.blocks.{layer}.{name}.weight" for name in
                     ("q_proj", "k_proj", "v_proj", "attn_out", "attn_norm", "ff_norm", "ff_proj", "up_proj",
                      "ff_out")}
    assert keys == expected
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert tuple(f.get_tensor("model.transformer.blocks.0.ff_proj.weight").shape) == (64, 32)
        assert f.get_tensor("model.transformer.wte.weight").dtype == torch.float32


def test_llada_checkpoint_loads_and_decodes(llada_run):
    _, out, _ = llada_run
    model, result = decode_once(out)
    assert type(model).name == "llada" and model.logit_shift == 0
    assert model.mask_token_id == json.loads((out / "config.json").read_text())["mask_token_id"]
    assert result.generated.shape == (2, 16)
    assert not (result.generated == model.mask_token_id).any()
    assert len(result.texts) == 2 and all(isinstance(t, str) for t in result.texts)


def test_llada_run_tracked_offline_with_wandb(llada_run):
    _, _, root = llada_run
    runs = [p for p in (root / "wandb").rglob("offline-run-*") if p.is_dir()]
    assert runs, f"no offline W&B run under {root / 'wandb'}"
    assert any(f.suffix == ".wandb" for run in runs for f in run.iterdir())


# ---- dream ---------------------------------------------------------------------------------------------


def test_dream_folder_uses_dream_names(dream_run):
    summary, out, root = dream_run
    assert summary["steps"] == 3
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "Dream" and config["architectures"] == ["DreamModel"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"]) == (32, 2, 4, 64)
    keys = safetensor_keys(out)
    for key in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                "model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.v_proj.bias",
                "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight"):
        assert key in keys
    assert "model.layers.0.self_attn.o_proj.bias" not in keys
    assert not any(k.startswith("model.transformer.") for k in keys)
    assert (out / "tokenizer.json").is_file()
    assert any(p.is_dir() for p in (root / "wandb").rglob("offline-run-*"))


def test_dream_checkpoint_loads_as_dream_adapter(dream_run):
    _, out, _ = dream_run
    model, result = decode_once(out)
    assert type(model).name == "dream"
    assert model.logit_shift == 1
    assert not (result.generated == model.mask_token_id).any()
    assert len(result.texts) == 2


# ---- diffusion_loss ------------------------------------------------------------------------------------


def toy_batch(train_tiny, vocab: int, P: int = 12, G: int = 16, B: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(4, vocab, (B, P + G), generator=gen)  # [B, P+G]: no special token among them
    prompt_len = torch.tensor([P, P - 3, 5, 1][:B])  # [B]
    for row, n in enumerate(prompt_len.tolist()):
        x0[row, :P - n] = train_tiny.EOS  # left padding
    x0[:, -3:] = train_tiny.EOS  # response ends with end tokens, as the dataset's rows do
    return x0, prompt_len, P


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_diffusion_loss_finite_positive_and_differentiable(train_tiny, family):
    args = train_tiny.parse_args(["--out", "unused", "--family", family, "--d-model", "32", "--heads", "4",
                                  "--mlp", "64", "--layers", "2"])
    vocab = 48
    torch.manual_seed(0)
    model = fastdllm.model_adapters.get(family)(train_tiny.model_config(args, vocab)).train()
    assert model.mask_token_id == train_tiny.MASK
    x0, prompt_len, P = toy_batch(train_tiny, vocab)

    seen = {}
    hidden = model.net.hidden

    def recording_hidden(canvas, *rest):
        seen["xt"] = canvas.clone()
        return hidden(canvas, *rest)

    model.net.hidden = recording_hidden
    torch.manual_seed(1)
    loss = train_tiny.diffusion_loss(model.net, x0, prompt_len, P, model.logit_shift)
    del model.net.hidden

    assert loss.dim() == 0
    assert math.isfinite(loss.item()) and loss.item() > 0
    xt = seen["xt"]
    assert torch.equal(xt[:, :P], x0[:, :P])  # the prompt is never masked
    changed = xt[:, P:] != x0[:, P:]
    assert changed.any()
    assert (xt[:, P:][changed] == train_tiny.MASK).all()  # response positions are either kept or masked

    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())
    assert model.net.lm_head.weight.grad.abs().sum() > 0


def test_diffusion_loss_is_zero_when_nothing_is_masked(train_tiny, monkeypatch):
    args = train_tiny.parse_args(["--out", "unused", "--d-model", "32", "--heads", "4", "--mlp", "64",
                                  "--layers", "2"])
    model = fastdllm.model_adapters.get("llada")(train_tiny.model_config(args, 48))
    x0, prompt_len, P = toy_batch(train_tiny, 48)
    real_rand = torch.rand

    def rand(*shape, **kw):  # t draws stay random; the mask draw is all ones, so no position is masked
        out = real_rand(*shape, **kw)
        return torch.ones_like(out) if out.dim() == 2 and out.shape[1] > 1 else out

    monkeypatch.setattr(train_tiny.torch, "rand", rand)
    loss = train_tiny.diffusion_loss(model.net, x0, prompt_len, P, model.logit_shift)
    assert loss.item() == 0.0
