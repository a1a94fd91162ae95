"""Weights & Biases tracking (the only module that imports wandb).

Runs are real W&B runs; with no API key (``WANDB_API_KEY`` unset and no login) they run in
offline mode and can be synced later with ``wandb sync <dir>``. When wandb is not installed or
cannot start, :func:`open_run` warns and returns ``None``: the experiment goes on untracked.
"""

from __future__ import annotations

import json
import os
import warnings
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
              directory: str | Path = "runs", mode: str | None = None, tags: list[str] | None = None,
              entity: str | None = None, group: str | None = None):
    """Start a W&B run; raises ImportError with the install command if wandb is missing."""
    try:
        import wandb
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("experiment tracking needs wandb: pip install 'fastdllm[track]'") from err
    Path(directory).mkdir(parents=True, exist_ok=True)
    return wandb.init(project=project, name=name, job_type=job_type, config=config, dir=str(directory),
                      mode=wandb_mode(mode), tags=tags, entity=entity, group=group, reinit="finish_previous")


def open_run(**kwargs: Any):
    """:func:`start_run`, or ``None`` with a warning when W&B is disabled, missing or failing to start."""
    if wandb_mode(kwargs.get("mode")) == "disabled":
        return None
    try:
        return start_run(**kwargs)
    except ImportError as err:
        warnings.warn(f"W&B tracking skipped: {err}; the run goes on (results are still written to the run folder)",
                      stacklevel=2)
    except Exception as err:  # noqa: BLE001 - any W&B failure (network, auth, service) must not stop the run
        warnings.warn(f"W&B tracking skipped: wandb.init failed ({type(err).__name__}: {err}); the run goes on "
                      "(results are still written to the run folder)", stacklevel=2)
    return None


def log_table(run, key: str, rows: list[dict[str, Any]]) -> None:
    """Log a list of dicts as a W&B table (columns: the union of keys, in first-seen order; lists as JSON)."""
    import wandb

    if not rows:
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))

    def cell(value: Any) -> Any:
        return json.dumps(value) if isinstance(value, (list, dict)) else value

    run.log({key: wandb.Table(columns=columns, data=[[cell(r.get(c)) for c in columns] for r in rows])})


def finish(run, summary: dict[str, Any] | None = None, exit_code: int = 0) -> None:
    """Write the summary's scalars and close the run; ``exit_code != 0`` marks it failed in W&B."""
    if run is None:
        return
    if summary:
        run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
    run.finish(exit_code=exit_code)
