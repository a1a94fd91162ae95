"""The "fastdllm" lm-eval model on the shipped tiny model, over a local task (tests/data), offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

import fastdllm  # noqa: E402
from fastdllm.assets import tiny_model_path  # noqa: E402
from fastdllm.evaluation import evaluate  # noqa: E402
from fastdllm.lm_eval_model import register  # noqa: E402
from fastdllm.tasks import JsonlTask  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
TASK = "fastdllm_tiny_arithmetic"
SETTING = {"cache": "dual", "unmask": {"name": "threshold", "threshold": 0.9}}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.chdir(DATA)  # the task YAML names its JSONL relative to the working directory


@pytest.fixture(scope="module")
def lm(single_thread):
    return register()(device="cpu")


def request(context: str, **gen_kwargs):
    from lm_eval.api.instance import Instance

    return Instance("generate_until", doc={}, arguments=(context, gen_kwargs), idx=0, metadata=(TASK, 0, 1))


def chat(lm, prompt: str) -> str:
    return lm.apply_chat_template([{"role": "user", "content": prompt}])


def test_accuracy_and_outputs_equal_fastdllm_evaluate(single_thread):
    """lm-eval's accuracy on the local task = ``fastdllm.evaluation.evaluate`` on the same problems, and every
    output is the same text (same prompts through the chat template, same decoding, same batch)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    register()
    out = lm_eval.simple_evaluate(
        model="fastdllm", model_args="cache=dual,unmask=threshold,threshold=0.9", tasks=[TASK], batch_size=20,
        device="cpu", apply_chat_template=True, log_samples=True,
        task_manager=TaskManager(include_path=str(DATA), include_defaults=False))
    accuracy = out["results"][TASK]["exact_match,answer-sentence"]
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])

    task = JsonlTask(DATA / "tiny_arithmetic.jsonl")
    model = fastdllm.load_model(tiny_model_path(), device="cpu")
    report = evaluate(model, task.problems, "arithmetic", batch_size=20, keep_rows=True, gen_length=64,
                      block_length=8, **SETTING)
    assert len(samples) == report.n == 20
    assert [s["resps"][0][0] for s in samples] == [r["output"] for r in report.rows]
    assert accuracy == pytest.approx(report.accuracy)
    assert accuracy >= 0.5  # the tiny model solves most of them (95% measured): the scorer is not all-fail
    stats = out["config"]["fastdllm"]  # get_model_info(): in lm-eval's results JSON
    assert stats["n"] == 20 and stats["setting"]["gen_length"] == 64
    assert stats["nfe_mean"] == pytest.approx(report.nfe_mean)
    assert stats["tpf_canvas"] == pytest.approx(report.tpf_canvas)
    assert stats["tpf_answer"] == pytest.approx(report.tpf_answer)


def test_stop_sequences_cut_after_decoding(lm):
    prompt = chat(lm, JsonlTask(DATA / "tiny_arithmetic.jsonl").problems[0].prompt)
    full, cut, two = lm.generate_until([request(prompt, until=[], max_gen_toks=64),
                                        request(prompt, until=["="], max_gen_toks=64),
                                        request(prompt, until=[". ", "="], max_gen_toks=64)])
    assert "=" in full and ". " in full
    assert cut == full[:full.index("=")]
    assert two == full[:min(full.index("="), full.index(". "))]  # the earliest stop, whichever is listed first


def test_gen_length_from_max_gen_toks_rounded_up_to_blocks(lm, capsys):
    prompt = chat(lm, "Ben has 3 pens. He finds 4 more. How many pens now?")
    lm.generate_until([request(prompt, until=[], max_gen_toks=20)])
    assert (24, 0.0) in lm._decoders  # 20 -> 24 = 3 blocks of 8
    assert "gen_length=24" in capsys.readouterr().err
    fixed = register()(device="cpu", gen_length=16)
    fixed.generate_until([request(prompt, until=[], max_gen_toks=64)])
    assert list(fixed._decoders) == [(16, 0.0)]  # model_args win over the task's max_gen_toks


def test_batches_sorted_longest_first_and_returned_in_request_order(lm):
    problems = JsonlTask(DATA / "tiny_arithmetic.jsonl").problems[:5]
    prompts = [chat(lm, p.prompt) for p in problems]
    one_by_one = [lm.generate_until([request(p, until=[], max_gen_toks=64)])[0] for p in prompts]
    lm.batch_size = 3
    try:
        batched = lm.generate_until([request(p, until=[], max_gen_toks=64) for p in prompts])
    finally:
        lm.batch_size = 1
    assert batched == one_by_one


def test_loglikelihood_requests_raise_a_clear_error(lm):
    from lm_eval.api.instance import Instance

    req = Instance("loglikelihood", doc={}, arguments=("2+2=", " 4"), idx=0, metadata=("arc_easy", 0, 1))
    with pytest.raises(NotImplementedError, match=r"generation tasks.*arc_easy.*loglikelihood"):
        lm.loglikelihood([req])
    with pytest.raises(NotImplementedError, match="loglikelihood_rolling"):
        lm.loglikelihood_rolling([req])


def test_unknown_model_arg_fails_before_loading(monkeypatch):
    cls = register()
    monkeypatch.setattr(fastdllm, "load_model", lambda *a, **k: pytest.fail("loaded the weights"))
    with pytest.raises(ValueError, match=r"'thresold'.*threshold"):
        cls.create_from_arg_string("cache=dual,unmask=threshold,thresold=0.9", {"device": "cpu"})
    with pytest.raises(ValueError, match="factor"):  # a factor on the threshold rule is not a field of it
        cls.create_from_arg_string("unmask=threshold,factor=1.0", {"device": "cpu"})
    with pytest.raises(ValueError, match="threshold"):  # out of range: (0, 1]
        cls.create_from_arg_string("unmask=threshold,threshold=1.5", {"device": "cpu"})
    with pytest.raises(ValueError, match="block_length=8 does not divide gen_length=20"):
        cls.create_from_arg_string("gen_length=20", {"device": "cpu"})


def test_policy_fields_routed_to_their_policy():
    from fastdllm.integrations.lm_eval_lm import _policy_specs

    assert _policy_specs("dual", "factor", {"factor": 2.0}) == ({"name": "dual"}, {"name": "factor", "factor": 2.0})
    assert _policy_specs("dual", "threshold", {"unmask.threshold": 0.7})[1] == {"name": "threshold", "threshold": 0.7}


def test_stats_file_holds_only_this_runs_models(tmp_path):
    """A second lm-eval run in the same process (a sweep) must not report the first run's model too."""
    from fastdllm.integrations.lm_eval_lm import FastDLLMEvalModel
    from fastdllm.lm_eval_model import STATS_FILE, _write_stats

    cls = register()
    cls(device="cpu")
    first = len(FastDLLMEvalModel.runs)
    second = cls(device="cpu", gen_length=16)
    _write_stats(str(tmp_path), first)
    stats = json.loads((tmp_path / STATS_FILE).read_text())
    assert [s["setting"]["gen_length"] for s in stats] == [16] and second is FastDLLMEvalModel.runs[-1]
