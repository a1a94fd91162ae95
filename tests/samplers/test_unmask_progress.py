"""Progress and termination for every registered unmask policy, on random logits.

``select`` returns a subset of the still-masked positions; the decoder's ``at_least_one`` makes every row
with masks commit at least one; a whole decode ends within num_blocks x block_length forwards with the
prompt untouched and no mask token left, even for a policy that commits nothing.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastdllm
from conftest import mask_free_llada, random_prompts
from fastdllm.core.proposal import propose
from fastdllm.core.step import Layout, Step

pytestmark = pytest.mark.usefixtures("single_thread")

# ---- a policy that breaks the progress contract ------------------------------------------------------------


@fastdllm.unmask_policies.register("test-progress-commits-nothing")
class CommitsNothing(fastdllm.UnmaskPolicy):
    """Never commits anything: the decoder has to force every step."""

    def select(self, proposal, step):
        return torch.zeros_like(proposal.masked)


BUILT_IN = ["factor", "fixed", "threshold"]
POLICIES = fastdllm.unmask_policies.names()  # every policy registered when this module is collected


def test_built_in_policies_are_registered():
    assert set(BUILT_IN) <= set(POLICIES)


@st.composite
def random_blocks(draw):
    """Random logits ``[B, block, V]`` and a masked pattern: rows fully masked, partly masked and done."""
    batch, block, vocab = draw(st.integers(1, 4)), draw(st.integers(1, 8)), draw(st.integers(2, 12))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    logits = torch.randn((batch, block, vocab), generator=gen) * draw(st.floats(0.01, 30.0))
    rows = []
    for _ in range(batch):
        kind = draw(st.sampled_from(["all", "none", "some"]))
        if kind == "some":
            rows.append(draw(st.lists(st.booleans(), min_size=block, max_size=block)))
        else:
            rows.append([kind == "all"] * block)
    masked = torch.tensor(rows, dtype=torch.bool).reshape(batch, block)
    if not masked.any():  # at least one row still has masks
        masked[draw(st.integers(0, batch - 1)), draw(st.integers(0, block - 1))] = True
    blocks = draw(st.integers(1, 3))
    layout = Layout(prompt_length=3, gen_length=blocks * block, block_length=block, logit_shift=0)
    temperature = draw(st.sampled_from([0.0, 0.0, 0.7]))
    step = Step(layout, draw(st.integers(0, blocks - 1)), draw(st.integers(0, block - 1)), temperature, gen)
    return logits, masked, step


@pytest.mark.parametrize("name", POLICIES)
@settings(max_examples=40, deadline=None)
@given(case=random_blocks(), confidence=st.sampled_from(["prob", "margin", "neg_entropy"]))
def test_select_is_a_subset_and_at_least_one_progresses(name, case, confidence):
    logits, masked, step = case
    policy = fastdllm.unmask_policies.get(name)(confidence=confidence)
    proposal = policy.propose(logits, masked, step)
    assert proposal.tokens.shape == masked.shape and proposal.confidence.shape == masked.shape

    chosen = policy.select(proposal, step)
    assert chosen.dtype == torch.bool and chosen.shape == masked.shape
    chosen = chosen & masked  # the decoder keeps the masked positions only

    commit = fastdllm.at_least_one(chosen, proposal)
    assert not (commit & ~masked).any()
    assert torch.equal(commit.any(-1), masked.any(-1)), "a row with masks committed nothing (or one without did)"
    has_choice = chosen.any(-1)
    assert torch.equal(commit[has_choice], chosen[has_choice])  # at_least_one only adds to stalled rows
    assert (commit.sum(-1)[~has_choice & masked.any(-1)] == 1).all()


class RandomLogitsModel:
    """The decoder's model contract with fresh random logits at every forward."""

    logit_shift = 0
    max_sequence_length = 128
    device = torch.device("cpu")

    def __init__(self, vocab: int, scale: float, seed: int, *, predicts_mask: bool = False) -> None:
        self.vocab, self.scale, self.predicts_mask = vocab, scale, predicts_mask
        self.mask_token_id, self.pad_token_id, self.end_token_ids = vocab - 1, 0, (0,)
        self.gen = torch.Generator().manual_seed(seed)
        self.forwards = 0

    def new_kv_store(self, batch, length):
        return object()  # never read: the logits ignore the canvas

    def forward_step(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        self.forwards += 1
        logits = torch.randn((canvas.shape[0], logits_end - logits_start, self.vocab), generator=self.gen) * self.scale
        if not self.predicts_mask:
            logits[..., self.mask_token_id] = float("-inf")  # as a trained model: it never predicts the mask
        return logits


def check_decode(result, model, prompts, gen_length, block_length):
    num_blocks = gen_length // block_length
    assert result.nfe == model.forwards <= num_blocks * block_length
    assert (result.nfe_per_row <= result.nfe).all()
    assert not (result.generated == model.mask_token_id).any(), "a mask token is left in the output"
    P = result.prompt_length
    for row, prompt in enumerate(prompts):
        assert result.sequences[row, P - len(prompt):P].tolist() == prompt  # prompt tokens never change


@pytest.mark.parametrize("name", POLICIES)
@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), block=st.sampled_from([1, 2, 4]), blocks=st.integers(1, 3),
       scale=st.floats(0.01, 20.0), seed=st.integers(0, 2**16), cache=st.sampled_from(["none", "dual", "prefix"]),
       temperature=st.sampled_from([0.0, 0.9]))
def test_decode_terminates_on_random_logits(name, batch, block, blocks, scale, seed, cache, temperature):
    model = RandomLogitsModel(vocab=10, scale=scale, seed=seed)
    prompts = [[3 + (seed + r) % 5] * (1 + r) for r in range(batch)]
    G = block * blocks
    result = fastdllm.generate(model, prompts, gen_length=G, block_length=block, cache=cache, unmask=name,
                               temperature=temperature, seed=seed)
    check_decode(result, model, prompts, G, block)
    assert 0 <= result.forced_commits <= int(result.nfe_per_row.sum())
    if name == "fixed":
        assert result.forced_commits == 0  # the fixed schedule always chooses k >= 1 positions


@pytest.mark.parametrize("name", BUILT_IN)
def test_decode_never_commits_the_mask_token(name):
    """Random logits over a vocabulary that includes the mask token (every model's does): now and then the
    mask token ranks first. Committing it is not progress (the position stays masked); the decoder must
    still finish within the bound and leave no mask token."""
    model = RandomLogitsModel(vocab=10, scale=1.0, seed=0, predicts_mask=True)
    prompts = [[3, 4, 5], [6, 7]]
    result = fastdllm.generate(model, prompts, gen_length=8, block_length=4, cache="none", unmask=name)
    check_decode(result, model, prompts, 8, 4)


def test_decode_never_commits_the_mask_token_tiny_llada():
    """The same with a real (tiny, random) network: seed 0 predicts the mask token in block 3."""
    from conftest import tiny_llada

    model = tiny_llada()
    result = fastdllm.generate(model, random_prompts(2), gen_length=16, block_length=4, cache="dual",
                               unmask="threshold")
    assert not (result.generated == model.mask_token_id).any()


class CommitsNothingUnregistered(fastdllm.UnmaskPolicy):
    def select(self, proposal, step):
        return torch.zeros_like(proposal.masked)


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_policy_that_commits_nothing_is_forced_to_progress(cache):
    model = mask_free_llada()
    prompts = random_prompts(2, [5, 3], seed=4)
    result = fastdllm.generate(model, prompts, gen_length=8, block_length=4, cache=cache,
                               unmask="test-progress-commits-nothing")
    check_decode(result, model, prompts, 8, 4)
    assert result.nfe == 8  # one forced token per row per forward
    assert result.forced_commits == int(result.nfe_per_row.sum()) == 2 * 8


def test_unregistered_policy_instance_is_accepted():
    """``unmask`` takes "a registered name, a dict, a config or an instance" (DiffusionDecoder docstring):
    an instance of a policy class nobody registered should decode too."""
    model = mask_free_llada()
    prompts = random_prompts(2, [5, 3], seed=4)
    result = fastdllm.generate(model, prompts, gen_length=8, block_length=4, cache="none",
                               unmask=CommitsNothingUnregistered())
    check_decode(result, model, prompts, 8, 4)
    assert result.forced_commits == 16


def test_propose_shapes_and_confidences():
    """Confidence of the candidate: prob = p[token]; margin = p1 - p2; neg_entropy = exp(sum p log p), in (0, 1]."""
    logits = torch.log(torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]]))
    masked = torch.tensor([[True, True]])
    prob = propose(logits, masked)
    assert prob.tokens.tolist() == [[0, 2]]
    torch.testing.assert_close(prob.confidence, torch.tensor([[0.7, 0.6]]))
    torch.testing.assert_close(propose(logits, masked, confidence="margin").confidence, torch.tensor([[0.5, 0.3]]))
    ent = propose(logits, masked, confidence="neg_entropy").confidence
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    torch.testing.assert_close(ent, (p * p.log()).sum(-1).exp()[None])
    assert (ent > 0).all() and (ent <= 1).all()
    assert torch.equal(prob.masked_confidence()[0], prob.confidence[0])
    assert prob.__class__(prob.tokens, prob.confidence, ~masked).masked_confidence().isneginf().all()
