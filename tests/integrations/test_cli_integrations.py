"""CLI level: `fastdllm run` → `fastdllm plot`, `fastdllm generate --live` in a pseudo-terminal, `fastdllm lm-eval`."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastdllm.cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
FAST = ["threads=1", "device=cpu", "dtype=float32", "decode.gen_length=32", "decode.block_length=8",
        "tracking.mode=disabled", "task.limit=4", "task.batch_size=4"]


def cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_then_plot(tmp_path, capsys, single_thread):
    pytest.importorskip("matplotlib")
    for threshold in (0.7, 0.95):
        code, _, err = cli(["run", str(ROOT / "configs" / "tiny.yaml"), *FAST, f"output_dir={tmp_path / 'runs'}",
                            f"decode.unmask.threshold={threshold}"], capsys)
        assert code == 0, err
    runs = sorted(str(p) for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2
    code, out, err = cli(["plot", *runs, "--out", str(tmp_path / "png")], capsys)
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert {"pareto.png", "tpf_vs_threshold.png"} <= set(written)
    for name in written:
        assert name in out  # the CLI lists what it wrote
        assert (tmp_path / "png" / name).read_bytes()[:4] == b"\x89PNG"
    samples = [json.loads(line) for line in (Path(runs[0]) / "samples.jsonl").read_text().splitlines()]
    has_order = all("commit_forward" in s for s in samples)
    assert any(n.startswith("order_") for n in written) == has_order  # order maps exactly when the data is there


def test_plot_of_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    code, _, err = cli(["plot", str(tmp_path / "nope")], capsys)
    assert code == 2 and "nope" in err


def test_generate_live_in_a_pseudo_terminal():
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "120", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fastdllm.cli", "generate", "Ava has 5 coins. She finds 7 more. "
                             "How many coins now?", "--live", "--threads", "1", "--device", "cpu"],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    out = b"".join(chunks).decode()
    assert proc.wait(timeout=120) == 0, out[-2000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "\x1b[1A" in out or re.search(r"\x1b\[\d+A", out)  # redrawn in place
    assert "block 1/" in plain and "done · " in plain
    assert re.search(r"\d+ forwards \(\d+ refresh, \d+ cached\)", plain)
    assert "The answer is" in plain.split("done · ")[-1]


@pytest.mark.slow
def test_lm_eval_command_runs_the_local_task(tmp_path, capsys, monkeypatch, single_thread):
    """`fastdllm lm-eval` → lm-eval's own CLI (which indexes its ~15k built-in tasks first: 10-40 s)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.chdir(DATA)
    code, out, err = cli(["lm-eval", "--model", "fastdllm", "--model_args", "cache=dual,unmask=threshold,threshold=0.9",
                          "--tasks", "fastdllm_tiny_arithmetic", "--include_path", str(DATA), "--apply_chat_template",
                          "--limit", "4", "--batch_size", "4", "--device", "cpu", "--output_path", str(tmp_path)], capsys)
    assert code == 0, err[-3000:]
    assert "exact_match" in out and "fastdllm_tiny_arithmetic" in out
    assert re.search(r"fastdllm lm-eval model: 4 sequences, NFE [\d.]+/sequence, TPF [\d.]+", err)
    stats = json.loads((tmp_path / "fastdllm_decode_stats.json").read_text())
    assert len(stats) == 1 and stats[0]["n"] == 4 and stats[0]["nfe_mean"] > 0
    results = list(tmp_path.rglob("results_*.json"))
    assert len(results) == 1 and json.loads(results[0].read_text())["config"]["fastdllm"]["n"] == 4


@pytest.mark.slow
def test_lm_eval_unknown_task_passes_lm_evals_message(capsys):
    code, _, err = cli(["lm-eval", "--model", "fastdllm", "--tasks", "gsm8kk", "--device", "cpu"], capsys)
    assert code != 0
    assert "Tasks not found: gsm8kk" in err
