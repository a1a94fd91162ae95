"""Theorem 1 of Fast-dLLM (arXiv 2505.22618), through the package: if each of n masked positions has a token
whose marginal probability exceeds 1 - eps and (n + 1) eps <= 1, the argmax of the joint is the tuple of
marginal argmaxes, so the registered ``threshold`` policy at tau = 1 - eps commits the whole block in one
forward and decodes the joint argmax, i.e. what one-token-per-step greedy decoding (``fixed``) decodes.

Every test runs ``fastdllm.generate`` (the decoder, ``propose`` and the registered policies) on an oracle
model whose logits are the log conditional marginals of a known joint **plus an offset per position**, so
a confidence that skipped the softmax normalisation would be visible; the tightness tests run the same
decoder past the bound, and the boundary tests put a confidence exactly at the threshold (the rule is
``confidence >= threshold``).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import fastdllm
from fastdllm.core.kv_store import NoStore
from fastdllm.core.proposal import propose

pytestmark = pytest.mark.usefixtures("single_thread")

Joint = dict[tuple[int, ...], float]


# ---- distributions ---------------------------------------------------------------------------------------


def conditional(joint: Joint, fixed: dict[int, int]) -> Joint:
    """The joint conditioned on ``x[i] = t`` for every ``(i, t)`` in ``fixed`` (normalised)."""
    kept = {x: p for x, p in joint.items() if all(x[i] == t for i, t in fixed.items())}
    total = sum(kept.values())
    assert total > 0, f"conditioning on a zero-probability event {fixed}"
    return {x: p / total for x, p in kept.items()}


def marginals(joint: Joint, n: int, vocab: int) -> list[list[float]]:
    out = [[0.0] * vocab for _ in range(n)]
    for x, p in joint.items():
        for i, t in enumerate(x):
            out[i][t] += p
    return out


def marginal_argmax(joint: Joint, n: int, vocab: int) -> tuple[int, ...]:
    return tuple(max(range(vocab), key=m.__getitem__) for m in marginals(joint, n, vocab))


def min_top_marginal(joint: Joint, n: int, vocab: int) -> float:
    return min(max(m) for m in marginals(joint, n, vocab))


@st.composite
def concentrated_joints(draw, ns=(2, 3), vocabs=(2, 3, 4), eps=None):
    """A joint over ``n`` positions whose marginals concentrate on one tuple ``star``.

    Mass ``budget[i] < eps`` is moved off ``star`` for each position: a fraction of it onto tuples that
    differ from ``star`` only at ``i`` (so the marginal condition holds however small ``star``'s own mass
    gets: down to 1 - n eps), the rest spread at random over every other tuple. Strictly positive.
    Returns ``(joint, n, vocab, eps)``; the caller checks the marginal condition (``assume``).
    """
    n = draw(st.sampled_from(ns))
    vocab = draw(st.sampled_from(vocabs))
    if eps is None:
        eps = 1.0 / (n + 1)
    else:
        eps = draw(eps(n))
    star = tuple(draw(st.integers(0, vocab - 1)) for _ in range(n))
    budgets = [draw(st.floats(0.0, 0.999 * eps)) for _ in range(n)]
    structured = draw(st.floats(0.0, 1.0))
    tuples = list(itertools.product(range(vocab), repeat=n))
    others = [x for x in tuples if x != star]
    noise = draw(st.lists(st.floats(0.01, 1.0), min_size=len(others), max_size=len(others)))
    floor = 1e-6
    joint: Joint = {x: floor for x in tuples}
    joint[star] += 1.0 - sum(budgets) - floor * len(tuples)
    spread = sum(budgets) * (1 - structured)
    for x, w in zip(others, noise):
        joint[x] += spread * w / sum(noise)
    for i, b in enumerate(budgets):
        single = [x for x in others if sum(a != s for a, s in zip(x, star)) == 1 and x[i] != star[i]]
        weights = [noise[others.index(x)] for x in single]
        for x, w in zip(single, weights):
            joint[x] += b * structured * w / sum(weights)
    assert abs(sum(joint.values()) - 1.0) < 1e-9 and min(joint.values()) > 0
    return joint, n, vocab, eps


# ---- the oracle model ------------------------------------------------------------------------------------


class JointOracle:
    """A model (the decoder's contract) over a known joint of the generated positions: for each block
    position, the log of its exact marginal given the tokens already committed, plus ``OFFSET + i`` at
    position i (logits, not log-probabilities: the decoder must normalise). Tokens ``0..vocab-1``; ``vocab``
    is the mask (its raw logit the largest), ``vocab + 1`` pad/end. One block after a one-token prompt."""

    OFFSET = 2.0
    logit_shift = 0
    max_sequence_length = 64
    device = torch.device("cpu")

    def __init__(self, joint: Joint, n: int, vocab: int) -> None:
        self.joint, self.n, self.vocab = joint, n, vocab
        self.mask_token_id, self.pad_token_id = vocab, vocab + 1
        self.end_token_ids = (vocab + 1,)
        self.forwards = 0
        self.min_top = 1.0  # the smallest top conditional marginal over masked positions seen

    def new_kv_store(self, batch, length):
        return NoStore()

    def forward_step(self, canvas, *args, **kwargs):
        self.forwards += 1
        out = torch.full((canvas.shape[0], self.n, self.vocab + 2), -1e4, dtype=torch.float64)  # [B, n, V + 2]
        out[..., self.mask_token_id] = 50.0
        for b, row in enumerate(canvas[:, PROMPT_LENGTH:PROMPT_LENGTH + self.n].tolist()):
            fixed = {i: t for i, t in enumerate(row) if t != self.mask_token_id}
            m = marginals(conditional(self.joint, fixed), self.n, self.vocab)
            for i in range(self.n):
                if i not in fixed:
                    self.min_top = min(self.min_top, max(m[i]))
                out[b, i, :self.vocab] = torch.tensor([math.log(p) + self.OFFSET + i if p > 0 else -1e4
                                                       for p in m[i]])
        return out.float()


PROMPT_LENGTH = 1


def decode(joint: Joint, n: int, vocab: int, unmask) -> tuple[tuple[int, ...], int, JointOracle]:
    oracle = JointOracle(joint, n, vocab)
    result = fastdllm.generate(oracle, [[0] * PROMPT_LENGTH], gen_length=n, block_length=n, cache="none",
                               unmask=unmask)
    assert result.nfe == oracle.forwards and result.bound_flushes == 0
    return tuple(result.generated[0].tolist()), result.nfe, oracle


def greedy(joint: Joint, n: int, vocab: int) -> tuple[tuple[int, ...], int]:
    tokens, nfe, _ = decode(joint, n, vocab, {"name": "fixed", "steps": n})
    assert nfe == n  # one token per forward
    return tokens, nfe


def condition_holds_everywhere(joint: Joint, n: int, vocab: int, star: tuple[int, ...], eps: float) -> bool:
    """Every conditional of the joint given any subset of positions fixed to ``star`` has each free
    position's top marginal > 1 - eps (the states greedy and threshold decoding can reach)."""
    for k in range(n):
        for subset in itertools.combinations(range(n), k):
            cond = conditional(joint, {i: star[i] for i in subset})
            m = marginals(cond, n, vocab)
            if any(max(m[i]) <= 1 - eps for i in range(n) if i not in subset):
                return False
    return True


def small_eps(n):
    return st.floats(0.02, 1.0 / (n + 1))


# ---- the theorem, under its condition ---------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(concentrated_joints(ns=(2, 3, 4), vocabs=(2, 3), eps=small_eps))
def test_threshold_at_one_minus_eps_decodes_the_joint_argmax_in_one_forward(case):
    """The theorem's conclusion through the decoder: one forward, and the result is the joint's argmax."""
    joint, n, vocab, eps = case
    assert (n + 1) * eps <= 1 + 1e-12
    assume(min_top_marginal(joint, n, vocab) > 1 - eps + 1e-4)  # the condition, clear of float32 rounding at tau
    parallel, parallel_nfe, _ = decode(joint, n, vocab, {"name": "threshold", "threshold": 1 - eps})
    assert parallel_nfe == 1
    best = max(joint, key=joint.get)
    assert parallel == best
    assert all(joint[best] > p for x, p in joint.items() if x != best)  # strict: p(x*) > 1 - n eps >= eps > p(y)


@settings(max_examples=40, deadline=None)
@given(concentrated_joints(ns=(2, 3, 4), vocabs=(2, 3), eps=small_eps), st.floats(0.0, 0.999))
def test_threshold_decoding_matches_greedy_under_the_condition(case, where):
    joint, n, vocab, eps = case
    star = marginal_argmax(joint, n, vocab)
    assume(condition_holds_everywhere(joint, n, vocab, star, eps))
    tau = (1 - eps) + eps * where  # any tau in [1 - eps, 1): multi-step threshold decoding too

    sequential, _ = greedy(joint, n, vocab)
    parallel, parallel_nfe, oracle = decode(joint, n, vocab, {"name": "threshold", "threshold": tau})
    assert sequential == max(joint, key=joint.get) == star  # sequential greedy finds the joint argmax here
    assert parallel == sequential
    assert oracle.min_top > 1 - eps  # the run stayed inside the theorem's condition
    assert 1 <= parallel_nfe <= n
    event(f"threshold decoding took {'one forward' if parallel_nfe == 1 else 'several forwards'}")


def test_theorem_holds_when_no_tuple_has_most_of_the_mass():
    """n = 3, eps = 1/4: every marginal is 0.76 on token 0, yet the joint argmax holds only 0.28; threshold
    decoding at tau = 0.75 commits (0, 0, 0) in one forward, which is the joint argmax."""
    joint: Joint = {x: 0.0 for x in itertools.product(range(2), repeat=3)}
    joint[(0, 0, 0)] = 0.28
    for i in range(3):
        x = [0, 0, 0]
        x[i] = 1
        joint[tuple(x)] = 0.24
    assert min_top_marginal(joint, 3, 2) == pytest.approx(0.76) and 4 * 0.25 <= 1
    tokens, nfe, _ = decode(joint, 3, 2, {"name": "threshold", "threshold": 0.75})
    assert tokens == (0, 0, 0) == max(joint, key=joint.get) and nfe == 1


# ---- past the bound: the theorem is tight -----------------------------------------------------------------


def tight_joint(n: int, vocab: int, eps: float, star: tuple[int, ...]) -> Joint:
    """star keeps 1 - n (eps - eta), each one-position deviation eps - eta (eta = half the excess over 1/(n+1)):
    every marginal exceeds 1 - eps, yet each deviation outweighs star once (n + 1) eps > 1."""
    eta = (eps - 1.0 / (n + 1)) / 2
    joint: Joint = {x: 0.0 for x in itertools.product(range(vocab), repeat=n)}
    joint[star] = 1 - n * (eps - eta)
    for i in range(n):
        x = list(star)
        x[i] = (star[i] + 1) % vocab
        joint[tuple(x)] = eps - eta
    return joint


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([2, 3]), st.sampled_from([2, 3]), st.floats(0.0, 1.0), st.data())
def test_past_the_bound_one_forward_commits_a_tuple_that_is_not_the_joint_argmax(n, vocab, where, data):
    """For eps with (n + 1) eps > 1 (and eps < 1/2), a joint meeting 'every marginal > 1 - eps' makes the
    threshold policy at tau = 1 - eps commit the marginal argmaxes in one forward, and they are not the
    joint argmax: the bound of the theorem cannot be relaxed."""
    low = 1.0 / (n + 1)
    eps = low + (0.5 - low) * (0.05 + 0.9 * where)
    star = tuple(data.draw(st.integers(0, vocab - 1)) for _ in range(n))
    joint = tight_joint(n, vocab, eps, star)
    assert (n + 1) * eps > 1 and min_top_marginal(joint, n, vocab) > 1 - eps + 1e-4
    tokens, nfe, _ = decode(joint, n, vocab, {"name": "threshold", "threshold": 1 - eps})
    assert tokens == star and nfe == 1
    assert max(joint.values()) > joint[star]


def test_threshold_decoding_departs_from_greedy_past_the_bound():
    """The counterexample joint at tau = 0.55 (eps = 0.45, (n+1) eps = 1.35 > 1): both positions clear tau and
    commit together as (0, 0), while greedy commits position 0 first and then takes (0, 1), the joint argmax."""
    joint: Joint = {(0, 0): 0.3, (0, 1): 0.4, (1, 0): 0.3, (1, 1): 0.0}
    assert greedy(joint, 2, 2)[0] == (0, 1) == max(joint, key=joint.get)
    parallel, parallel_nfe, _ = decode(joint, 2, 2, {"name": "threshold", "threshold": 0.55})
    assert parallel == (0, 0) and parallel_nfe == 1


# ---- the threshold rule's edges: >= and normalised confidences --------------------------------------------

# position 0: marginal 0.96 on token 0; position 1: 0.7 on token 1 (independent positions)
SPLIT: Joint = {(a, b): (0.96 if a == 0 else 0.04) * (0.7 if b == 1 else 0.3) for a in (0, 1) for b in (0, 1)}


def first_step_confidences(joint: Joint, n: int, vocab: int) -> torch.Tensor:
    """The confidences the decoder computes at its first forward, through the package's own ``propose``."""
    oracle = JointOracle(joint, n, vocab)
    canvas = torch.tensor([[0] * PROMPT_LENGTH + [oracle.mask_token_id] * n])  # [1, P + n]
    logits = oracle.forward_step(canvas)
    logits[..., oracle.mask_token_id] = float("-inf")
    return propose(logits, torch.ones(1, n, dtype=torch.bool)).confidence[0]  # [n]


def test_a_confidence_exactly_at_the_threshold_commits():
    """tau equal (to the last bit) to position 1's first-step confidence: ``>=`` commits both positions in
    one forward; the next float above tau leaves position 1 for a second forward."""
    conf = first_step_confidences(SPLIT, 2, 2)
    assert conf[1] == pytest.approx(0.7, abs=1e-6) and conf[0] == pytest.approx(0.96, abs=1e-6)
    tau = float(conf[1])
    tokens, nfe, _ = decode(SPLIT, 2, 2, {"name": "threshold", "threshold": tau})
    assert (tokens, nfe) == ((0, 1), 1)
    above = float(torch.nextafter(conf[1], torch.tensor(1.0)))
    tokens, nfe, _ = decode(SPLIT, 2, 2, {"name": "threshold", "threshold": above})
    assert (tokens, nfe) == ((0, 1), 2)


def test_confidences_are_normalised_probabilities():
    """The oracle's logits are log-probabilities plus 2 (position 0) and 3 (position 1): unnormalised
    scores (exp(logit) = 7.4 p and 20 p, or the raw logit) would clear tau = 0.9 at both positions and
    commit the block in one forward; the probabilities (0.96, 0.7) commit position 0 only."""
    conf = first_step_confidences(SPLIT, 2, 2)
    torch.testing.assert_close(conf, torch.tensor([0.96, 0.7]), rtol=0, atol=1e-6)
    tokens, nfe, _ = decode(SPLIT, 2, 2, {"name": "threshold", "threshold": 0.9})
    assert (tokens, nfe) == ((0, 1), 2)
    tokens, nfe, _ = decode(SPLIT, 2, 2, {"name": "factor", "factor": 0.5})  # (1 + 1)(1 - 0.96) < 0.5 < (2 + 1)(1 - 0.7)
    assert (tokens, nfe) == ((0, 1), 2)
