"""Sampling at temperature T > 0: the tokens ``propose`` draws follow ``softmax(logits / T)``, and the
confidence it reports is the untempered probability of the token actually drawn (Fast-dLLM §3.2 scores
the sampled candidate, as LLaDA's low-confidence remasking does).

Each frequency test draws a fixed number of samples from a seeded generator and bounds the total
variation distance to the target distribution. With N = 40,000 draws over 5 tokens the sampling error
of the TV distance has a standard deviation below 0.004; the bound 0.02 is over 5 standard deviations
away (and the draws are seeded, so the test is deterministic), while the plausible bugs checked in
``test_bound_separates_the_plausible_bugs`` sit at TV > 0.05.
"""

from __future__ import annotations

import pytest
import torch

import fastdllm
from fastdllm.core.kv_store import NoStore
from fastdllm.core.proposal import propose

N_DRAWS = 40_000
TV_BOUND = 0.02
LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])  # [V]: distinct probabilities, no ties


def draws(temperature: float, seed: int = 0, confidence: str = "prob") -> tuple[torch.Tensor, torch.Tensor]:
    """N_DRAWS independent samples: one position per row of a ``[N, 1, V]`` logits tensor."""
    logits = LOGITS.expand(N_DRAWS, 1, -1).clone()  # [N, 1, V]
    masked = torch.ones(N_DRAWS, 1, dtype=torch.bool)  # [N, 1]
    gen = torch.Generator().manual_seed(seed)
    proposal = propose(logits, masked, temperature=temperature, generator=gen, confidence=confidence)
    return proposal.tokens[:, 0], proposal.confidence[:, 0]  # [N], [N]


def frequencies(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(tokens, minlength=vocab).double() / tokens.numel()  # [V]


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p.double() - q.double()).abs().sum())


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampled_frequencies_follow_softmax_of_logits_over_temperature(temperature):
    tokens, _ = draws(temperature)
    target = torch.softmax(LOGITS.double() / temperature, -1)
    assert total_variation(frequencies(tokens, len(LOGITS)), target) < TV_BOUND


def test_bound_separates_the_plausible_bugs():
    """The targets of the two plausible bugs (temperature as a product; Gumbel noise ``-log u``) are far
    from the correct one at T = 0.5 and 2, so a TV bound of 0.02 cannot confuse them."""
    for T in (0.5, 2.0):
        right = torch.softmax(LOGITS.double() / T, -1)
        product = torch.softmax(LOGITS.double() * T, -1)
        assert total_variation(right, product) > 0.2
        # argmax(l / T + E) with E ~ Exp(1) (the ``-log u`` noise), estimated with an independent sampler
        gen = torch.Generator().manual_seed(1)
        e = -torch.log(torch.rand(N_DRAWS, len(LOGITS), generator=gen, dtype=torch.float64))
        wrong = frequencies((LOGITS.double() / T + e).argmax(-1), len(LOGITS))
        assert total_variation(right, wrong) > 0.05  # about 0.07


def test_temperature_zero_is_the_argmax_and_sampling_is_seeded():
    tokens, conf = draws(0.0)
    assert (tokens == 0).all()
    assert torch.allclose(conf, torch.softmax(LOGITS, -1)[0].expand_as(conf))
    a, _ = draws(1.0, seed=3)
    b, _ = draws(1.0, seed=3)
    c, _ = draws(1.0, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_confidence_is_the_probability_of_the_sampled_token(temperature):
    """prob confidence = softmax(logits)[sampled token] (untempered), for every draw, argmax or not."""
    tokens, conf = draws(temperature)
    probs = torch.softmax(LOGITS, -1)  # [V]
    assert (tokens != 0).sum() > N_DRAWS // 10  # many draws are not the argmax: the check below bites
    torch.testing.assert_close(conf, probs[tokens], rtol=1e-5, atol=1e-7)


def test_confidence_ignores_a_constant_shift_of_the_logits():
    """The confidences are normalised probabilities: adding a constant to every logit changes nothing."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 7, generator=gen)  # [B, block, V]
    masked = torch.ones(3, 4, dtype=torch.bool)
    for kind in ("prob", "margin", "neg_entropy"):
        base = propose(logits, masked, confidence=kind).confidence
        shifted = propose(logits + 5.0, masked, confidence=kind).confidence
        torch.testing.assert_close(base, shifted, rtol=1e-5, atol=1e-6)
        assert ((base > 0) & (base <= 1)).all()
    probs = torch.softmax(logits, -1)
    top2 = probs.topk(2, -1).values
    torch.testing.assert_close(propose(logits, masked, confidence="margin").confidence, top2[..., 0] - top2[..., 1])
    entropy = -(probs * probs.log()).sum(-1)
    torch.testing.assert_close(propose(logits, masked, confidence="neg_entropy").confidence, torch.exp(-entropy))


class FixedLogits:
    """A decoder-contract model whose every forward returns ``LOGITS`` (mask and end tokens appended,
    the mask's logit the largest) at every block position."""

    logit_shift = 0
    max_sequence_length = 64
    device = torch.device("cpu")
    vocab = len(LOGITS)
    mask_token_id, pad_token_id = vocab, vocab + 1
    end_token_ids = (vocab + 1,)

    def new_kv_store(self, batch, length):
        return NoStore()

    def forward_step(self, canvas, *args, **kwargs):
        out = torch.full((canvas.shape[0], 1, self.vocab + 2), -30.0)  # [B, 1, V + 2]
        out[..., :self.vocab] = LOGITS
        out[..., self.mask_token_id] = 10.0  # raw logits favour the mask: the decoder must exclude it
        return out


@pytest.mark.parametrize("unmask", ["threshold", "fixed", "factor"])
def test_decoder_samples_from_softmax_over_temperature(unmask):
    """Through the decoder and a registered policy: one generated position per row, many rows."""
    T = 0.5
    result = fastdllm.generate(FixedLogits(), [[0]] * N_DRAWS, gen_length=1, block_length=1, cache="none",
                               unmask=unmask, temperature=T, seed=0)
    target = torch.softmax(LOGITS.double() / T, -1)
    assert total_variation(frequencies(result.generated[:, 0], len(LOGITS) + 2)[:len(LOGITS)], target) < TV_BOUND
