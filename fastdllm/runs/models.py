"""Model references in run configs and on the command line: a shipped name, a folder, or a Hub repo id.

Everything here is checked without loading weights, so a typo fails in milliseconds.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

from fastdllm.assets import ASSETS

#: Models shipped inside the package, selectable by name (``--model tiny-dream``).
SHIPPED_MODELS: dict[str, str] = {
    "tiny-llada": "LLaDA-architecture model (2.8 M parameters) trained on the arithmetic task",
    "tiny-dream": "Dream-architecture model (2.6 M parameters) trained on the arithmetic task",
}
#: The task a shipped model was trained on (what ``fastdllm generate`` with no prompt draws from).
DEFAULT_TASK = "arithmetic"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFoundError(FileNotFoundError):
    """A model reference that names no shipped model, no folder and no Hub repo id."""

    def __str__(self) -> str:
        return str(self.args[0])


def shipped_model_path(name: str) -> Path:
    path = ASSETS / name
    if not (path / "config.json").exists():
        raise ModelNotFoundError(f"the shipped model {name!r} is missing at {path}; reinstall fastdllm")
    return path


def resolve_model(reference: str | Path | None) -> str | Path:
    """The folder (a ``Path``) or Hub repo id (a ``str``) that ``load_model`` should open.

    ``None`` → the shipped ``tiny-llada``. Raises :class:`ModelNotFoundError` (one line, naming the value
    and the choices) for a path that does not exist or a name that is neither shipped nor ``owner/name``.
    """
    if reference is None:
        return shipped_model_path("tiny-llada")
    text = str(reference)
    if text in SHIPPED_MODELS:
        return shipped_model_path(text)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelNotFoundError(f"model {text!r} is a file; pass the checkpoint folder that holds config.json "
                                 "and the *.safetensors files")
    looks_local = text.startswith(("/", ".", "~")) or isinstance(reference, Path) or (
        "/" in text and str(path.parent) not in ("", ".") and path.parent.exists())
    if not looks_local and _REPO_ID.match(text):
        return text  # a Hub repo id: load_model downloads it (or finds it in the local HF cache)
    close = difflib.get_close_matches(text, list(SHIPPED_MODELS), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ModelNotFoundError(
        f"model {text!r} does not exist: it is not a folder, not a shipped model ({', '.join(SHIPPED_MODELS)}) "
        f"and not a Hub repo id (owner/name).{hint}")


def stored_decode_settings(folder: str | Path) -> dict[str, Any]:
    """The ``decode`` section of a local checkpoint's ``fastdllm.json`` ({} for a Hub id or none stored),
    read and checked by the loader's own reader."""
    from fastdllm.models.checkpoint import read_decode_defaults

    return read_decode_defaults(Path(str(folder)))


def model_task(folder: str | Path) -> str:
    """The task a checkpoint answers: ``fastdllm.json``'s ``"task"``, else the shipped models' task."""
    path = Path(str(folder)) / "fastdllm.json"
    if path.is_file():
        task = json.loads(path.read_text()).get("task")
        if isinstance(task, str) and task:
            return task
    return DEFAULT_TASK


def short_model_name(reference: str | Path | None) -> str:
    text = str(reference or "tiny-llada").rstrip("/")
    return text if text in SHIPPED_MODELS else Path(text).name or text
