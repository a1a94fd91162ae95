"""experiments/decode_timeline.py and gpu_clocks.py on the CPU: the gap anatomy read from a profiler trace, the
clock samples sorted into phases, and a whole run at a tiny shape (the README's power-cap and gap figures rest on
these)."""

from __future__ import annotations

import time

from checkpoint_helpers import experiment_script


def _trace():
    """Two graph launches (correlations 1, 3) with the step's kernels (correlation 2, 4) between them."""
    k = lambda name, ts, dur, c: {"cat": "kernel", "name": name, "ts": ts, "dur": dur, "args": {"correlation": c}}  # noqa: E731
    rt = lambda name, ts, dur, c: {"cat": "cuda_runtime", "name": name, "ts": ts, "dur": dur, "args": {"correlation": c}}  # noqa: E731
    return {"traceEvents": [
        rt("cudaGraphLaunch", 0, 5, 1), k("gemm", 10, 100, 1), k("norm", 110, 10, 1),  # forward 1: 10..120
        k("_commit_kernel", 125, 3, 2), k("reduce", 130, 2, 2),  # the step: 5 µs busy
        rt("cudaLaunchKernel", 20, 2, 2), rt("cudaStreamSynchronize", 30, 105, 5),  # host waits until 135
        rt("cudaGraphLaunch", 150, 8, 3), k("gemm", 170, 100, 3),  # forward 2 from 170
        rt("cudaGraphLaunch", 300, 8, 7),  # a launch with no kernels recorded: skipped
    ]}


def test_gap_anatomy_from_a_trace():
    gaps = experiment_script("decode_timeline").gap_anatomy(_trace())
    assert gaps["gaps"] == 1
    m = gaps["median"]
    assert m["gap_us"] == 50 and m["kernels"] == 2 and m["busy_us"] == 5 and m["idle_us"] == 45
    assert m["host_sync_to_launch_us"] == 15  # the sync returned at 135, the next launch at 150
    assert m["launch_call_us"] == 8 and m["launch_to_first_kernel_us"] == 20
    assert gaps["kernels_between_per_gap"] == {"_commit_kernel": 1.0, "reduce": 1.0}


def test_gap_anatomy_without_a_sync_before_the_launch():
    trace = _trace()
    trace["traceEvents"] = [e for e in trace["traceEvents"] if e["name"] != "cudaStreamSynchronize"]
    gaps = experiment_script("decode_timeline").gap_anatomy(trace)
    assert gaps["gaps"] == 1 and gaps["median"]["host_sync_to_launch_us"] is None and gaps["median"]["gap_us"] == 50


def test_a_run_without_cached_windows(tmp_path):
    """--caches none has only full-canvas forwards: the sustained forward is skipped, not run on a bad window."""
    out = experiment_script("decode_timeline").main(
        ["--small", "--device", "cpu", "--caches", "none", "--family", "dream", "--sustain-s", "0.05",
         "--alone-repeats", "1", "--out", str(tmp_path / "t.json")])
    assert out["sustained"] == {"forward": "no cached window among --caches"}
    assert {w["rows"] for w in out["timelines"][0]["windows"]} == {32}


def test_clock_samples_sorted_into_phases():
    clocks = experiment_script("gpu_clocks")
    t0 = time.time()
    stamp = lambda dt: time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t0 + dt)) + f".{int(((t0 + dt) % 1) * 1000):03d}"  # noqa: E731
    rows = [[stamp(0.5), "1980", "3201", "110.5", "45", "0x0000000000000000"],
            [stamp(1.5), "1500", "3201", "690.0", "63", "0x0000000000000004"],
            [stamp(1.7), "1400", "3201", "695.0", "64", "0x0000000000000084"],
            [stamp(2.5), "1450", "3201", "bad", "64", "0x4"]]  # an unreadable sample is skipped
    out = clocks.summarise_samples(rows, [("idle", t0, t0 + 1), ("load", t0 + 1, t0 + 2), ("after", t0 + 3, t0 + 4)])
    assert out["idle"]["samples"] == 1 and out["idle"]["power_capped_share"] == 0
    load = out["load"]
    assert load["samples"] == 2 and load["sm_mhz_median"] == 1450 and load["sm_mhz_min"] == 1400
    assert load["power_w_max"] == 695.0 and load["power_capped_share"] == 1.0
    assert out["after"] == {"samples": 0}


def test_tiny_run_on_the_cpu(tmp_path):
    out = experiment_script("decode_timeline").main(
        ["--small", "--device", "cpu", "--caches", "prefix,dual", "--ks", "1,2", "--commits", "fused,eager",
         "--alone-repeats", "2", "--sustain-s", "0.05", "--out", str(tmp_path / "t.json")])
    rows = out["timelines"]
    assert [(r["cache"], r["tokens_per_step"], r["commit"]) for r in rows][:2] == [("prefix", 1, "fused"), ("prefix", 1, "eager")]
    for r in rows:  # every forward marked once, inside the decode's wall time, with a gap after each but the last
        assert sum(w["forwards"] for w in r["windows"]) == r["nfe"] == len(r["forward_ms_series"])
        assert 0 < r["forward_ms_sum"] < r["wall_ms"] and 0 < r["gap_ms_sum"] < r["wall_ms"]
    assert {r["nfe"] for r in rows if r["tokens_per_step"] == 2} == {8}  # 16 tokens, 2 per forward
    prefix = rows[0]["windows"]
    assert sorted({w["rows"] for w in prefix}) == [4, 8, 12, 16, 32]  # the block-to-end windows and the refresh
    assert out["clocks"]["available"] is False and "forward_16_rows" in out["sustained"]  # the widest cached window
    assert (tmp_path / "t.json").exists()
