"""Helpers for the run-workflow tests: small configs of the shipped tiny model (seconds on CPU).

Not a conftest.py: tests elsewhere import the top-level conftest by name, which a second one would shadow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastdllm.runs import load_run_config

REPO = Path(__file__).resolve().parents[2]
FAST = ["threads=1", "device=cpu", "dtype=float32", "decode.gen_length=32", "decode.block_length=8"]


def tiny_config(tmp_path: Path, *overrides: str, tracking: str = "disabled"):
    """A validated RunConfig: tiny-llada, 32 generated tokens, output under ``tmp_path``."""
    return load_run_config(None, [*FAST, f"output_dir={tmp_path / 'runs'}", f"tracking.mode={tracking}",
                                  "task.limit=4", "task.batch_size=2", *overrides])


def read_samples(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *extra.pop("PATHS", "").split(os.pathsep)]),
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}
    env.update(extra)
    return env


def run_cli_process(args: list[str], cwd: Path, timeout: int = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastdllm.cli", *args], cwd=cwd, env=cli_env(**env),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def one_thread():
    """Restores torch's thread count after a test (runs set ``threads=1``); import it into a test module."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
