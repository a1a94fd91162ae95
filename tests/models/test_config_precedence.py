"""Which file decides the special token ids: config.json's mask/pad ids win over generation_config.json's;
generation_config.json only fills in ids that config.json leaves out (and adds end tokens).

The folders are hand-written (real HF key names, not through ``save_checkpoint``), in tmp_path."""

from __future__ import annotations

import json

import pytest
from checkpoint_helpers import (FAMILIES, random_hf_weights, single_thread, tiny_config,  # noqa: F401
                                write_hf_folder)

import fastdllm

CONFIG_MASK, CONFIG_PAD = 63, 1
GENERATION_MASK, GENERATION_PAD = 60, 4


def folder_with(tmp_path, family: str, config_ids: dict, generation: dict | None):
    cfg = tiny_config(family)
    for key in ("mask_token_id", "pad_token_id"):
        cfg.pop(key, None)
    cfg.update(config_ids)
    folder = write_hf_folder(tmp_path / family, family, random_hf_weights(family, cfg), cfg, shards=1)
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder


@pytest.mark.parametrize("family", FAMILIES)
def test_config_json_ids_win_over_generation_config(tmp_path, family):
    folder = folder_with(tmp_path, family, {"mask_token_id": CONFIG_MASK, "pad_token_id": CONFIG_PAD},
                         {"mask_token_id": GENERATION_MASK, "pad_token_id": GENERATION_PAD, "eos_token_id": 1})
    model = fastdllm.load_model(folder, device="cpu")
    assert (model.mask_token_id, model.pad_token_id) == (CONFIG_MASK, CONFIG_PAD)


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_config_fills_ids_config_json_leaves_out(tmp_path, family):
    folder = folder_with(tmp_path, family, {},
                         {"mask_token_id": GENERATION_MASK, "pad_token_id": GENERATION_PAD, "eos_token_id": [1, 5]})
    model = fastdllm.load_model(folder, device="cpu")
    assert (model.mask_token_id, model.pad_token_id) == (GENERATION_MASK, GENERATION_PAD)
    assert 5 in model.end_token_ids and 1 in model.end_token_ids


@pytest.mark.parametrize("family", FAMILIES)
def test_one_id_from_each_file(tmp_path, family):
    """config.json sets the mask id only: the pad id comes from generation_config.json, the mask id does not."""
    folder = folder_with(tmp_path, family, {"mask_token_id": CONFIG_MASK},
                         {"mask_token_id": GENERATION_MASK, "pad_token_id": GENERATION_PAD})
    model = fastdllm.load_model(folder, device="cpu")
    assert (model.mask_token_id, model.pad_token_id) == (CONFIG_MASK, GENERATION_PAD)


@pytest.mark.parametrize("family", FAMILIES)
def test_decoding_uses_the_winning_mask_id(tmp_path, family):
    """The decoder treats config.json's id as the mask: a prompt containing it is refused."""
    folder = folder_with(tmp_path, family, {"mask_token_id": CONFIG_MASK, "pad_token_id": CONFIG_PAD},
                         {"mask_token_id": GENERATION_MASK, "pad_token_id": GENERATION_PAD})
    model = fastdllm.load_model(folder, device="cpu")
    with pytest.raises(ValueError, match=f"mask token id {CONFIG_MASK}"):
        fastdllm.generate(model, [[5, CONFIG_MASK]], gen_length=4, block_length=4)
