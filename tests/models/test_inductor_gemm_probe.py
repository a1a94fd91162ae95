"""experiments/inductor_gemm_probe.py on the CPU at a tiny shape: the shapes asked for, in the order asked, each at
every row count, the group of every layer's weight of that shape (docs/speed.md's round 12 table rests on it)."""

from __future__ import annotations

import json

from checkpoint_helpers import experiment_script


def test_probe_times_the_shapes_asked_for_at_every_row_count(tmp_path):
    probe = experiment_script("inductor_gemm_probe")
    out = probe.main(["--family", "llada", "--small", "--device", "cpu", "--rows", "3,5",
                      "--shapes", "64x128,64x64", "--out", str(tmp_path / "probe.json")])
    records = out["records"]
    assert [(r["N"], r["K"], r["rows"]) for r in records] == [(64, 128, 3), (64, 128, 5), (64, 64, 3), (64, 64, 5)]
    assert all(set(r["us"]) == {"default", "cublaslt"} for r in records)  # no Triton compile on the CPU
    assert json.loads((tmp_path / "probe.json").read_text())["records"] == records


def test_shape_groups_hold_every_layer_but_not_the_lm_head():
    probe = experiment_script("inductor_gemm_probe")
    model = experiment_script("bench_floors").build_model("dream", True, "cpu", probe.torch.float32)
    model.fuse_projections(True)
    groups = probe.shape_groups(model)
    layers = len(model.net.layers)
    assert all(len(weights) == len(biases) == layers for weights, biases in groups.values())
    assert sum(len(w) for w, _ in groups.values()) == len(model.net.products()) - 1  # the LM head left out
    assert any(has_bias for _, _, has_bias in groups)  # Dream's fused q/k/v carries its bias
