"""The fastdllm lm-eval model under torchrun (2 CPU processes, gloo): lm-eval shards the requests by rank and
gathers on rank 0; the merged result equals fastdllm.evaluation.evaluate sample by sample."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

import fastdllm  # noqa: E402
from fastdllm.assets import tiny_model_path  # noqa: E402
from fastdllm.evaluation import evaluate  # noqa: E402
from fastdllm.tasks import JsonlTask  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_equal_one_process_sample_by_sample(tmp_path, single_thread):
    limit = 5  # odd: rank 1 gets fewer requests, lm-eval pads it
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(HERE / "lm_eval_dist_script.py"), str(tmp_path / "out.json"), str(limit)]
    proc = subprocess.run(cmd, cwd=HERE.parent / "data", env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "out.json").read_text())

    task = JsonlTask(HERE.parent / "data" / "tiny_arithmetic.jsonl")
    model = fastdllm.load_model(tiny_model_path(), device="cpu")
    report = evaluate(model, task.problems[:limit], "arithmetic", batch_size=1, keep_rows=True, gen_length=64,
                      block_length=8, cache="dual", unmask={"name": "threshold", "threshold": 0.9})
    assert got["doc_ids"] == list(range(limit))
    assert got["outputs"] == [r["output"] for r in report.rows]
    assert got["accuracy"] == pytest.approx(report.accuracy)
    stats = got["stats"]
    assert stats["world_size"] == 2
    assert stats["n"] == limit + 1  # both ranks' sequences, with the one request lm-eval repeated on rank 1
