"""The derived statistics of ``GenerationResult`` recomputed from its raw fields (rates, per-row
cached forwards, summary), on a result built by hand so every figure is known."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import fastdllm


def hand_result(decode_text=None) -> fastdllm.GenerationResult:
    P, G = 3, 4
    sequences = torch.tensor([[7, 8, 9, 10, 11, 1, 5], [0, 8, 9, 10, 1, 12, 13]])  # [2, P + G]
    return fastdllm.GenerationResult(
        sequences=sequences, prompt_length=P, nfe=6, refresh_forwards=2, nfe_per_row=torch.tensor([6, 1]),
        refresh_per_row=torch.tensor([2, 1]), first_end=torch.tensor([2, 1]), answer_nfe=torch.tensor([5, 1]),
        commit_forward=torch.tensor([[1, 3, 5, 6], [1, 1, 0, 0]]), forced_commits=1, bound_flushes=0,
        wall_time_s=0.5, blocks_decoded=2, decode_text=decode_text)


def test_rates_from_the_raw_fields():
    r = hand_result()
    assert r.gen_length == 4 and r.generated.tolist() == [[10, 11, 1, 5], [10, 1, 12, 13]]
    assert r.cached_forwards == 4
    assert r.cached_per_row.tolist() == [4, 0]
    assert r.decoded_positions.tolist() == [4, 2]  # commit_forward 0 = filled at the stop, not decoded
    torch.testing.assert_close(r.tokens_per_forward, torch.tensor([4 / 6, 2 / 1]))
    torch.testing.assert_close(r.answer_tokens_per_forward, torch.tensor([2 / 5, 1 / 1]))
    assert r.answer_tokens.tolist() == [2, 1]
    assert r.tokens_per_second == pytest.approx(2 * 4 / 0.5)
    assert r.useful_tokens_per_second == pytest.approx((2 + 1) / 0.5)


def test_summary_matches_the_properties():
    r = hand_result()
    s = r.summary()
    assert s["nfe"] == 6 and s["refresh_forwards"] == 2 and s["cached_forwards"] == 4
    assert s["nfe_per_row_mean"] == pytest.approx(3.5)
    assert s["tpf_canvas"] == pytest.approx((4 / 6 + 2 / 1) / 2)
    assert s["tpf_answer"] == pytest.approx((2 / 5 + 1 / 1) / 2)
    assert s["answer_tokens_mean"] == pytest.approx(1.5)
    assert s["tokens_per_s_canvas"] == pytest.approx(16.0) and s["tokens_per_s_useful"] == pytest.approx(6.0)
    assert (s["forced_commits"], s["bound_flushes"], s["wall_time_s"]) == (1, 0, 0.5)


def test_a_zero_wall_time_does_not_divide_by_zero():
    r = dataclasses.replace(hand_result(), wall_time_s=0.0)
    assert r.tokens_per_second == pytest.approx(8 / 1e-9)


def test_texts_need_a_tokenizer():
    with pytest.raises(RuntimeError, match="no tokenizer"):
        hand_result().texts
    seen = []
    r = hand_result(decode_text=lambda ids: seen.append(ids.clone()) or ["a", "b"])
    assert r.texts == ["a", "b"] and torch.equal(seen[0], r.generated)


@pytest.mark.parametrize("value", [fastdllm.Proposal(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1),
                                                     torch.ones(1, 1, dtype=torch.bool)),
                                   fastdllm.Layout(2, 4, 2, 0), fastdllm.Step(fastdllm.Layout(2, 4, 2, 0), 0, 0),
                                   fastdllm.Plan.full(fastdllm.Step(fastdllm.Layout(2, 4, 2, 0), 0, 0))],
                         ids=["Proposal", "Layout", "Step", "Plan"])
def test_value_types_are_immutable(value):
    """Policies receive these shared objects: one policy must not be able to change what the next one sees."""
    field = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)
