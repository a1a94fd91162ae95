"""Files shipped inside the package: the tiny trained model (HF-format folder)."""

from __future__ import annotations

import json
from pathlib import Path

ASSETS = Path(__file__).parent
TINY_MODEL = ASSETS / "tiny-llada"


def tiny_model_path() -> Path:
    if not (TINY_MODEL / "config.json").exists():
        raise FileNotFoundError(f"the shipped tiny model is missing at {TINY_MODEL}; reinstall fastdllm")
    return TINY_MODEL


def default_decode_options(folder) -> dict:
    """Recommended ``gen_length``/``block_length`` stored beside a checkpoint (``fastdllm.json``), if any."""
    path = Path(str(folder)) / "fastdllm.json"
    return json.loads(path.read_text()).get("decode", {}) if path.exists() else {}
