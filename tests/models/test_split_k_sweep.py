"""experiments/split_k_sweep.py on the CPU at tiny shapes, through Triton's interpreter: every configuration of
every (shape, rows) checked against ``F.linear`` and timed beside the default and cuBLASLt paths, the best one
named, the arrival counters left zero; the compile shares split the (shape, configuration) pairs between them.
The configuration grid itself is checked at the full shapes (no kernel runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from checkpoint_helpers import experiment_script
from triton_helpers import ROOT

pytest.importorskip("triton")


def _sweep(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "split_k_sweep.py"), "--small", *args], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_sweep_checks_and_times_every_configuration(tmp_path):
    _sweep("--rows", "5,40", "--shapes", "o_proj,down", "--out", str(tmp_path / "sweep.json"))
    out = json.loads((tmp_path / "sweep.json").read_text())
    sweep = experiment_script("split_k_sweep")
    configs = [str(list(c)) for c in sweep.configs(5, 32, 64, small=True)]
    assert [(r["gemm"], r["rows"]) for r in out["gemm"]] == [("o_proj", 5), ("o_proj", 40), ("down", 5), ("down", 40)]
    for row in out["gemm"]:
        assert set(row["us"]) == {"default", "cublaslt", *configs} and not row["failed"]
        assert set(row["rel_error"]) == set(configs) and max(row["rel_error"].values()) < 1e-5
        ours = {c: t for c, t in row["us"].items() if c in configs}
        assert row["best"] == min(ours, key=ours.get) and row["best_us"] == ours[row["best"]]
    assert out["counters_left"] == 0


def test_the_compile_shares_cover_every_pair_once():
    shares = [json.loads(_sweep("--rows", "5,40", "--compile-only", f"{i}/2").stdout.strip().splitlines()[-1])
              for i in range(2)]
    assert [s["pairs"] for s in shares] == [4 * 3] * 2  # four shapes × three configurations, each at its first rows
    assert [s["compiled"] for s in shares] == [6, 6] and not any(s["failed"] for s in shares)


def test_the_grid_fits_shared_memory_and_fills_the_gpu():
    sweep = experiment_script("split_k_sweep")
    for rows, (N, K) in [(256, (4096, 4096)), (97, (4608, 3584)), (160, (4096, 12288)), (257, (37888, 3584))]:
        grid = sweep.configs(rows, N, K)
        assert grid
        for bm, bn, bk, s, stages, warps in grid:
            assert (bm + bn) * bk * 2 * stages <= sweep.SHARED_MEMORY_BYTES and bm <= 2 * rows
            waves = -(-rows // bm) * -(-N // bn) * s / 132
            assert 0.7 <= waves and K // s >= 4 * bk, (rows, N, K, bm, bn, s)


def test_pick_takes_the_configurations_that_save_the_most_together(tmp_path):
    sweep = experiment_script("split_k_sweep")
    records = [{"gemm": "o", "rows": 96, "us": {"default": 10.0, "cublaslt": 9.0, "A": 6.0, "B": 7.0, "C": 11.0}},
               {"gemm": "o", "rows": 256, "us": {"default": 20.0, "cublaslt": 19.0, "A": 21.0, "B": 15.0, "C": 11.0}},
               {"gemm": "d", "rows": 96, "us": {"default": 5.0, "cublaslt": 5.0, "A": 9.0, "B": 6.0, "C": 6.0}}]
    picks = sweep.pick(records, 3)
    # C alone saves 9 (B 8, A 4); after C, A saves 4 (B 3); then B saves nothing and is not taken
    assert [p["config"] for p in picks] == ["C", "A"] and [p["total_us"] for p in picks] == [26.0, 22.0]
    assert picks[0]["wins"] == ["o 256"] and picks[1]["wins"] == ["o 96"]
    (tmp_path / "s.json").write_text(json.dumps({"gemm": records}))
    assert sweep.main(["--pick", "1", "--from", str(tmp_path / "s.json")])["picks"] == picks[:1]
