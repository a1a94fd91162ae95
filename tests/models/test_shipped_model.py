"""Guards the shipped artefact: the tiny trained models load through the public loader (the code path
of a real LLaDA / Dream checkpoint) and solve fixed held-out problems."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

import fastdllm
from fastdllm.assets import ASSETS, default_decode_options, tiny_model_path
from fastdllm.tasks import get_task

pytestmark = pytest.mark.usefixtures("single_thread")

FOLDERS = {"llada": ASSETS / "tiny-llada", "dream": ASSETS / "tiny-dream"}
PROBLEMS = get_task("arithmetic").generate("test", 6, seed=2024)  # fixed held-out problems


@pytest.fixture(scope="module", params=sorted(FOLDERS))
def shipped(request):
    folder = FOLDERS[request.param]
    return request.param, folder, fastdllm.load_model(folder, device="cpu")


def test_default_model_is_the_llada_folder():
    assert tiny_model_path() == FOLDERS["llada"]


def test_folder_is_a_real_hf_checkpoint(shipped):
    family, folder, model = shipped
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 16 * 2**20
    config = json.loads((folder / "config.json").read_text())
    assert fastdllm.models.checkpoint.adapter_for(config).name == family == model.name
    with safe_open(str(weights), framework="pt") as f:
        keys = set(f.keys())
    assert keys == set(type(model).hf_key_map(model.arch.n_layers))
    first = "model.transformer.blocks.0.ff_proj.weight" if family == "llada" else "model.layers.0.self_attn.q_proj.bias"
    assert first in keys
    assert model.tokenizer is not None and model.tokenizer.chat_template
    assert model.logit_shift == (1 if family == "dream" else 0)


@pytest.mark.parametrize("setting", [{"cache": "none", "unmask": "fixed"},
                                     {"cache": "dual", "unmask": {"name": "threshold", "threshold": 0.9}}],
                         ids=["baseline", "dual+threshold"])
def test_solves_fixed_problems(shipped, setting):
    family, folder, model = shipped
    task = get_task("arithmetic")
    decode = default_decode_options(folder)
    ids, mask = model.encode([p.prompt for p in PROBLEMS])
    result = fastdllm.generate(model, ids, attention_mask=mask, **decode, **setting)
    solved = [task.score(text, p) for text, p in zip(result.texts, PROBLEMS)]
    assert all(solved), list(zip(result.texts, [p.response for p in PROBLEMS]))
    assert all(text.endswith(f"The answer is {p.answer}.") for text, p in zip(result.texts, PROBLEMS))
    if setting["unmask"] == "fixed":
        assert (result.nfe_per_row == decode["gen_length"]).all()
    else:
        assert (result.nfe_per_row < decode["gen_length"] // 2).all()
