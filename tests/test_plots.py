"""Figures from run folders written with fastdllm.evaluation.evaluate on the shipped tiny model."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("matplotlib")

import fastdllm  # noqa: E402
from fastdllm.analysis.kv_similarity import REGIONS, kv_similarity, plot_kv_similarity  # noqa: E402
from fastdllm.analysis.run_folder import load_run, write_run_folder  # noqa: E402
from fastdllm.assets import tiny_model_path  # noqa: E402
from fastdllm.plots import order_grid, pareto_front, plot_runs  # noqa: E402
from fastdllm.tasks import get_task  # noqa: E402

DECODE = {"gen_length": 32, "block_length": 8}
SETTINGS = {
    "dual-th0.7": {"cache": "dual", "unmask": {"name": "threshold", "threshold": 0.7}},
    "dual-th0.95": {"cache": "dual", "unmask": {"name": "threshold", "threshold": 0.95}},
    "prefix-fixed": {"cache": "prefix", "unmask": "fixed"},
}


@pytest.fixture(scope="module")
def model(single_thread):
    return fastdllm.load_model(tiny_model_path(), device="cpu")


@pytest.fixture(scope="module")
def runs(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    task = get_task("arithmetic")
    problems = task.generate("test", 6, seed=3)
    return [write_run_folder(root / name, model, problems, task, name=name, batch_size=6, **DECODE, **setting)
            for name, setting in SETTINGS.items()]


def png_pixels(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)  # [H, W, 4]


def test_plot_runs_draws_every_supported_figure(runs, tmp_path):
    paths = plot_runs(runs, tmp_path / "figs")
    names = sorted(p.name for p in paths)
    assert names == ["order_dual-th0.7.png", "order_dual-th0.95.png", "order_prefix-fixed.png", "pareto.png",
                     "tpf_vs_threshold.png"]
    for path in paths:
        pixels = png_pixels(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and pixels[..., :3].std() > 0.05  # not blank


def test_one_run_gets_only_its_order_map(runs, tmp_path):
    assert [p.name for p in plot_runs(runs[2:], tmp_path)] == ["order_prefix-fixed.png"]


def test_order_grid_is_commit_forward(runs):
    run = load_run(runs[0])
    grid = order_grid(run)
    rows = [s["commit_forward"] for s in run.samples]
    assert grid.shape == (6, DECODE["gen_length"])
    for r, row in enumerate(rows):
        for g, forward in enumerate(row):
            assert (math.isnan(grid[r, g]) and forward == 0) or grid[r, g] == forward
    fixed = order_grid(load_run(runs[2]))  # one token per forward: every block's forwards are 8 distinct values
    for r in range(6):
        for b in range(0, DECODE["gen_length"], DECODE["block_length"]):
            block = fixed[r, b:b + DECODE["block_length"]]
            assert sorted(block.tolist()) == list(range(b + 1, b + DECODE["block_length"] + 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=12))
def test_pareto_front_is_exactly_the_undominated_points(points):
    xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
    front = pareto_front(xs, ys)

    def dominated(i):
        return any(xs[j] >= xs[i] and ys[j] >= ys[i] and (xs[j], ys[j]) != (xs[i], ys[i]) for j in range(len(xs)))

    assert set(front) == {i for i in range(len(xs)) if not dominated(i)}
    assert [xs[i] for i in front] == sorted(xs[i] for i in front)


def test_bad_run_folders_are_named(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_runs([tmp_path / "nope"], tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        plot_runs([runs[0], tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before drawing
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text(json.dumps({"accuracy": 0.5, "setting": {}}))
    (broken / "samples.jsonl").write_text('{"commit_forward": [1]}\n{oops\n')
    with pytest.raises(ValueError, match=r"samples.jsonl:2"):
        plot_runs([broken], tmp_path / "out")
    with pytest.raises(ValueError, match="at least one"):
        plot_runs([], tmp_path)


def test_kv_similarity_regions_from_a_real_decode(model, tmp_path):
    """Layer 0's keys/values depend on the position's own token only: exactly unchanged outside the block
    (nothing there changes inside a block), changed inside it (masks become tokens)."""
    data = kv_similarity(model, ["Ava has 5 coins. She finds 7 more. How many coins now?"], gen_length=16,
                         block_length=8)
    assert data["n_layers"] == model.arch.n_layers and data["prompts"] == 1
    assert len(data["per_pair"]["keys"]) == 2 * 7  # fixed unmask: 8 forwards per block, 7 adjacent pairs
    for kind in ("keys", "values"):
        for region in ("prompt", "later blocks"):
            assert data[kind][region][0] == pytest.approx(1.0, abs=1e-6)
        assert data[kind]["earlier blocks"][0] == pytest.approx(1.0, abs=1e-6)
        assert data[kind]["current block"][0] < 0.99
        assert all(-1.0 <= v <= 1.0 + 1e-6 for region in REGIONS for v in data[kind][region])
        assert all(abs(v - 1.0) < 1e-6 for v in (row[0] for row in data["per_pair"][kind]))
        assert min(min(row) for row in data["per_pair"][kind]) < 1.0 - 1e-4  # deeper layers do move
    assert data["positions_per_region"]["current block"] == 14 * 8
    path = plot_kv_similarity(data, tmp_path / "kv.png")
    assert png_pixels(path)[..., :3].std() > 0.05


def test_runs_without_accuracy_are_left_out_of_the_accuracy_plots(runs, tmp_path):
    """An lm-eval run whose metrics have no headline accuracy still gets its other figures, and no crash."""
    unscored = tmp_path / "unscored"
    unscored.mkdir()
    summary = json.loads((runs[0] / "summary.json").read_text())
    (unscored / "summary.json").write_text(json.dumps({**summary, "name": "unscored", "accuracy": None}))
    names = sorted(p.name for p in plot_runs([runs[2], unscored], tmp_path / "out"))
    assert names == ["order_prefix-fixed.png"]  # one scored run: no Pareto plot; the unscored one has no samples
