"""Runs researchers launch: one config per run (``RunConfig``), local sweeps, torchrun sharding.

``fastdllm run CONFIG.yaml key=value …`` → :func:`execute` → ``runs/<run name>/`` (config.yaml,
summary.json, samples.jsonl) and one W&B run.
"""

from fastdllm.runs.config import RunConfig, TaskConfig, TrackingConfig
from fastdllm.runs.loading import ConfigProblems, dump_yaml, load_run_config

__all__ = ["RunConfig", "TaskConfig", "TrackingConfig", "ConfigProblems", "dump_yaml", "load_run_config", "execute"]


def execute(config: RunConfig, **kwargs):
    """Run one config (see :func:`fastdllm.runs.runner.execute`)."""
    from fastdllm.runs.runner import execute as run

    return run(config, **kwargs)
