"""Files shipped inside the package: the tiny trained model (HF-format folder)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent
TINY_MODEL = ASSETS / "tiny-llada"


def tiny_model_path() -> Path:
    if not (TINY_MODEL / "config.json").exists():
        raise FileNotFoundError(f"the shipped tiny model is missing at {TINY_MODEL}; reinstall fastdllm")
    return TINY_MODEL


def default_decode_options(folder) -> dict:
    """``gen_length``/``block_length`` recommended beside a checkpoint (``fastdllm.json``, read by the loader's
    ``read_decode_defaults``), else the ``DecodeConfig`` defaults."""
    from fastdllm.core.config import DecodeConfig
    from fastdllm.models.checkpoint import read_decode_defaults

    defaults = {k: DecodeConfig.model_fields[k].default for k in ("gen_length", "block_length")}
    return {**defaults, **read_decode_defaults(Path(str(folder)))}
