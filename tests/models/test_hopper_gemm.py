"""experiments/hopper_gemm.py (its host arithmetic: hopper_gemm_configs.py): the Gluon Hopper GEMM (TMA, wgmma,
split-K, optional loader warp) tried for prefix windows, docs/speed.md round 15.

Gluon has no interpreter, so on the CPU: the configuration checks and the launch arithmetic, the sweep's grid,
and (where Triton >= 3.6 is installed) the kernel compiled for sm_90 without a GPU: TMA loads, wgmma, the arrival
counter exactly where K is split, setmaxnreg exactly with the loader warp, within an H200 block's shared memory.
On a Hopper GPU: ``F.linear`` in fp32 within bf16's rounding at prefix-window shapes (rows not a multiple of the
tile, K not a multiple of the step, a bias, one row), the same bits eagerly, again and from a CUDA graph, and the
arrival counters left zero."""

from __future__ import annotations

import re

import pytest
import torch
from checkpoint_helpers import experiment_script
from triton_helpers import HOPPER_SHARED_BYTES

hg = experiment_script("hopper_gemm")
hc = experiment_script("hopper_gemm_configs")

CONFIGS = [  # (BW, BX, BK, SPLIT, STAGES, WS): each kind the sweep runs
    (64, 32, 64, 1, 6, 0), (64, 128, 128, 2, 4, 1), (128, 256, 64, 4, 4, 0), (128, 64, 128, 3, 4, 1),
    (128, 128, 64, 2, 4, 1), (64, 256, 64, 1, 4, 0), (64, 128, 64, 1, 6, 1)]


def test_bad_configurations_are_refused_with_the_rule_they_break():
    with pytest.raises(ValueError, match="BW in \\(64, 128\\)"):
        hc.check_config((96, 64, 64, 1, 4, 0))
    with pytest.raises(ValueError, match="BX a power of two"):
        hc.check_config((64, 48, 64, 1, 4, 0))
    with pytest.raises(ValueError, match="must be \\('BW'"):
        hc.check_config((64, 64, 64, 1))
    with pytest.raises(ValueError, match="exceed the 232448 bytes"):
        hc.check_config((128, 256, 128, 1, 3, 0))  # 3 × 96 KB stages
    with pytest.raises(ValueError, match="BW · 2 must be at most STAGES · BK"):
        hc.check_config((128, 128, 64, 1, 3, 0))  # the fp32 tile (64 KB) does not fit three 16 KB x stages
    assert hc.check_config([128, 128, 64, 1, 4, 0]) == (128, 128, 64, 1, 4, 0)
    # with slices the partials leave from the registers: no such rule, unless K is too short to split
    assert hc.check_config((128, 256, 64, 6, 3, 1)) == (128, 256, 64, 6, 3, 1)
    assert hc.plan_launch(8, 64, 4096, (128, 128, 64, 2, 3, 0))["slices"] == 2
    with pytest.raises(ValueError, match="with one slice"):
        hc.plan_launch(8, 64, 64, (128, 128, 64, 2, 3, 0))  # one K step: one slice runs


def test_the_launch_splits_k_into_whole_steps_and_covers_every_tile():
    launch = hc.plan_launch(224, 4096, 4096, (128, 128, 64, 3, 4, 0))
    # 64 steps of 64 in 3 slices: 22 steps each, the last slice 20; 32 weight tiles × 2 x tiles
    assert launch == {"grid": (32, 2, 3), "k_steps_per_slice": 22, "slices": 3, "num_warps": 8, "worker_warps": 0}
    # K = 200: 4 steps of 64 (the last partly past K, zero-filled); 8 slices asked, 4 run of one step each
    assert hc.plan_launch(1, 100, 200, (64, 32, 64, 8, 4, 1))["grid"] == (2, 1, 4)
    assert hc.plan_launch(257, 4608, 3584, (64, 256, 128, 2, 2, 0))["grid"] == (72, 2, 2)
    assert hc.plan_launch(97, 64, 64, (64, 128, 64, 1, 4, 1))["num_warps"] == 4


def test_the_sweep_grid_fits_shared_memory_and_fills_the_gpu():
    for rows, (N, K) in [(96, (4096, 4096)), (224, (4096, 12288)), (257, (37888, 3584)), (97, (4608, 3584))]:
        grid = hc.sweep_configs(rows, N, K)
        assert {c[5] for c in grid} == {0, 1} and {c[0] for c in grid} == {64, 128}
        for config in grid:
            bw, bx, bk, split, stages, ws = hc.check_config(config)
            assert (bx < 2 * rows or bx == 32) and bx * 8 >= rows, (rows, config)
            waves = hc.plan_launch(rows, N, K, config)["grid"]
            assert waves[0] * waves[1] * waves[2] >= 0.7 * 132 and K // split >= 4 * bk, (rows, config)


def test_without_gluon_the_kernel_says_what_it_needs(monkeypatch):
    monkeypatch.setattr(hg, "gl", None)
    with pytest.raises(RuntimeError, match="Triton >= 3.6"):
        hg.hopper_linear(torch.randn(4, 64), torch.randn(8, 64))


@pytest.mark.parametrize("config", CONFIGS)
def test_the_kernel_compiles_for_hopper_with_tma_and_wgmma(config):
    """Compiled for sm_90 at LLaDA-8B's output projection and 224 rows (no GPU needed): the operands come by TMA
    (``cp.async.bulk.tensor``) and meet in wgmma, the arrival counter's atomic is there exactly when K is split,
    the loader warp's register reallocation (``setmaxnreg``) exactly with WS, within the shared memory a block
    may use."""
    if hg.gl is None:
        pytest.skip("needs Triton >= 3.6 (Gluon)")
    compiled = hg.compile_for(224, 4096, 4096, config, bias=config[0] == 64)
    ptx = compiled.asm["ptx"]
    assert "cp.async.bulk.tensor" in ptx and "wgmma.mma_async" in ptx
    split = hc.plan_launch(224, 4096, 4096, config)["slices"] > 1
    # the arrival (an acquire-release add) and the counter's reset
    assert ("atom.global.gpu.acq_rel.add" in ptx) == split and ("atom.global.gpu.acq_rel.exch" in ptx) == split, config
    assert ("setmaxnreg" in ptx) == bool(config[5]), config
    assert compiled.metadata.shared <= HOPPER_SHARED_BYTES, config
    if split:  # the spread reduction's wait: a compare-and-swap that never matches, in a loop
        spread = hg.compile_for(224, 4096, 4096, config, spread=True).asm["ptx"]
        cas = re.compile(r"atom\.global\.\S*cas")
        assert not cas.search(ptx) and cas.search(spread), config


def _hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9 and hg.gl is not None


@pytest.mark.skipif(not _hopper(), reason="runs the kernel on a Hopper GPU")
@pytest.mark.parametrize("rows, N, K, bias", [(224, 4096, 1024, False), (97, 1000, 1000, True), (1, 512, 2048, True),
                                              (257, 768, 512, False)])
def test_on_the_gpu_the_kernel_is_linear_eagerly_again_and_in_graphs(rows, N, K, bias):
    """In bf16 each of ``CONFIGS`` is ``F.linear`` in fp32 within bf16's rounding and gives the same bits eagerly,
    again, and replayed from a CUDA graph, with the arrival counters left zero: at a window's 224 rows, Dream's 97
    with a bias and N, K not multiples of the tiles, one row, 257 rows (two x tiles of 256, one nearly empty)."""
    import torch.nn.functional as F

    from fastdllm.kernels import _ARRIVALS

    gen = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02
    b = torch.randn(N, device="cuda", dtype=torch.bfloat16, generator=gen) if bias else None
    x = torch.randn(rows, K, device="cuda", dtype=torch.bfloat16, generator=gen)
    ref = F.linear(x.float(), w.float(), None if b is None else b.float())
    processors = torch.cuda.get_device_properties(0).multi_processor_count
    spread_ran = 0
    for config in CONFIGS:
        y = hg.hopper_linear(x, w, b, config, reduce="last")
        torch.testing.assert_close(y.float(), ref, atol=0.02, rtol=0.02, msg=lambda m, c=config: f"{c}: {m}")
        launch = hc.plan_launch(rows, N, K, config)
        fits = launch["grid"][0] * launch["grid"][1] * launch["grid"][2] <= processors
        reduces = ["last"] + (["spread"] if fits and launch["slices"] > 1 else [])
        spread_ran += len(reduces) - 1
        # the spread reduction sums the same partials in the same order
        assert torch.equal(hg.hopper_linear(x, w, b, config, reduce=reduces[-1]), y), config
        for reduce in reduces:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                replayed = hg.hopper_linear(x, w, b, config, reduce=reduce)
            for _ in range(3):
                graph.replay()
                torch.cuda.synchronize()
                assert torch.equal(replayed, y), (config, reduce)
    assert sum(int(t.count_nonzero()) for t in _ARRIVALS.values()) == 0
    assert spread_ran >= 1, (rows, N, K)  # at these widths the 4-slice 128 × 256 tiles fit the SMs
    with pytest.raises(ValueError, match="at most one program per SM"):
        hg.hopper_linear(x, torch.zeros(300 * 128, K, device="cuda", dtype=torch.bfloat16), None,
                         (128, 256, 64, 2, 4, 0), reduce="spread")


def test_the_load_probe_compiles_without_the_mmas():
    """``mma=False`` (``hopper_gemm_probe.py``'s load path) keeps the TMA loads and drops every wgmma; the
    epilogue probes keep the MMAs and leave the arrival counters alone."""
    if hg.gl is None:
        pytest.skip("needs Triton >= 3.6 (Gluon)")
    for config in [(64, 64, 128, 1, 6, 1), (64, 128, 64, 2, 6, 0)]:
        ptx = hg.compile_for(128, 4096, 4096, config, mma=False).asm["ptx"]
        assert "cp.async.bulk.tensor" in ptx and "wgmma.mma_async" not in ptx, config
        # the epilogue probes keep the MMAs; neither touches the arrival counters
        for epilogue in (0, 1):
            ptx = hg.compile_for(128, 4096, 4096, config, epilogue=epilogue, spread=True).asm["ptx"]
            assert "wgmma.mma_async" in ptx and "atom" not in ptx, (config, epilogue)


def test_the_probe_fits_fixed_and_per_step_costs():
    probe = experiment_script("hopper_gemm_probe")
    ks = [512, 1024, 4096, 8192]
    fit = probe.fit_line(ks, [3.0 + 2.5 * k / 1024 for k in ks])  # 3 µs once, 2.5 µs per 1024 of K
    assert fit["fixed_us"] == pytest.approx(3.0) and fit["us_per_1k_k"] == pytest.approx(2.5)
    assert fit["rms_us"] == pytest.approx(0.0, abs=1e-9)
    # the line through (1024, 4.83), (2048, 6.33), (3072, 7.83); residuals -1/6, +1/3, -1/6
    noisy = probe.fit_line([1024, 2048, 3072], [5.0, 6.0, 8.0])
    assert noisy["us_per_1k_k"] == pytest.approx(1.5) and noisy["fixed_us"] == pytest.approx(10 / 3)
    assert noisy["rms_us"] == pytest.approx((1 / 18) ** 0.5)
    with pytest.raises(ValueError, match="two or more distinct K"):
        probe.fit_line([1024, 1024], [1.0, 2.0])
    # the reduction reduce="auto" runs: 32 × 1 × 4 = 128 programs fit 128 SMs; 32 × 2 × 4 do not fit 132
    assert probe.reduction(128, 4096, 4096, (128, 128, 64, 4, 6, 0), processors=128) == "spread"
    assert probe.reduction(224, 4096, 4096, (128, 128, 64, 4, 6, 0), processors=132) == "last"
    assert probe.reduction(224, 4096, 4096, (64, 128, 128, 1, 4, 0), processors=132) == "none"
