"""``fastdllm.evaluation.evaluate``: rows, strict/lenient/chain accuracy, scorer choice, statistics."""

from __future__ import annotations

import json

import pytest

import fastdllm
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.evaluation import EvalReport, evaluate
from fastdllm.tasks import Problem, get_task

pytestmark = pytest.mark.usefixtures("single_thread")

ROW_KEYS = {"index", "prompt", "target", "output", "correct", "correct_lenient", "chain_ok", "nfe", "tpf_canvas",
            "tpf_answer", "answer_tokens", "commit_forward"}


@pytest.fixture(scope="module")
def decode_defaults() -> dict:
    return default_decode_options(tiny_model_path())


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
    for i, (row, problem) in enumerate(zip(report.rows, problems)):  # problem order kept despite length batching
        assert set(row) == ROW_KEYS
        assert row["index"] == i and row["prompt"] == problem.prompt and row["target"] == problem.answer
        assert isinstance(row["output"], str)
        assert row["correct"] is task.score(row["output"], problem, "strict")
        assert row["correct_lenient"] is task.score(row["output"], problem, "lenient")
        assert row["chain_ok"] is task.check_chain(row["output"], problem)
        assert isinstance(row["nfe"], int) and 1 <= row["nfe"] <= gen
        assert row["tpf_canvas"] == pytest.approx(gen / row["nfe"])  # no early stop: every position committed
        assert 0 <= row["answer_tokens"] <= gen
        commits = row["commit_forward"]
        assert len(commits) == gen and all(type(c) is int for c in commits)
        assert all(1 <= c <= row["nfe"] for c in commits) and max(commits) == row["nfe"]
        assert len(set(commits)) > 1  # threshold decoding commits positions at different forwards
    n = len(problems)
    assert report.scorer == "strict"
    assert report.accuracy == pytest.approx(sum(r["correct"] for r in report.rows) / n)
    assert report.accuracy_lenient == pytest.approx(sum(r["correct_lenient"] for r in report.rows) / n)
    assert report.accuracy_chain == pytest.approx(sum(r["correct"] and r["chain_ok"] for r in report.rows) / n)
    assert report.nfe_mean == pytest.approx(sum(r["nfe"] for r in report.rows) / n)
    assert report.tpf_canvas == pytest.approx(sum(r["tpf_canvas"] for r in report.rows) / n)
    assert report.answer_tokens_mean == pytest.approx(sum(r["answer_tokens"] for r in report.rows) / n)
    assert 0.0 < report.refresh_share < 1.0  # dual cache: some forwards reuse the store
    assert report.tokens_per_s_canvas == pytest.approx(n * gen / report.wall_time_s)
    assert report.setting["cache"] == {"name": "dual"} and report.setting["unmask"]["threshold"] == 0.9


def test_evaluate_scores_the_trained_model(report):
    # the shipped model is trained on these problems; the answers follow the training format
    assert report.accuracy >= 0.5 and report.accuracy_chain >= 0.5
    assert all("The answer is" in row["output"] for row in report.rows)


def test_one_token_per_forward_commits_position_by_position(model, problems, decode_defaults):
    out = evaluate(model, problems[:1], batch_size=1, keep_rows=True, cache="none", unmask="fixed", **decode_defaults)
    commits = out.rows[0]["commit_forward"]
    assert sorted(commits) == list(range(1, decode_defaults["gen_length"] + 1))  # one position per forward


class Judge:
    """A scorer-side stand-in task: strict accepts nothing, lenient everything, every chain is right."""

    name = "arithmetic"

    def resolve_scorer(self, scorer=None):
        return {None: "strict", "strict": "strict", "lenient": "lenient", "gsm8k": "lenient"}[scorer]

    def score(self, response, problem, scorer=None):
        return self.resolve_scorer(scorer) == "lenient"

    def check_chain(self, response, problem):
        return True


def test_strict_lenient_and_chain_are_distinct_figures(model, problems, decode_defaults, monkeypatch):
    from fastdllm import evaluation

    monkeypatch.setattr(evaluation, "get_task", lambda task: Judge())
    out = evaluate(model, problems[:2], "arithmetic", batch_size=2, keep_rows=True, cache="dual", unmask="threshold",
                   **decode_defaults)
    assert out.accuracy == 0.0 and out.accuracy_lenient == 1.0 and out.scorer == "strict"
    assert out.accuracy_chain == 0.0  # chain accuracy needs the answer right under the scorer too
    assert all(row["chain_ok"] is True for row in out.rows)
    lenient = evaluate(model, problems[:2], "arithmetic", batch_size=2, scorer="gsm8k", cache="dual",
                       unmask="threshold", **decode_defaults)
    assert lenient.accuracy == 1.0 and lenient.scorer == "lenient"
    assert lenient.accuracy_chain == 1.0


def test_unknown_scorer_fails_before_decoding(model, problems, monkeypatch):
    from fastdllm import evaluation

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before checking the scorer")

    monkeypatch.setattr(evaluation, "DiffusionDecoder", no_decoding)
    with pytest.raises(ValueError, match="no scorer 'strictest'"):
        evaluate(model, problems, "arithmetic", scorer="strictest")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        evaluate(model, problems, "arithmetic", batch_size=0)


def test_tasks_without_a_chain_report_none(model, decode_defaults):
    problems = [Problem("Sort: 3 1 2", "1 2 3", "1 2 3", "sorting")]
    out = evaluate(model, problems, batch_size=1, keep_rows=True, cache="dual", unmask="threshold", **decode_defaults)
    assert out.accuracy_chain is None and out.rows[0]["chain_ok"] is None
    assert out.scorer == "strict" and out.accuracy_lenient is not None


def test_report_to_dict_round_trips_through_json(report):
    d = report.to_dict()
    assert "rows" not in d
    assert {"scorer", "accuracy_lenient", "accuracy_chain"} <= set(d)
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
