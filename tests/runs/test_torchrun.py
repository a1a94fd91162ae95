"""torchrun: problems sharded by rank, rows gathered on rank 0 (gloo on CPU), equal to one process's."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

from runs_helpers import FAST, cli_env, read_samples, tiny_config, one_thread  # noqa: F401  (autouse fixture)
from fastdllm.runs import execute


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, tmp_path, *overrides: str, paths: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "fastdllm.cli", "run", *FAST, "tracking.mode=disabled",
           f"output_dir={tmp_path / 'dist'}", "task.batch_size=2", "dist_timeout_s=120", *overrides]
    return subprocess.run(cmd, cwd=tmp_path, env=cli_env(PATHS=paths), capture_output=True, text=True, timeout=300)


def single(tmp_path, *overrides: str):
    run_dir = execute(tiny_config(tmp_path, *overrides))
    return run_dir, read_samples(run_dir)


def test_two_ranks_equal_one_process_sample_by_sample(tmp_path):
    proc = torchrun(2, tmp_path, "task.limit=5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir, want = single(tmp_path, "task.limit=5")
    dist_dir = tmp_path / "dist" / run_dir.name
    got = read_samples(dist_dir)
    assert [r["index"] for r in got] == list(range(5))  # the task's order, not rank order
    assert got == want  # every key of every row: prompt, output, target, correct, nfe, tpf, ...
    summary = json.loads((dist_dir / "summary.json").read_text())
    one = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and one["world_size"] == 1
    for key in ("n", "accuracy", "nfe_mean", "tpf_canvas", "tpf_answer", "answer_tokens_mean"):
        assert summary[key] == pytest.approx(one[key]), key


@pytest.mark.slow
def test_world_size_larger_than_the_data_finishes_cleanly(tmp_path):
    proc = torchrun(3, tmp_path, "task.limit=2")  # rank 2 gets no problem
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir, want = single(tmp_path, "task.limit=2")
    assert read_samples(tmp_path / "dist" / run_dir.name) == want
    assert json.loads((tmp_path / "dist" / run_dir.name / "summary.json").read_text())["world_size"] == 3


@pytest.mark.slow
def test_a_failing_rank_ends_the_run_with_its_rank_and_error(tmp_path):
    (tmp_path / "rank_one_fails.py").write_text(textwrap.dedent('''
        import os
        from fastdllm.core.policy import UnmaskPolicy, at_least_one, unmask_policies

        @unmask_policies.register("rank-one-fails")
        class RankOneFails(UnmaskPolicy):
            """Threshold 0.9, but raises on rank 1 (a stand-in for an out-of-memory or a bad batch)."""

            class Config(UnmaskPolicy.Config):
                pass

            def select(self, proposal, step):
                if os.environ.get("RANK") == "1":
                    raise RuntimeError("planted failure on this rank")
                return at_least_one(proposal.confidence >= 0.9, proposal)
    '''))
    proc = torchrun(2, tmp_path, "task.limit=4", "plugins=[rank_one_fails]", "decode.unmask=rank-one-fails",
                    paths=str(tmp_path))
    assert proc.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: planted failure on this rank" in proc.stderr
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").rglob("samples.jsonl"))
