"""``fastdllm.demo.run_demo`` (the baseline-vs-Fast-dLLM table) and ``fastdllm.evaluation.evaluate``."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

import fastdllm
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.demo import DEMO_SETTINGS, format_table, run_demo
from fastdllm.evaluation import EvalReport, evaluate
from fastdllm.tasks import get_task

pytestmark = pytest.mark.usefixtures("single_thread")

N = 6


def setting(prefix: str) -> tuple[str, dict]:
    return next(s for s in DEMO_SETTINGS if s[0].startswith(prefix))


SUBSET = [setting("baseline"), setting("dual cache + threshold")]


@pytest.fixture(scope="module")
def decode_defaults() -> dict:
    defaults = default_decode_options(tiny_model_path())
    assert {"gen_length", "block_length"} <= set(defaults)
    return defaults


@pytest.fixture(scope="module")
def demo(single_thread):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rows = run_demo(model_path=None, n=N, device="cpu", batch_size=N, settings=SUBSET, seed=0)
    return rows, buf.getvalue()


def table_lines(printed: str) -> list[str]:
    lines = printed.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("setting") and "accuracy" in line)
    table = [lines[head], lines[head + 1]]
    for line in lines[head + 2:]:
        if not line.strip():
            break
        table.append(line)
    return table


def parse_row(line: str) -> dict:
    m = re.match(r"^(?P<label>.+?)\s+(?P<acc>\d+\.\d)%\s+(?P<nfe>\d+\.\d)\s+(?P<tpf>\d+\.\d\d)\s+"
                 r"(?P<tpf_ans>\d+\.\d\d)\s+(?P<toks>\d+)\s+(?P<speedup>\d+\.\d)x$", line)
    assert m, f"unexpected table row: {line!r}"
    return m.groupdict()


def test_run_demo_returns_one_report_per_setting(demo):
    rows, _ = demo
    assert [label for label, _ in rows] == [label for label, _ in SUBSET]
    for _, report in rows:
        assert isinstance(report, EvalReport)
        assert report.n == N
        assert 0.0 <= report.accuracy <= 1.0
        assert report.wall_time_s > 0


def test_printed_table_has_header_and_one_row_per_setting(demo):
    rows, printed = demo
    table = table_lines(printed)
    header = table[0].split()
    assert header == ["setting", "accuracy", "NFE", "TPF", "TPF", "ans", "tok/s", "speedup"]
    assert set(table[1]) == {"-"} and len(table[1]) == len(table[0])
    body = table[2:]
    assert len(body) == len(SUBSET)
    for line, (label, report) in zip(body, rows):
        row = parse_row(line)
        assert row["label"] == label
        assert float(row["acc"]) == pytest.approx(100 * report.accuracy, abs=0.05)
        assert float(row["nfe"]) == pytest.approx(report.nfe_mean, abs=0.05)
        assert 0.0 <= float(row["acc"]) <= 100.0
    assert format_table(rows) in printed
    assert f"{N} held-out arithmetic problems" in printed


def test_baseline_row_is_one_token_per_forward(demo, decode_defaults):
    rows, printed = demo
    baseline = rows[0][1]
    gen_length = decode_defaults["gen_length"]
    assert gen_length == 64
    assert baseline.setting["gen_length"] == gen_length
    assert baseline.setting["block_length"] == decode_defaults["block_length"]
    assert baseline.setting["cache"]["name"] == "none" and baseline.setting["unmask"]["name"] == "fixed"
    assert baseline.nfe_mean == gen_length
    assert baseline.tpf_canvas == pytest.approx(1.0)
    assert baseline.refresh_share == pytest.approx(1.0)  # no cache: every forward is a full one
    row = parse_row(table_lines(printed)[2])
    assert float(row["nfe"]) == gen_length and row["tpf"] == "1.00"


def test_threshold_row_takes_fewer_forwards(demo):
    rows, printed = demo
    baseline, fast = rows[0][1], rows[1][1]
    assert fast.setting["cache"]["name"] == "dual"
    assert fast.setting["unmask"] == {"name": "threshold", "confidence": "prob", "threshold": 0.9}
    assert fast.nfe_mean < baseline.nfe_mean
    assert fast.tpf_canvas > 1.0
    base_row, fast_row = (parse_row(line) for line in table_lines(printed)[2:4])
    assert float(fast_row["nfe"]) < float(base_row["nfe"])


def test_speedup_column(demo):
    rows, _ = demo
    body = format_table(rows).splitlines()[2:]
    assert body[0].endswith("1.0x")
    assert parse_row(body[0])["speedup"] == "1.0"
    expected = rows[0][1].wall_time_s / rows[1][1].wall_time_s
    assert float(parse_row(body[1])["speedup"]) == pytest.approx(expected, abs=0.051)


def test_format_table_speedup_is_relative_to_first_row():
    def report(wall: float) -> EvalReport:
        return EvalReport(setting={}, n=1, accuracy=0.5, nfe_mean=10.0, tpf_canvas=2.0, tpf_answer=1.5,
                          answer_tokens_mean=8.0, refresh_share=0.5, wall_time_s=wall, tokens_per_s_canvas=100.0,
                          tokens_per_s_useful=50.0)

    table = format_table([("slow", report(4.0)), ("fast", report(1.0)), ("slower", report(8.0))]).splitlines()
    assert len(table) == 5
    assert [parse_row(line)["speedup"] for line in table[2:]] == ["1.0", "4.0", "0.5"]
    assert parse_row(table[2])["acc"] == "50.0"


def test_demo_cli_runs_every_setting(capsys):
    from fastdllm.cli import main

    assert main(["demo", "--n", "2", "--batch-size", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    body = table_lines(out)[2:]
    assert [parse_row(line)["label"] for line in body] == [label for label, _ in DEMO_SETTINGS]
    assert parse_row(body[0])["speedup"] == "1.0"


# ---- evaluate ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(single_thread):
    return fastdllm.load_model(tiny_model_path(), device="cpu")


@pytest.fixture(scope="module")
def problems():
    return get_task("arithmetic").generate("test", 4, seed=1)


@pytest.fixture(scope="module")
def report(model, problems, decode_defaults):
    return evaluate(model, problems, "arithmetic", batch_size=3, keep_rows=True, cache="dual",
                    unmask={"name": "threshold", "threshold": 0.9}, **decode_defaults)


def test_evaluate_rows(report, problems, decode_defaults):
    task = get_task("arithmetic")
    gen = decode_defaults["gen_length"]
    assert report.n == len(problems) == len(report.rows) == 4
    for row, problem in zip(report.rows, problems):  # rows keep the problems' order despite batching by length
        assert set(row) == {"prompt", "answer", "output", "correct", "nfe", "tpf_canvas", "tpf_answer",
                            "answer_tokens"}
        assert row["prompt"] == problem.prompt and row["answer"] == problem.answer
        assert isinstance(row["output"], str)
        assert row["correct"] is bool(task.score(row["output"], problem))
        assert isinstance(row["nfe"], int) and 1 <= row["nfe"] <= gen
        assert row["tpf_canvas"] == pytest.approx(gen / row["nfe"])  # no early stop: every position committed
        assert 0 <= row["answer_tokens"] <= gen
    n = len(problems)
    assert report.accuracy == pytest.approx(sum(r["correct"] for r in report.rows) / n)
    assert report.nfe_mean == pytest.approx(sum(r["nfe"] for r in report.rows) / n)
    assert report.tpf_canvas == pytest.approx(sum(r["tpf_canvas"] for r in report.rows) / n)
    assert report.answer_tokens_mean == pytest.approx(sum(r["answer_tokens"] for r in report.rows) / n)
    assert 0.0 < report.refresh_share < 1.0  # dual cache: some forwards reuse the store
    assert report.tokens_per_s_canvas == pytest.approx(n * gen / report.wall_time_s)
    assert report.setting["cache"] == {"name": "dual"}
    assert report.setting["unmask"]["threshold"] == 0.9
    assert report.setting["gen_length"] == gen


def test_evaluate_scores_the_trained_model(report):
    # the shipped model is trained on these problems; the answers follow the training format
    assert report.accuracy >= 0.5
    assert all("The answer is" in row["output"] for row in report.rows)


def test_report_to_dict_round_trips_through_json(report):
    d = report.to_dict()
    assert "rows" not in d
    assert json.loads(json.dumps(d)) == d
    full = report.to_dict(with_rows=True)
    assert full["rows"] == report.rows
    back = json.loads(json.dumps(full))
    assert back == full
    assert EvalReport(**back) == report


def test_evaluate_without_rows_and_empty(model, problems, decode_defaults):
    quick = evaluate(model, problems[:1], batch_size=1, cache="dual", unmask="threshold", **decode_defaults)
    assert quick.rows == [] and quick.n == 1
    with pytest.raises(ValueError, match="at least one problem"):
        evaluate(model, [], cache="dual", unmask="threshold", **decode_defaults)
