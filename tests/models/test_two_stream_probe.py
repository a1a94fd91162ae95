"""experiments/two_stream_probe.py on the CPU at a tiny shape: each part-batch problem holds its own rows of the
whole batch's canvas and KV store, so the parts' logits, concatenated, are the whole batch's (the probe's timing
compares like with like); a batch that does not split evenly is refused before any model is built."""

from __future__ import annotations

import pytest
from checkpoint_helpers import experiment_script

ARGS = ["--small", "--device", "cpu", "--prompt-length", "24", "--gen-length", "16", "--block-length", "8",
        "--repeats", "1", "--rounds", "2"]


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_parts_reproduce_the_whole_batch(tmp_path, family):
    probe = experiment_script("two_stream_probe")
    out = probe.main(ARGS + ["--family", family, "--batches", "4,6", "--splits", "2", "--out", str(tmp_path / "p.json")])
    assert [r["batch"] for r in out["results"]] == [4, 6] and (tmp_path / "p.json").exists()
    for r in out["results"]:
        assert r["streams_equal_serial"]
        assert r["parts_max_abs_diff_whole"] < 1e-4 and r["parts_argmax_agreement_whole"] == 1.0
        assert set(r["ms"]) == {"whole", "serial", "streams"} and all(len(t) == 2 for t in r["rounds_ms"].values())
        assert r["rows"] == r["batch"] * (8 + (family == "dream"))  # the block, and Dream's shifted row


def test_uneven_split_is_refused():
    probe = experiment_script("two_stream_probe")
    with pytest.raises(SystemExit):
        probe.parse(ARGS + ["--batches", "4,6", "--splits", "4"])
