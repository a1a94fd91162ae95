"""The statistics of ``GenerationResult`` against an independent recount from per-step callbacks."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import mask_free_llada, random_prompts

pytestmark = pytest.mark.usefixtures("single_thread")

GEN, BLOCK = 12, 4
PROMPTS = random_prompts(3, [9, 4, 7], seed=5)


class Recount:
    """A callback that recounts, per row, the forwards spent and the forward that committed each position."""

    def __init__(self, batch: int, prompt_length: int, rule=None) -> None:
        self.P, self.rule = prompt_length, rule
        self.nfe = self.forced = 0
        self.per_row = [0] * batch
        self.commit_forward = [[0] * GEN for _ in range(batch)]
        self.commits: list[list[int]] = []

    def __call__(self, event) -> None:
        self.nfe += 1
        start = event.step.block_start - self.P
        self.commits.append(event.commit.sum(-1).tolist())
        if self.rule is not None:  # rows with masks whose policy chose none: the decoder forced one commit
            masked = event.proposal.masked
            chosen = self.rule.select(event.proposal, event.step) & masked
            self.forced += int((masked.any(-1) & ~chosen.any(-1)).sum())
        for row, (masked, commit) in enumerate(zip(event.proposal.masked.tolist(), event.commit.tolist())):
            if any(masked):
                self.per_row[row] += 1
            for j, c in enumerate(commit):
                if c:
                    assert self.commit_forward[row][start + j] == 0, "a position was committed twice"
                    self.commit_forward[row][start + j] = self.per_row[row]


def decode(cache, unmask):
    rule = fastdllm.DecodeConfig(unmask=unmask).unmask_policy()
    recount = Recount(len(PROMPTS), max(map(len, PROMPTS)), rule)
    model = mask_free_llada()
    result = fastdllm.generate(model, PROMPTS, gen_length=GEN, block_length=BLOCK, cache=cache, unmask=unmask,
                               callbacks=[recount])
    return model, result, recount


@pytest.mark.parametrize("cache", ["none", "dual"])
@pytest.mark.parametrize("unmask", ["fixed", {"name": "threshold", "threshold": 0.2},
                                    {"name": "factor", "factor": 2.5}])
def test_statistics_match_a_recount(cache, unmask):
    model, result, recount = decode(cache, unmask)
    assert result.nfe == recount.nfe == model.forwards
    assert result.nfe_per_row.tolist() == recount.per_row
    assert (result.nfe_per_row <= result.nfe).all()
    assert result.commit_forward.tolist() == recount.commit_forward
    cf = result.commit_forward
    assert (cf >= 1).all() and (cf <= result.nfe_per_row[:, None]).all()
    blocks = cf.view(len(PROMPTS), GEN // BLOCK, BLOCK)
    assert (blocks.amax(-1)[:, :-1] < blocks.amin(-1)[:, 1:]).all()  # blocks commit left to right

    ends = torch.tensor(model.end_token_ids)
    for row, gen in enumerate(result.generated.tolist()):
        first_end = next((i for i, t in enumerate(gen) if t in model.end_token_ids), GEN)
        assert int(result.first_end[row]) == first_end
        assert int(result.answer_nfe[row]) == max(cf[row, :first_end + 1].tolist())
        assert int(result.answer_nfe[row]) <= int(result.nfe_per_row[row])
    assert torch.equal(result.first_end, torch.where(
        torch.isin(result.generated, ends).any(-1), torch.isin(result.generated, ends).long().argmax(-1),
        torch.tensor(GEN)))
    torch.testing.assert_close(result.tokens_per_forward, GEN / result.nfe_per_row.float())
    assert result.refresh_forwards + result.cached_forwards == result.nfe
    assert result.forced_commits == recount.forced and result.blocks_decoded == GEN // BLOCK
    summary = result.summary()
    assert summary["nfe"] == result.nfe and summary["forced_commits"] == recount.forced
    assert summary["nfe_per_row_mean"] == pytest.approx(sum(recount.per_row) / len(PROMPTS))


def test_rows_finish_blocks_at_different_steps():
    _, result, recount = decode("none", {"name": "threshold", "threshold": 0.2})
    assert len(set(result.nfe_per_row.tolist())) > 1
    # a row that finished its block early commits nothing while the others go on
    assert any(0 in counts for counts in recount.commits)


def test_one_token_per_forward_commit_order_is_a_permutation():
    _, result, _ = decode("dual", {"name": "fixed", "steps": GEN})
    assert (result.nfe_per_row == GEN).all()
    for row in result.commit_forward.tolist():
        assert sorted(row) == list(range(1, GEN + 1))
    assert result.tokens_per_forward.tolist() == [1.0] * len(PROMPTS)


class Scripted:
    """The decoder's model contract with fixed logits: generated position j predicts ``tokens[j]`` with logit
    ``strength[j]`` (0 elsewhere), so the commit order of low-confidence remasking is known."""

    logit_shift, max_sequence_length, device = 0, 64, torch.device("cpu")
    mask_token_id, pad_token_id, end_token_ids = 9, 0, (0,)

    def __init__(self, tokens, strength) -> None:
        self.tokens, self.strength = torch.tensor(tokens), torch.tensor(strength, dtype=torch.float32)

    def new_kv_store(self, batch, length):
        return object()

    def forward_step(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        first_gen = canvas.shape[1] - len(self.tokens)
        gen = slice(logits_start - first_gen, logits_end - first_gen)
        logits = torch.zeros((canvas.shape[0], logits_end - logits_start, 10))
        logits[:, torch.arange(logits.shape[1]), self.tokens[gen]] = self.strength[gen]
        return logits


def test_answer_stats_count_the_forward_that_committed_the_end_token():
    """End token (0) at generated position 2, committed last in its block (weakest logit): the answer is
    complete only at the row's 4th forward, and positions after the end token do not count."""
    model = Scripted(tokens=[5, 6, 0, 7, 8, 8, 8, 8], strength=[9, 8, 2, 7, 6, 5, 4, 3])
    result = fastdllm.generate(model, [[1, 2]], gen_length=8, block_length=4, cache="none",
                               unmask={"name": "fixed", "steps": 8})
    assert result.generated.tolist() == [[5, 6, 0, 7, 8, 8, 8, 8]]
    assert result.commit_forward.tolist() == [[1, 2, 4, 3, 5, 6, 7, 8]]
    assert result.first_end.tolist() == [2]
    assert result.answer_nfe.tolist() == [4]
    torch.testing.assert_close(result.answer_tokens_per_forward, torch.tensor([2 / 4]))
    none = fastdllm.generate(Scripted(tokens=[5, 6, 3, 7, 8, 8, 8, 8], strength=[9, 8, 2, 7, 6, 5, 4, 3]),
                             [[1, 2]], gen_length=8, block_length=4, cache="none", unmask={"name": "fixed", "steps": 8})
    assert none.first_end.tolist() == [8] and none.answer_nfe.tolist() == [8]  # no end token: the whole canvas
