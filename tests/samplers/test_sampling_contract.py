"""The sampling contract on hand-computed cases: confidence measures from a registry, top-k / top-p candidate
sampling, LLaDA's classifier-free guidance (cfg_scale), Dream's sampled commit order (alg_temp), and
progress enforced by the decoder (forced_commits)."""

from __future__ import annotations

import math

import pytest
import torch

import fastdllm
from fastdllm.core.config import decode_config
from fastdllm.core.proposal import ConfidenceMeasure, confidence_measures, filter_logits, propose, sample_candidates
from fastdllm.core.step import Layout, Step
from fastdllm.samplers import FixedUnmask
from tests.conftest import mask_free_llada, random_prompts, tiny_llada

pytestmark = pytest.mark.usefixtures("single_thread")
PROMPTS = random_prompts(2, [6, 4], seed=1)


# ---- confidence measures ---------------------------------------------------------------------------------


@confidence_measures.register("test-second-choice")
class SecondChoice(ConfidenceMeasure):
    """1 - p[top2]: one file, no core edit."""

    @staticmethod
    def score(logits, tokens):
        return 1 - torch.softmax(logits, -1).topk(2, -1).values[..., 1]


def test_a_registered_confidence_is_usable_by_name():
    logits = torch.log(torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]]))
    got = propose(logits, torch.tensor([[True, True]]), confidence="test-second-choice").confidence
    torch.testing.assert_close(got, torch.tensor([[0.8, 0.7]]))
    policy = fastdllm.unmask_policies.get("threshold")(confidence="test-second-choice", threshold=0.5)
    result = fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=8, block_length=4, unmask=policy)
    assert result.nfe >= 2 and policy.spec()["confidence"] == "test-second-choice"


def test_an_unknown_confidence_says_did_you_mean():
    with pytest.raises(fastdllm.ConfigError, match=r"confidence='margn'.*Did you mean 'margin'"):
        decode_config(unmask={"name": "threshold", "confidence": "margn"})
    with pytest.raises(KeyError, match="Did you mean 'neg_entropy'"):
        propose(torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.bool), confidence="neg_entropi")


# ---- top-k / top-p ---------------------------------------------------------------------------------------

PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])


def test_filters_hand_computed():
    logits = PROBS.log()[None, None]  # [1, 1, 4]
    kept = lambda **kw: torch.isfinite(filter_logits(logits, **kw))[0, 0].tolist()  # noqa: E731
    assert kept(top_k=2) == [True, True, False, False]
    assert kept(top_p=0.7) == [True, True, False, False]  # mass before token 2 is 0.8 > 0.7
    assert kept(top_p=0.85) == [True, True, True, False]  # mass before token 3 is 0.95 > 0.85
    assert kept(top_p=0.4) == [True, False, False, False]  # the most likely token always stays
    assert kept(top_k=3, top_p=0.85) == [True, True, True, False]
    assert kept() == [True] * 4


def draws(temperature, n=4000, **kw):
    logits = PROBS.log().expand(n, 1, 4)  # n independent positions
    gen = torch.Generator().manual_seed(0)
    tokens = sample_candidates(logits, temperature=temperature, generator=gen, **kw)[:, 0]
    return torch.bincount(tokens, minlength=4).double() / n


def test_sampling_follows_the_filtered_tempered_distribution():
    """4000 seeded draws (deterministic); 0.04 is > 5 standard deviations for every frequency here."""
    torch.testing.assert_close(draws(1.0, top_p=0.7), torch.tensor([0.5, 0.3, 0, 0]).double() / 0.8, atol=0.04, rtol=0)
    torch.testing.assert_close(draws(1.0, top_k=3), torch.tensor([0.5, 0.3, 0.15, 0]).double() / 0.95, atol=0.04,
                               rtol=0)
    # at T = 2 the tempered distribution is sqrt(p) normalised: its nucleus at 0.7 holds three tokens
    tempered = PROBS.sqrt().double() / PROBS.sqrt().sum()
    assert tempered[:2].sum() < 0.7 < tempered[:3].sum()
    expected = torch.cat([tempered[:3], torch.zeros(1, dtype=torch.float64)]) / tempered[:3].sum()
    torch.testing.assert_close(draws(2.0, top_p=0.7), expected, atol=0.04, rtol=0)
    assert draws(0.0, top_k=1).tolist() == [1.0, 0, 0, 0]


def test_decode_passes_top_k_to_the_proposal():
    """top_k=1 at temperature > 0 is the argmax: the decode equals the temperature-0 one."""
    kw = dict(gen_length=8, block_length=4, unmask="fixed", cache="dual")
    greedy = fastdllm.generate(mask_free_llada(), PROMPTS, **kw)
    top1 = fastdllm.generate(mask_free_llada(), PROMPTS, temperature=1.5, top_k=1, seed=3, **kw)
    hot = fastdllm.generate(mask_free_llada(), PROMPTS, temperature=1.5, seed=3, **kw)
    assert torch.equal(top1.sequences, greedy.sequences)
    assert not torch.equal(hot.sequences, greedy.sequences)


# ---- classifier-free guidance ----------------------------------------------------------------------------


class GuidanceProbe:
    """Logits C for rows whose prompt is intact, U for rows whose prompt is all mask (the unconditional copy)."""

    logit_shift, max_sequence_length, device = 0, 64, torch.device("cpu")
    mask_token_id, pad_token_id, end_token_ids, vocab_size = 7, 0, (0,), 8
    C = torch.tensor([2.0, 1.9, 0.0, 0, 0, 0, 0, 0])
    U = torch.tensor([2.0, 0.0, 0.0, 0, 0, 0, 0, 0])

    def __init__(self):
        self.batches = []

    def new_kv_store(self, batch, length):
        return object()

    def forward_step(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        self.batches.append(canvas.clone())
        uncond = (canvas[:, :3] == self.mask_token_id).all(-1)  # [rows]: the prompt is 3 tokens here
        rows = torch.where(uncond[:, None], self.U, self.C)  # [rows, V]
        return rows[:, None, :].expand(-1, logits_end - logits_start, -1).clone()


def test_cfg_scale_hand_computed():
    """C prefers token 0 (2.0 vs 1.9); U is sure of token 0. With s = 1: U + 2 (C - U) = [2, 3.8, 0]: token 1."""
    prompts = [[3, 4, 5], [5, 4, 3]]
    plain = fastdllm.generate(GuidanceProbe(), prompts, gen_length=4, block_length=4, cache="none", unmask="fixed")
    probe = GuidanceProbe()
    guided = fastdllm.generate(probe, prompts, gen_length=4, block_length=4, cache="none", unmask="fixed",
                               cfg_scale=1.0)
    assert plain.generated.tolist() == [[0] * 4] * 2
    assert guided.generated.tolist() == [[1] * 4] * 2
    assert guided.sequences.shape == (2, 7) and guided.nfe == 4
    first, last = probe.batches[0], probe.batches[-1]
    assert first.shape == (4, 7)  # the doubled batch
    assert first[2:, :3].eq(7).all() and torch.equal(first[:2, :3], torch.tensor(prompts))
    assert torch.equal(last[2:, 3:], last[:2, 3:])  # both copies share the generated tokens


def test_cfg_with_a_kv_cache_matches_llada_formula_without_one():
    """On a real tiny model: guided decoding with no cache equals LLaDA's loop (one token per step, the guided
    logits' most confident position), and with the dual cache it runs on a store of 2B rows."""
    model = tiny_llada()
    prompt = random_prompts(1, [5], seed=2)
    P, G, scale, mask = 5, 8, 1.5, model.mask_token_id
    ours = fastdllm.generate(model, prompt, gen_length=G, block_length=G, cache="none", unmask="fixed",
                             cfg_scale=scale)
    x = torch.tensor([prompt[0] + [mask] * G])
    with torch.inference_mode():
        for _ in range(G):
            un = x.clone()
            un[:, :P] = mask
            cond, uncond = model(torch.cat([x, un])).chunk(2)
            logits = uncond + (scale + 1) * (cond - uncond)
            logits[..., mask] = -math.inf
            p = logits.softmax(-1)
            conf, tok = p.max(-1)
            conf = conf.masked_fill(x != mask, -math.inf)
            j = int(conf.argmax())
            x[0, j] = tok[0, j]
    assert ours.sequences.tolist() == x.tolist()
    cached = fastdllm.generate(model, prompt, gen_length=G, block_length=4, cache="dual", unmask="fixed",
                               cfg_scale=scale)
    assert cached.sequences.shape == (1, P + G) and not (cached.generated == mask).any()


# ---- alg_temp ----------------------------------------------------------------------------------------------


def fixed_choices(alg_temp, k, n=4000, seed=1):
    """FixedUnmask's choice on n identical rows: confidences (0.9, 0.5, 0.1) masked, a fourth position
    already committed (confidence 1.0, never drawn); k positions per step."""
    conf = torch.tensor([0.9, 0.5, 0.1, 1.0]).expand(n, 4)
    masked = torch.tensor([True, True, True, False]).expand(n, 4)
    proposal = fastdllm.Proposal(torch.zeros(n, 4, dtype=torch.long), conf, masked)
    layout = Layout(prompt_length=1, gen_length=4, block_length=4, logit_shift=0)
    policy = FixedUnmask(steps=4 // k, alg_temp=alg_temp)
    return policy.select(proposal, Step(layout, 0, 0, generator=torch.Generator().manual_seed(seed)))


def test_alg_temp_draws_positions_from_softmax_of_confidence():
    """Dream: positions ~ softmax(confidence / alg_temp) over the masked ones, k without replacement.
    Hand-computed for (0.9, 0.5, 0.1) at alg_temp 0.5: softmax(1.8, 1.0, 0.2) = (0.605, 0.272, 0.122)."""
    p = torch.tensor([0.6053, 0.2720, 0.1222], dtype=torch.float64)
    one = fixed_choices(0.5, k=1)
    assert (one.sum(-1) == 1).all() and not one[:, 3].any()
    torch.testing.assert_close(one[:, :3].double().mean(0), p, atol=0.04, rtol=0)
    two = fixed_choices(0.5, k=2)
    assert (two.sum(-1) == 2).all() and not two[:, 3].any()
    pair = float(p[0] * p[1] / (1 - p[0]) + p[1] * p[0] / (1 - p[1]))  # 0.643: first draw 0 then 1, or 1 then 0
    assert abs(float((two[:, 0] & two[:, 1]).double().mean()) - pair) < 0.04


def test_alg_temp_zero_is_most_confident_first():
    assert fixed_choices(0.0, k=1, n=3).tolist() == [[True, False, False, False]] * 3
    with pytest.raises(fastdllm.ConfigError, match="alg_temp"):
        FixedUnmask(remasking="random", alg_temp=0.5)


# ---- progress in one place -----------------------------------------------------------------------------------


def test_threshold_one_is_one_forced_token_per_step():
    """threshold = 1.0 is never reached by these confidences: every step is the decoder's forced commit of the
    most confident position, i.e. exactly the fixed schedule at one token per step."""
    kw = dict(gen_length=8, block_length=4, cache="dual")
    strict = fastdllm.generate(mask_free_llada(), PROMPTS, unmask={"name": "threshold", "threshold": 1.0}, **kw)
    fixed = fastdllm.generate(mask_free_llada(), PROMPTS, unmask="fixed", **kw)
    assert torch.equal(strict.sequences, fixed.sequences)
    assert strict.forced_commits == int(strict.nfe_per_row.sum()) == 16 and fixed.forced_commits == 0


class WrongShape(fastdllm.UnmaskPolicy):
    def select(self, proposal, step):
        return proposal.confidence[:, :1] > 0  # [B, 1]


class WrongDtype(fastdllm.UnmaskPolicy):
    def select(self, proposal, step):
        return (proposal.confidence > 0.5).long()


@pytest.mark.parametrize("policy, got", [(WrongShape(), r"torch.bool tensor of shape \[2, 1\]"),
                                         (WrongDtype(), r"torch.int64 tensor of shape \[2, 4\]")])
def test_a_bad_selection_names_the_policy_and_the_expected_shape(policy, got):
    with pytest.raises(TypeError, match=rf"{type(policy).__qualname__}.select\) returned a {got}.*bool tensor "
                                        r"\[B, block\] = \[2, 4\]"):
        fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=8, block_length=4, unmask=policy)
