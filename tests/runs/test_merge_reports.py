"""How the ranks' reports become one summary (torchrun), and run names."""

from __future__ import annotations

import pytest

from fastdllm.runs import load_run_config
from fastdllm.runs.distributed import shard
from fastdllm.runs.folder import merge_reports, run_name, sample_row


def report(n, accuracy, nfe, wall, refresh_share, chain=None):
    return {"setting": {"cache": {"name": "dual"}}, "n": n, "accuracy": accuracy, "nfe_mean": nfe, "tpf_canvas": 64 / nfe,
            "wall_time_s": wall, "refresh_share": refresh_share, "accuracy_chain": chain, "scorer": "strict",
            "tokens_per_s_canvas": n * 64 / wall, "tokens_per_s_useful": 0.0}


def test_one_report_is_kept_as_is():
    one = report(3, 0.5, 10, 2.0, 0.3)
    assert merge_reports([one], [], 64) == one


def test_means_are_n_weighted_wall_is_the_slowest_rank_and_throughput_counts_all_tokens():
    a, b = report(3, 1.0, 10.0, 2.0, 0.5, chain=1.0), report(1, 0.0, 30.0, 4.0, 0.1, chain=None)
    rows = [{"answer_tokens": t} for t in (10, 20, 30, 40)]
    merged = merge_reports([a, b], rows, 64)
    assert merged["n"] == 4
    assert merged["accuracy"] == pytest.approx(0.75)
    assert merged["nfe_mean"] == pytest.approx(15.0)
    assert merged["tpf_canvas"] == pytest.approx((3 * 6.4 + 64 / 30) / 4)
    assert merged["wall_time_s"] == 4.0
    assert merged["tokens_per_s_canvas"] == pytest.approx(4 * 64 / 4.0)
    assert merged["tokens_per_s_useful"] == pytest.approx(100 / 4.0)
    # refresh share weighted by each rank's forwards (3*10 and 1*30)
    assert merged["refresh_share"] == pytest.approx((0.5 * 30 + 0.1 * 30) / 60)
    assert merged["accuracy_chain"] == 1.0  # only the rank that had chained problems counts
    assert merged["scorer"] == "strict" and merged["setting"] == a["setting"]


def test_shards_cover_every_index_once_even_with_more_ranks_than_items():
    items = list("abcde")
    for world in (1, 2, 3, 7):
        parts = [shard(items, r, world) for r in range(world)]
        assert sorted(i for part in parts for i, _ in part) == list(range(5))
        assert all(items[i] == x for part in parts for i, x in part)
    assert shard(items, 6, 7) == []


def test_sample_row_uses_the_task_index_and_names_the_reference_target():
    assert sample_row(7, {"index": 0, "prompt": "p", "answer": "3"}) == {"index": 7, "prompt": "p", "target": "3"}
    assert list(sample_row(2, {"prompt": "p", "target": "3"})) == ["index", "prompt", "target"]


def test_run_names_are_predictable_and_distinct_per_setting():
    assert run_name(load_run_config(None)) == "tiny-llada-arithmetic-dual-threshold0.9-g64-b8"
    assert run_name(load_run_config(None, ["decode.unmask=fixed", "decode.cache=none"])) == \
        "tiny-llada-arithmetic-none-fixed-g64-b8"
    assert run_name(load_run_config(None, ["decode.unmask={name: fixed, steps: 4}"])).endswith("-fixed-steps4-g64-b8")
    assert run_name(load_run_config(None, ["tracking.name=my run/1"])) == "my_run_1"
    sampled = run_name(load_run_config(None, ["decode.temperature=0.7", "decode.seed=3"]))
    assert sampled.endswith("-t0.7-s3")
