"""experiments/split_k_gemm.py (the split-K GEMM tried for prefix windows, docs/speed.md round 13) and its sweep.

The kernel is ``F.linear`` through Triton's interpreter (cases where a slip would show; fp16, since the
interpreter's bf16 products are wrong), refuses bad input, compiles for sm_90 within shared memory, and on a GPU
gives the same bits eagerly, again and from a CUDA graph. ``split_k_sweep.py`` on the CPU at tiny shapes: every
configuration of every (shape, rows) checked against ``F.linear`` and timed beside the default and cuBLASLt
paths, the best one named, the arrival counters left zero; the compile shares split the (shape, configuration)
pairs between them; the configuration grid is checked at the full shapes (no kernel runs); ``--pick``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from checkpoint_helpers import experiment_script
from triton_helpers import HOPPER_SHARED_BYTES, ROOT, compile_for_hopper, interpret

pytest.importorskip("triton")

HOPPER_CONFIGS = [  # (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages, num_warps): each kind of tile the sweep ran
    (64, 128, 128, 1, 4, 4), (64, 256, 64, 3, 4, 8), (128, 128, 128, 2, 3, 8), (128, 256, 64, 4, 4, 8),
    (256, 128, 64, 4, 3, 8), (128, 256, 128, 2, 2, 8)]


def _sweep(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "split_k_sweep.py"), "--small", *args], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_sweep_checks_and_times_every_configuration(tmp_path):
    _sweep("--rows", "5,40", "--shapes", "o_proj,down", "--rounds", "1", "--out", str(tmp_path / "sweep.json"))
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


SPLIT_K_CASES = [
    # rows, N, K, bias, dtype, config (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages, num_warps)
    (37, 48, 100, True, "float32", (16, 32, 32, 3, 2, 4)),  # K not whole steps; 3 asked, 2 slices of 64 run
    (70, 64, 128, False, "float32", (32, 16, 16, 4, 2, 4)),  # rows straddle three row tiles, 4 even slices
    (5, 40, 64, True, "float32", (16, 16, 16, 1, 2, 4)),  # one slice: written directly, no counter
    (20, 32, 96, True, "float16", (16, 16, 32, 2, 1, 4)),  # half precision, columns a multiple of the tile
    (1, 24, 64, False, "float32", (16, 16, 16, 8, 2, 4)),  # one row; 8 asked, 4 slices (K has 4 steps)
]


@pytest.mark.slow
def test_split_k_matmul_equals_linear():
    """The split-K GEMM is ``F.linear`` (fp32 reference) over the cases where a slip would show (rows, columns and
    K not multiples of the tiles, fewer slices than asked, one slice, bias or none) and in every configuration
    of ``HOPPER_CONFIGS`` (the sweep's kinds of tile, at a prefix window's shape scaled down); the same call twice
    gives the same bits, and every arrival counter is left zero."""
    out = interpret(f"""
        import json, torch
        import sys
        sys.path.insert(0, {str(ROOT / "experiments")!r})
        from fastdllm.kernels import _ARRIVALS
        from split_k_gemm import split_k_linear
        torch.manual_seed(0)
        cases = {SPLIT_K_CASES!r} + [(100, 256, 512, i % 2 == 0, "float16", c) for i, c in enumerate({HOPPER_CONFIGS!r})]
        results = []
        for M, N, K, bias, dtype, config in cases:
            dt = getattr(torch, dtype)
            x, w = torch.randn(3, M, K).to(dt)[1], torch.randn(N, K).to(dt)  # x: a view with an offset
            b = torch.randn(N).to(dt) if bias else None
            y = split_k_linear(x.view(1, M, K), w, b, config)
            want = torch.nn.functional.linear(x.float(), w.float(), None if b is None else b.float())
            again = split_k_linear(x.view(1, M, K), w, b, config)
            results.append([list(y.shape) == [1, M, N] and y.dtype == dt,
                            ((y[0].float() - want).abs().max() / want.abs().max()).item(), torch.equal(y, again)])
        print(json.dumps({{"results": results,
                          "counters_left": sum(int(t.count_nonzero()) for t in _ARRIVALS.values())}}))
        """)
    tolerance = {"float32": 1e-5, "float16": 2e-3}  # fp16, not bf16: the interpreter's bf16 products are wrong
    # (the few-row kernel's too); the GPU test runs bf16
    dtypes = [case[4] for case in SPLIT_K_CASES] + ["float16"] * len(HOPPER_CONFIGS)
    for (shape_ok, rel, same), dtype in zip(out["results"], dtypes, strict=True):
        assert shape_ok and same and rel < tolerance[dtype], (shape_ok, rel, same, dtype)
    assert out["counters_left"] == 0


def test_split_k_matmul_refuses_bad_input():
    split_k_linear = experiment_script("split_k_gemm").split_k_linear

    x, w = torch.randn(4, 32), torch.randn(16, 32)
    with pytest.raises(ValueError, match="powers of two"):
        split_k_linear(x, w, config=(48, 16, 16, 1, 2, 4))
    with pytest.raises(ValueError, match=r"\(BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K"):
        split_k_linear(x, w, config=(16, 16, 16, 1))
    with pytest.raises(ValueError, match="in x's dtype"):
        split_k_linear(x, w.half())
    with pytest.raises(ValueError, match="weight \\[N, K\\]"):
        split_k_linear(x, torch.randn(16, 31))
    with pytest.raises(ValueError, match="unit stride over K"):
        split_k_linear(x, torch.randn(32, 16).t())


@pytest.mark.parametrize("config", HOPPER_CONFIGS)
def test_split_k_configurations_compile_for_hopper_within_its_shared_memory(config):
    """Configurations of the sweep's kinds, compiled for sm_90 (no GPU needed) at LLaDA-8B's output projection
    (4096 × 4096, bf16): tensor-core dots, at most the shared memory an H100/H200 block may use, and the arrival
    counter exactly where K is split."""
    skm = experiment_script("split_k_gemm")
    block_m, block_n, block_k, split_k, stages, warps = config
    per, n_slices = skm.slices(4096, block_k, split_k)
    pointers = {"X": "*bf16", "W": "*bf16", "BIAS": "*bf16", "Y": "*bf16", "PART": "*fp32", "ARRIVED": "*i32"}
    constants = {"HAS_BIAS": False, "SPLIT_K": n_slices, "EVEN_K": True, "BLOCK_M": block_m, "BLOCK_N": block_n,
                 "BLOCK_K": block_k, "PRECISION": "tf32"}
    compiled = compile_for_hopper(skm._split_k_kernel, pointers, constants, num_stages=stages, num_warps=warps,
                                  divisible=("N", "K", "sx_m", "sw_n", "sy_m", "k_per_split"))  # as at 4096 × 4096
    ptx = compiled.asm["ptx"]
    assert compiled.metadata.shared <= HOPPER_SHARED_BYTES, config
    assert "wgmma" in ptx and ("atom" in ptx) == (n_slices > 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs the kernel on a GPU")
@pytest.mark.parametrize("rows, bias", [(97, True), (160, False), (528, True)])
def test_on_the_gpu_the_kernel_is_linear_eagerly_again_and_in_graphs(rows, bias):
    """In bf16 each of ``HOPPER_CONFIGS`` is ``F.linear`` in fp32 within bf16's rounding and gives the same bits
    eagerly, again, and replayed from a CUDA graph (the arrival counters left zero by each launch), at a prefix
    window's rows, Dream's 97 with a bias, and batch 16's 528."""
    import torch.nn.functional as F

    from fastdllm.kernels import _ARRIVALS

    split_k_linear = experiment_script("split_k_gemm").split_k_linear
    gen = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(1024, 2048, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02
    b = torch.randn(1024, device="cuda", dtype=torch.bfloat16, generator=gen) if bias else None
    x = torch.randn(rows, 2048, device="cuda", dtype=torch.bfloat16, generator=gen)
    ref = F.linear(x.float(), w.float(), None if b is None else b.float())
    for config in HOPPER_CONFIGS:
        y = split_k_linear(x, w, b, config)
        torch.testing.assert_close(y.float(), ref, atol=0.02, rtol=0.02)
        assert torch.equal(split_k_linear(x, w, b, config), y)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            replayed = split_k_linear(x, w, b, config)
        for _ in range(3):
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(replayed, y), config
    assert sum(int(t.count_nonzero()) for t in _ARRIVALS.values()) == 0
