"""Hugging Face checkpoint folders: ``load_model`` (config.json, sharded safetensors, tokenizer) and
``save_checkpoint`` (the same layout, under the family's own key names).

The loader builds the network on the ``meta`` device, materialises it once on the target device and
dtype, and streams the weights shard by shard with ``safetensors.safe_open``: host memory holds one
tensor at a time beyond the model itself. Every problem with a folder (missing shard, missing or
unexpected key, shape mismatch, unknown family) is reported before any weight is read.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fastdllm.assets import ASSETS
from fastdllm.models.base import DiffusionLM, model_adapters

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
DECODE_FILE = "fastdllm.json"  # {"decode": {...}}: the checkpoint's stored decode settings
#: What ``snapshot_download`` fetches: configs, weights, tokenizer files, chat templates (no code).
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer.model"]
#: Checkpoint keys that are derived buffers, not weights (old Llama-style exports carry them).
IGNORED_KEYS = re.compile(r".*rotary_emb\.inv_freq$")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def load_model(path_or_repo_id: str | Path, *, dtype: torch.dtype | str | None = None,
               device: torch.device | str | None = None, trust_remote_code: bool = False) -> DiffusionLM:
    """Load a LLaDA or Dream checkpoint folder (or Hub repo id) as a ready-to-decode ``DiffusionLM``.

    ``dtype``: default the config's ``torch_dtype``, else float32 on CPU and bfloat16 on CUDA.
    ``device``: default CUDA when available, else CPU. The tokenizer (``model.tokenizer``) is loaded
    when the folder has tokenizer files, else it is ``None`` and the text APIs say what is missing.
    ``model.decode_defaults`` holds the folder's stored decode settings (``fastdllm.json``), which
    ``generate``/``DiffusionDecoder`` use for every option the caller does not pass.
    """
    folder = resolve_folder(path_or_repo_id, trust_remote_code)
    hf_config = read_json(folder / "config.json", "config.json of the checkpoint")
    cls = adapter_for(hf_config, folder)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, hf_config, device)
    with torch.device("meta"):
        model = cls(hf_config)  # no memory: shapes only
    key_map = cls.hf_key_map(model.arch.n_layers)  # checkpoint key -> state_dict key
    files = plan_shards(folder, model, key_map)  # shard file -> its keys, all checked
    model.to(dtype=dtype).to_empty(device=device)  # one allocation, on the target device and dtype
    model.net.reset_rope()  # the non-persistent fp32 RoPE tables, uninitialised by to_empty
    params = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for file, keys in files.items():
            with open_shard(file) as shard:
                for key in keys:
                    params[key_map[key]].copy_(shard.get_tensor(key))  # one tensor at a time on the host
    gen = folder / "generation_config.json"
    if gen.exists():  # adds end tokens; supplies mask/pad ids that config.json does not set
        generation = read_json(gen, "generation_config.json")
        eos = generation.get("eos_token_id")
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        model.end_token_ids = tuple(dict.fromkeys([*model.end_token_ids, *eos]))
        for field in ("mask_token_id", "pad_token_id"):
            if hf_config.get(field) is None and generation.get(field) is not None:
                setattr(model, field, int(generation[field]))
    model.tokenizer = load_tokenizer(folder, trust_remote_code)
    model.decode_defaults = read_decode_defaults(folder)
    return model.eval()


def read_decode_defaults(folder: Path) -> dict[str, Any]:
    """The ``"decode"`` section of the folder's ``fastdllm.json`` (settings the checkpoint was trained or tuned
    for, e.g. gen_length / block_length), ``{}`` without one; its keys must be ``DecodeConfig`` options."""
    from fastdllm.core.config import DecodeConfig

    path = folder / DECODE_FILE
    if not path.exists():
        return {}
    decode = read_json(path, DECODE_FILE).get("decode", {})
    if not isinstance(decode, dict):
        raise ValueError(f"{path}: 'decode' must be an object of DecodeConfig options, got {decode!r}")
    unknown = sorted(set(decode) - set(DecodeConfig.model_fields))
    if unknown:
        raise ValueError(f"{path}: unknown decode options {unknown}; valid: {', '.join(DecodeConfig.model_fields)}")
    return dict(decode)


# ---- where the folder is, which family it holds ------------------------------------------------
def _looks_like_path(text: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if text.startswith(("/", ".", "~")) or "\\" in text or ("/" in text and Path(text).parent.exists()):
        return True
    try:
        validate_repo_id(text)
    except HFValidationError:
        return True
    return False


def resolve_folder(path_or_repo_id: str | Path, trust_remote_code: bool = False) -> Path:
    """A local checkpoint folder; a shipped model's name (``tiny-llada``, ``tiny-dream``: a folder of
    ``fastdllm/assets``); a Hub repo id (``owner/name``) is downloaded with ``snapshot_download``."""
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        return path
    shipped = ASSETS / str(path_or_repo_id)
    if isinstance(path_or_repo_id, str) and "/" not in path_or_repo_id and (shipped / "config.json").exists():
        return shipped
    if path.exists():
        raise NotADirectoryError(f"{str(path_or_repo_id)!r} is a file; pass the checkpoint folder that holds "
                                 "config.json and the *.safetensors files")
    text = str(path_or_repo_id)
    if isinstance(path_or_repo_id, Path) or _looks_like_path(text):
        raise FileNotFoundError(f"checkpoint folder {text!r} does not exist; pass a folder holding config.json and "
                                "*.safetensors, or a Hugging Face repo id such as 'GSAI-ML/LLaDA-8B-Instruct'")
    import huggingface_hub

    patterns = SNAPSHOT_PATTERNS + (["*.py"] if trust_remote_code else [])
    try:
        return Path(huggingface_hub.snapshot_download(text, allow_patterns=patterns))
    except Exception as err:  # offline, unknown repo, gated repo, ...
        raise FileNotFoundError(f"{text!r} is not a local folder, and downloading it from the Hugging Face Hub "
                                f"failed ({type(err).__name__}: {err}); check the path or the repo id") from err


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: a checkpoint folder needs the {what}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-download or rewrite the {what}") from err


def _supported() -> str:
    return ", ".join(f"{name} (model_type {', '.join(repr(t) for t in dict.fromkeys([name, *cls.model_types]))}"
                     + (f" or architectures {list(cls.architectures)}" if cls.architectures else "") + ")"
                     for name, cls in model_adapters)


def adapter_for(hf_config: dict[str, Any], folder: Path | str = "the folder") -> type[DiffusionLM]:
    """The registered family whose ``model_type`` (case-insensitive) matches, else the first whose declared
    ``architectures`` contain an entry of the config's (``DiffusionLM.matches``)."""
    model_type = str(hf_config.get("model_type") or "").lower()
    by_type = [cls for _, cls in model_adapters if model_type and cls.matches({"model_type": model_type})]
    by_arch = [cls for _, cls in model_adapters if cls.matches({"architectures": hf_config.get("architectures")})]
    if by_type or by_arch:
        return (by_type or by_arch)[0]
    found = f"model_type {hf_config['model_type']!r}" if model_type else "no model_type"
    raise ValueError(f"config.json in {folder} has {found} (architectures {hf_config.get('architectures')}), "
                     f"which is not a supported family. Supported: {_supported()}")


# ---- device and dtype -------------------------------------------------------------------------
def resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
        torch.empty(1, device=device)
    except Exception as err:
        raise ValueError(f"device {str(device)!r} cannot be used here ({err}); pass device='cpu' or an "
                         "available accelerator, or None for the default") from err
    return device


def resolve_dtype(dtype: torch.dtype | str | None, hf_config: dict[str, Any], device: torch.device) -> torch.dtype:
    """The requested dtype, else the config's ``torch_dtype``/``dtype``, else fp32 on CPU and bf16 on CUDA;
    checked with a tiny matmul and attention on ``device``."""
    if dtype is None or dtype == "auto":
        dtype = hf_config.get("torch_dtype") or hf_config.get("dtype")
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not a floating dtype this loader knows; use one of {sorted(DTYPES)}")
        dtype = DTYPES[name]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype {dtype!r} is not a floating-point torch dtype; use torch.float32, torch.bfloat16 "
                         "or torch.float16")
    try:
        a = torch.ones(1, 1, 2, 8, dtype=dtype, device=device)
        torch.nn.functional.scaled_dot_product_attention(a, a, a)
        torch.nn.functional.linear(a, a[0, 0])
    except Exception as err:
        raise ValueError(f"dtype {dtype} cannot run on {device} ({type(err).__name__}: {err}); use torch.float32 on "
                         "CPU or torch.bfloat16 on CUDA") from err
    return dtype


# ---- weights ------------------------------------------------------------------------------------
def _named(items: list, what: str) -> str:
    items = sorted(items)
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return f"{len(items)} {what}: {', '.join(items[:5])}{more}"


def open_shard(file: Path):
    """``safe_open(file)``; a truncated or corrupt file raises a ``ValueError`` naming it and the fix."""
    try:
        return safe_open(file, framework="pt", device="cpu")
    except Exception as err:  # safetensors' SafetensorError: header too small, file not fully covered, ...
        raise ValueError(f"{file} is not a readable .safetensors file ({err}): it is truncated or corrupt; "
                         "re-download it, or re-save the checkpoint (fastdllm.save_checkpoint)") from None


def plan_shards(folder: Path, model: DiffusionLM, key_map: dict[str, str]) -> dict[Path, list[str]]:
    """Shard file → the checkpoint keys to read from it, after checking (from the headers only) that every
    file exists and every expected key is present once, with the model's shape, and nothing else is."""
    ours = set(model.state_dict())
    if set(key_map.values()) != ours:  # an adapter bug, not a checkpoint problem
        raise RuntimeError(f"{model.name}.hf_key_map does not cover the network: "
                           f"{sorted(ours ^ set(key_map.values()))[:5]}")
    if (folder / INDEX_FILE).exists():
        weight_map = read_json(folder / INDEX_FILE, INDEX_FILE).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{folder / INDEX_FILE} has no 'weight_map' dict; rewrite the index")
        names = list(dict.fromkeys(weight_map.values()))
        lost = [n for n in names if not (folder / n).exists()]
        if lost:
            raise FileNotFoundError(f"{folder}: the index {INDEX_FILE} names shard files that are missing: "
                                    f"{', '.join(lost)}; re-download them")
    elif (folder / SINGLE_FILE).exists():
        names = [SINGLE_FILE]
    else:
        raise FileNotFoundError(f"{folder} has no weights: expected {INDEX_FILE} with its shards or {SINGLE_FILE}")
    shapes, files = {}, {folder / n: [] for n in names}
    for file, keys in files.items():
        with open_shard(file) as shard:
            for key in shard.keys():
                if IGNORED_KEYS.match(key):
                    continue
                if key in shapes:
                    raise ValueError(f"{folder}: key {key!r} is stored in more than one shard (again in {file.name})")
                shapes[key] = tuple(shard.get_slice(key).get_shape())
                keys.append(key)
    missing, unexpected = set(key_map) - set(shapes), set(shapes) - set(key_map)
    problems = ([_named(missing, "missing keys")] if missing else []) + (
        [_named(unexpected, "unexpected keys")] if unexpected else [])
    if problems:
        raise ValueError(f"checkpoint {folder} does not match the {model.name} network built from its config.json: "
                         f"{'; '.join(problems)}. Check that config.json belongs to these weights")
    params = model.state_dict()
    bad = [f"{k} (checkpoint {list(s)}, model {list(params[key_map[k]].shape)})"
           for k, s in shapes.items() if s != tuple(params[key_map[k]].shape)]
    if bad:
        raise ValueError(f"checkpoint {folder}: {_named(bad, 'shape mismatches')}. config.json does not describe "
                         "these weights (check hidden size, heads, layers, vocab_size)")
    return {file: keys for file, keys in files.items() if keys}


# ---- tokenizer ----------------------------------------------------------------------------------
def load_tokenizer(folder: Path, trust_remote_code: bool = False):
    """``AutoTokenizer.from_pretrained(folder)``, or ``None`` when the folder has no tokenizer files.

    A tokenizer config that names custom code (Dream's ``DreamTokenizer``, a Qwen2 byte-level BPE) falls
    back, without running that code, to transformers' ``Qwen2Tokenizer`` over vocab.json + merges.txt
    (or the generic fast tokenizer over tokenizer.json).
    """
    if not any((folder / name).exists() for name in TOKENIZER_FILES):
        return None
    import transformers

    try:  # config.json is ours to read: an empty config keeps transformers from parsing (and warning on) it
        return transformers.AutoTokenizer.from_pretrained(str(folder), config=transformers.PretrainedConfig(),
                                                          trust_remote_code=trust_remote_code)
    except Exception as err:
        fallback = (transformers.Qwen2Tokenizer if (folder / "vocab.json").exists() and
                    (folder / "merges.txt").exists() else transformers.PreTrainedTokenizerFast)
        try:
            tokenizer = fallback.from_pretrained(str(folder))
        except Exception:
            tokenizer = None
        if tokenizer is None:
            raise RuntimeError(f"the tokenizer files in {folder} could not be loaded ({type(err).__name__}: {err}). "
                               "If the tokenizer needs custom code, pass trust_remote_code=True; to load the model "
                               "without a tokenizer, remove tokenizer.json and tokenizer_config.json") from err
        warnings.warn(f"AutoTokenizer could not load {folder} ({type(err).__name__}); loaded it with "
                      f"transformers.{fallback.__name__} instead (pass trust_remote_code=True to run the "
                      "checkpoint's own tokenizer code)", stacklevel=3)
        return tokenizer


# ---- writer -----------------------------------------------------------------------------------
def _bytes(limit: int | str | None) -> int:
    if limit is None:
        return 5_000_000_000  # transformers' classic default, "5GB"
    if isinstance(limit, int):
        return limit
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B)?\s*", str(limit), re.IGNORECASE)
    if not m:
        raise ValueError(f"max_shard_bytes={limit!r}: use an int or a size such as '200MB' or '5GB'")
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[unit]
    return int(float(m.group(1)) * scale)


def _own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor that owns its storage: fused projections (``fuse_projections``) make parameters
    views into one shared tensor, and safetensors refuses tensors that share storage."""
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        return tensor.clone(memory_format=torch.contiguous_format)
    return tensor.contiguous()


def save_checkpoint(model: DiffusionLM, folder: str | Path, *, tokenizer=None, max_shard_bytes: int | str | None = None,
                    dtype: torch.dtype | str | None = None) -> Path:
    """Write ``model`` as an HF checkpoint folder that ``load_model`` (and the family's own code) reads.

    config.json (``model.hf_config`` + ``torch_dtype``), generation_config.json (end/pad/mask ids), the
    weights under the family's checkpoint key names, in ``model-0000i-of-0000N.safetensors`` shards of at
    most ``max_shard_bytes`` (default 5 GB) with ``model.safetensors.index.json``, or one
    ``model.safetensors``; and the tokenizer (``tokenizer``, default ``model.tokenizer``; ``False`` skips it).
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    dtype = model.dtype if dtype is None else resolve_dtype(dtype, {}, torch.device("cpu"))
    limit = _bytes(max_shard_bytes)
    theirs = {ours: key for key, ours in type(model).hf_key_map(model.arch.n_layers).items()}
    state = model.state_dict()
    if set(state) != set(theirs):
        raise RuntimeError(f"{model.name}.hf_key_map does not cover the network: "
                           f"{sorted(set(state) ^ set(theirs))[:5]}")
    shards: list[list[str]] = [[]]
    size = total = 0
    for name, tensor in state.items():  # greedy: a tensor larger than the limit gets a shard of its own
        nbytes = tensor.numel() * dtype.itemsize
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
        total += nbytes
    for old in [*folder.glob("model-*-of-*.safetensors"), folder / SINGLE_FILE, folder / INDEX_FILE]:
        old.unlink(missing_ok=True)  # stale weights from an earlier save would shadow or mix with these
    n = len(shards)
    weight_map = {}
    for i, names in enumerate(shards, 1):
        file = SINGLE_FILE if n == 1 else f"model-{i:05d}-of-{n:05d}.safetensors"
        tensors = {theirs[k]: _own_storage(state[k].detach().to("cpu", dtype)) for k in names}
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, file))
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    config = {"model_type": model.name, **model.hf_config, "torch_dtype": str(dtype).removeprefix("torch.")}
    config.pop("dtype", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"eos_token_id": list(model.end_token_ids), "pad_token_id": model.pad_token_id,
                  "mask_token_id": model.mask_token_id}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if getattr(model, "decode_defaults", None):  # keep the stored decode settings with the weights
        stored = json.loads((folder / DECODE_FILE).read_text()) if (folder / DECODE_FILE).exists() else {}
        (folder / DECODE_FILE).write_text(json.dumps({**stored, "decode": model.decode_defaults}, indent=2) + "\n")
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    if tokenizer is not None and tokenizer is not False:
        tokenizer.save_pretrained(str(folder))
    return folder
