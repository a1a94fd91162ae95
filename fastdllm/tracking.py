"""Weights & Biases tracking (the only module that imports wandb).

Runs are real W&B runs; with no API key (``WANDB_API_KEY`` unset and no login) they run in
offline mode and can be synced later with ``wandb sync <dir>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def wandb_mode(requested: str | None = None) -> str:
    """``online`` when a key is configured, else ``offline`` (or ``requested`` / ``WANDB_MODE``)."""
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


def start_run(*, project: str, config: dict[str, Any], name: str | None = None, job_type: str | None = None,
              directory: str | Path = "runs", mode: str | None = None, tags: list[str] | None = None):
    """Start a W&B run; raises ImportError with the install command if wandb is missing."""
    try:
        import wandb
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("experiment tracking needs wandb: pip install 'fastdllm[track]'") from err
    Path(directory).mkdir(parents=True, exist_ok=True)
    return wandb.init(project=project, name=name, job_type=job_type, config=config, dir=str(directory),
                      mode=wandb_mode(mode), tags=tags, reinit="finish_previous")


def log_table(run, key: str, rows: list[dict[str, Any]]) -> None:
    """Log a list of same-keyed dicts as a W&B table."""
    import wandb

    if not rows:
        return
    columns = list(rows[0])
    run.log({key: wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])})
