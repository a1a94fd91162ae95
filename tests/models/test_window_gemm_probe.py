"""experiments/window_gemm_probe.py on the CPU at a tiny shape: every window beyond --min-rows probed for every
projection shape, the plan's own choice taken as the baseline, and the plan left as it was found (the README's
and docs/speed.md's "no backend gains in context beyond 128 rows" rests on this script)."""

from __future__ import annotations

from checkpoint_helpers import experiment_script

from fastdllm.kernels import gemm_plan

ARGS = ["--family", "llada", "--small", "--device", "cpu", "--prompt-length", "24", "--gen-length", "16",
        "--block-length", "4", "--min-rows", "8", "--rounds", "2", "--forward-repeats", "1"]


def test_probe_restores_the_plan_and_starts_from_it(tmp_path):
    probe = experiment_script("window_gemm_probe")
    gemm_plan.clear()
    seeded = ("cpu", probe.torch.float32, 16, 64, 64, False)  # the first window's (16 rows) 64 × 64 projection
    gemm_plan._choose(seeded, "cublas")
    try:
        before = gemm_plan.plan()
        out = probe.main(ARGS + ["--out", str(tmp_path / "probe.json")])
        assert gemm_plan.plan() == before  # every candidate's entry undone, the seeded choice kept
    finally:
        gemm_plan.clear()
    records = out["records"]
    assert sorted({r["rows"] for r in records}) == [12, 16]  # windows of 16, 12 rows; 8 and 4 are not beyond 8
    shapes = {(r["N"], r["K"]) for r in records}
    assert len(shapes) == 4 and all(sum(1 for r in records if r["rows"] == n) == 4 for n in (12, 16))
    first = next(r for r in records if r["rows"] == 16 and (r["N"], r["K"]) == (64, 64))
    assert first["baseline"] == "cublas" and first["baseline_ms"] == first["ms"]["cublas"]
    for r in records:
        assert {"default", "cublas", "cublaslt"} <= set(r["ms"]) and all(len(s) == 2 for s in r["spread"].values())
        assert r["best"] == min(r["ms"], key=r["ms"].get) and r["gain"] >= 0
    assert (tmp_path / "probe.json").exists()
