"""``fastdllm.demo.run_demo``: the baseline-vs-Fast-dLLM table (``evaluate`` is tested in test_evaluation.py)."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
import torch

from fastdllm import demo as demo_module
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.demo import DEMO_SETTINGS, WARMUP_PROBLEMS, format_table, run_demo
from fastdllm.evaluation import EvalReport
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
def demo():
    buf = io.StringIO()
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the demo must pick one thread for the tiny model on CPU, then restore this
    try:
        with contextlib.redirect_stdout(buf):
            rows = run_demo(model_path=None, n=N, device="cpu", batch_size=N, settings=SUBSET, seed=0)
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    return rows, buf.getvalue(), threads_after


def table_lines(printed: str) -> list[str]:
    lines = printed.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("setting") and "strict" in line)
    table = [lines[head], lines[head + 1]]
    for line in lines[head + 2:]:
        if not line.strip():
            break
        table.append(line)
    return table


def parse_row(line: str) -> dict:
    m = re.match(r"^(?P<label>.+?)\s+(?P<acc>\d+\.\d)%\s+(?P<lenient>\d+\.\d)%\s+(?P<chain>\d+\.\d%|n/a)\s+"
                 r"(?P<nfe>\d+\.\d)\s+(?P<tpf>\d+\.\d\d)\s+(?P<tpf_ans>\d+\.\d\d)\s+(?P<toks>\d+)\s+"
                 r"(?P<speedup>\d+\.\d)x$", line)
    assert m, f"unexpected table row: {line!r}"
    return m.groupdict()


def test_run_demo_returns_one_report_per_setting(demo):
    rows, _, _ = demo
    assert [label for label, _ in rows] == [label for label, _ in SUBSET]
    for _, report in rows:
        assert isinstance(report, EvalReport)
        assert report.n == N
        assert 0.0 <= report.accuracy <= 1.0
        assert report.wall_time_s > 0


def test_printed_table_has_header_and_one_row_per_setting(demo):
    rows, printed, _ = demo
    table = table_lines(printed)
    header = table[0].split()
    assert header == ["setting", "strict", "lenient", "chain", "NFE", "TPF", "TPF", "ans", "tok/s", "speedup"]
    assert set(table[1]) == {"-"} and len(table[1]) == len(table[0])
    body = table[2:]
    assert len(body) == len(SUBSET)
    for line, (label, report) in zip(body, rows):
        row = parse_row(line)
        assert row["label"] == label
        assert float(row["acc"]) == pytest.approx(100 * report.accuracy, abs=0.05)
        assert float(row["lenient"]) == pytest.approx(100 * report.accuracy_lenient, abs=0.05)
        assert float(row["chain"].rstrip("%")) == pytest.approx(100 * report.accuracy_chain, abs=0.05)
        assert float(row["nfe"]) == pytest.approx(report.nfe_mean, abs=0.05)
        assert 0.0 <= float(row["acc"]) <= 100.0
    assert format_table(rows) in printed
    assert f"{N} held-out arithmetic problems" in printed


def test_baseline_row_is_one_token_per_forward(demo, decode_defaults):
    rows, printed, _ = demo
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
    rows, printed, _ = demo
    baseline, fast = rows[0][1], rows[1][1]
    assert fast.setting["cache"]["name"] == "dual"
    assert fast.setting["unmask"] == {"name": "threshold", "confidence": "prob", "threshold": 0.9}
    assert fast.nfe_mean < baseline.nfe_mean
    assert fast.tpf_canvas > 1.0
    base_row, fast_row = (parse_row(line) for line in table_lines(printed)[2:4])
    assert float(fast_row["nfe"]) < float(base_row["nfe"])


def test_speedup_column(demo):
    rows, printed, _ = demo
    body = format_table(rows).splitlines()[2:]
    assert body[0].endswith("1.0x")
    assert parse_row(body[0])["speedup"] == "1.0"
    expected = rows[0][1].wall_time_s / rows[1][1].wall_time_s
    assert float(parse_row(body[1])["speedup"]) == pytest.approx(expected, abs=0.051)
    assert "speedup = the baseline's decode wall time / this setting's, on the same problems" in printed


def test_format_table_speedup_is_relative_to_first_row():
    def report(wall: float) -> EvalReport:
        return EvalReport(setting={}, n=1, accuracy=0.5, nfe_mean=10.0, tpf_canvas=2.0, tpf_answer=1.5,
                          answer_tokens_mean=8.0, refresh_share=0.5, wall_time_s=wall, tokens_per_s_canvas=100.0,
                          tokens_per_s_useful=50.0, accuracy_lenient=0.75, accuracy_chain=0.25)

    table = format_table([("slow", report(4.0)), ("fast", report(1.0)), ("slower", report(8.0))]).splitlines()
    assert len(table) == 5
    assert [parse_row(line)["speedup"] for line in table[2:]] == ["1.0", "4.0", "0.5"]
    assert parse_row(table[2])["acc"] == "50.0"
    assert parse_row(table[2])["lenient"] == "75.0" and parse_row(table[2])["chain"] == "25.0%"


def test_demo_cli_runs_every_setting(capsys):
    from fastdllm.cli import main

    assert main(["demo", "--n", "2", "--batch-size", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    body = table_lines(out)[2:]
    assert [parse_row(line)["label"] for line in body] == [label for label, _ in DEMO_SETTINGS]
    assert parse_row(body[0])["speedup"] == "1.0"


def test_demo_runs_on_one_thread_and_restores_the_setting(demo):
    _, printed, threads_after = demo
    assert "on cpu, 1 thread;" in printed
    assert threads_after == 2


def test_every_setting_is_timed_on_the_same_problems(demo):
    rows, _, _ = demo
    expected = [p.prompt for p in get_task("arithmetic").generate("test", N, seed=0)]
    for _, report in rows:
        assert [r["prompt"] for r in report.rows] == expected


def test_examples_show_the_expected_answer_beside_each_output(demo):
    rows, printed, _ = demo
    problems = get_task("arithmetic").generate("test", N, seed=0)
    shown = re.findall(r"^problem (\d+): ", printed, flags=re.M)
    assert len(shown) == 3
    for index in map(int, shown):
        block = printed.split(f"problem {index}: ")[1].split("\n\n")[0]
        assert block.splitlines()[1].split() == ["expected", *problems[index].response.split()]
        for label, report in rows:
            assert re.search(rf"^  {re.escape(label)} +{re.escape(report.rows[index]['output'])}  \[strict ", block,
                             flags=re.M)
            assert ("chain ok]" if report.rows[index]["chain_ok"] else "chain WRONG]") in block


def test_examples_include_a_wrong_answer_when_there_is_one():
    def report(correct: list[bool], chain: list[bool]) -> EvalReport:
        rows = [{"correct": c, "correct_lenient": c, "chain_ok": k, "output": "x"} for c, k in zip(correct, chain)]
        return EvalReport(setting={}, n=len(rows), accuracy=0.0, nfe_mean=1.0, tpf_canvas=1.0, tpf_answer=1.0,
                          answer_tokens_mean=1.0, refresh_share=1.0, wall_time_s=1.0, tokens_per_s_canvas=1.0,
                          tokens_per_s_useful=1.0, rows=rows)

    ok = [True] * 6
    assert demo_module.example_indices([("a", report(ok, ok))], 3) == [0, 1, 2]
    chain_broken = [True] * 4 + [False, True]
    assert demo_module.example_indices([("a", report(ok, ok)), ("b", report(ok, chain_broken))], 3) == [0, 1, 4]
    assert demo_module.example_indices([("a", report(ok[:5] + [False], ok))], 2) == [0, 5]


def test_warm_up_runs_every_setting_before_any_timed_run(monkeypatch):
    calls = []
    real = demo_module.evaluate

    def recording(model, problems, task, **kwargs):
        calls.append((len(problems), kwargs.get("keep_rows", False), kwargs["cache"]))
        return real(model, problems, task, **kwargs)

    monkeypatch.setattr(demo_module, "evaluate", recording)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        rows = run_demo(n=3, batch_size=3, settings=SUBSET, examples=0)
    assert calls == [(WARMUP_PROBLEMS, False, "none"), (WARMUP_PROBLEMS, False, "dual"), (3, True, "none"),
                     (3, True, "dual")]
    assert [r.n for _, r in rows] == [3, 3]
    assert "warm-up: every setting on 1 problem" in out.getvalue() and "problem 0:" not in out.getvalue()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "n must be an integer >= 1, got 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"threads": 0}, "threads must be an integer >= 1, got 0"),
    ({"threads": 1.5}, "threads must be an integer >= 1, got 1.5"),
    ({"settings": []}, "settings is empty"),
])
def test_bad_arguments_fail_before_loading(kwargs, message, monkeypatch):
    monkeypatch.setattr(demo_module.fastdllm, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(ValueError, match=re.escape(message)):
        run_demo(**kwargs)


def test_defaults_decode_demo_n_problems_in_one_batch(monkeypatch):
    seen = []

    class Model:
        name, device = "stub", "cpu"

    def fake_evaluate(model, problems, task, batch_size, keep_rows=False, **options):
        seen.append((len(problems), batch_size))
        rows = [{"prompt": p.prompt, "output": p.response, "correct": True, "correct_lenient": True, "chain_ok": True}
                for p in problems]
        return EvalReport(setting={}, n=len(problems), accuracy=1.0, nfe_mean=1.0, tpf_canvas=1.0, tpf_answer=1.0,
                          answer_tokens_mean=1.0, refresh_share=1.0, wall_time_s=1.0, tokens_per_s_canvas=1.0,
                          tokens_per_s_useful=1.0, rows=rows if keep_rows else [])

    monkeypatch.setattr(demo_module.fastdllm, "load_model", lambda *a, **k: Model())
    monkeypatch.setattr(demo_module, "evaluate", fake_evaluate)
    with contextlib.redirect_stdout(io.StringIO()):
        run_demo(settings=SUBSET)
    assert seen[-1] == (demo_module.DEMO_N, demo_module.DEMO_N)
    assert seen[:2] == [(WARMUP_PROBLEMS, demo_module.DEMO_N)] * 2
